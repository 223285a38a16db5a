"""CPU-only tests of the pure-Python parts (no torch, CuPy or GPU needed):
python3 -m unittest discover -s python/tests"""

import os
import sys
import tempfile
import unittest
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from moesim_capture import LogitsRecorder, capture_args, router_spec  # noqa: E402


def fake(class_name, **fields):
    """An object whose type is named `class_name`, like a transformers router."""
    return type(class_name, (SimpleNamespace,), {})(**fields)


class RouterSpecTest(unittest.TestCase):
    def test_softmax_routers_follow_norm_topk_prob(self):
        olmoe = router_spec(fake("OlmoeTopKRouter", num_experts=64, top_k=8, norm_topk_prob=False))
        self.assertEqual((olmoe.scoring, olmoe.renormalize, olmoe.groups), ("softmax", False, None))
        mixtral = router_spec(fake("MixtralTopKRouter", num_experts=8, top_k=2))
        self.assertTrue(mixtral.renormalize)

    def test_deepseek_v3_is_grouped_sigmoid_with_bias_and_scale(self):
        v3 = router_spec(
            fake(
                "DeepseekV3TopkRouter", num_experts=256, top_k=8, routed_scaling_factor=2.5,
                num_group=8, topk_group=4, norm_topk_prob=True,
            )
        )
        self.assertEqual((v3.scoring, v3.groups, v3.top_groups), ("sigmoid", 8, 4))
        self.assertEqual((v3.scale, v3.has_bias, v3.renormalize), (2.5, True, True))

    def test_unsupported_routing_is_left_alone(self):
        v2 = fake(
            "DeepseekV2TopkRouter", num_experts=64, top_k=6, routed_scaling_factor=1.0,
            topk_method="group_limited_greedy", num_group=8, topk_group=3,
        )
        self.assertIsNone(router_spec(v2))
        self.assertIsNone(router_spec(fake("Linear")))

    def test_capture_arguments_match_the_spec(self):
        spec = router_spec(fake("OlmoeTopKRouter", num_experts=32, top_k=4, norm_topk_prob=False))
        self.assertEqual(
            capture_args(spec, "logits", "t.parquet"),
            ["capture", "--layers-from-dir", "logits", "--top-k", "4", "--scoring", "softmax",
             "--no-renormalize", "-o", "t.parquet"],
        )


class RecorderTest(unittest.TestCase):
    def test_layers_are_numbered_in_registration_order_and_saved_as_float32(self):
        recorder = LogitsRecorder()
        first, second = object(), object()
        self.assertEqual((recorder.layer_for(first), recorder.layer_for(second)), (0, 1))
        self.assertEqual(recorder.layer_for(first), 0)
        recorder.record(0, [[1.0, 2.0]])
        recorder.record(0, [[3.0, 4.0]])
        recorder.record(1, np.zeros((2, 2), dtype=np.float64))
        with tempfile.TemporaryDirectory() as directory:
            paths = recorder.save(directory)
            self.assertEqual([os.path.basename(p) for p in paths], ["layer_00.npy", "layer_01.npy"])
            saved = np.load(paths[0])
            self.assertEqual(saved.dtype, np.float32)
            np.testing.assert_array_equal(saved, [[1.0, 2.0], [3.0, 4.0]])

    def test_unequal_token_counts_are_refused(self):
        recorder = LogitsRecorder()
        recorder.layer_for("a")
        recorder.layer_for("b")
        recorder.record(0, [[1.0]])
        recorder.record(1, [[1.0], [2.0]])
        with tempfile.TemporaryDirectory() as directory:
            with self.assertRaisesRegex(ValueError, r"different token counts: \[1, 2\]"):
                recorder.save(directory)


if __name__ == "__main__":
    unittest.main()
