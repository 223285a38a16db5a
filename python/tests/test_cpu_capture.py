"""The patch against transformers' own router classes, on the CPU (issue 22, step 1).

Runs when torch and transformers are importable and a `moesim` binary is found ($MOESIM, else
target/release or target/debug); otherwise the test is skipped and says which is missing. CI
does not install torch (several GB); run it with the venv scripts/cpu_capture.sh makes:

    MOESIM=target/release/moesim ~/.cache/moesim-capture/venv/bin/python \
        -m unittest discover -s python/tests -v
"""

import importlib.util
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

MISSING = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
if MISSING:
    SKIP = (f"{' and '.join(MISSING)} not importable: the patch was NOT checked against the "
            "transformers routers (scripts/cpu_capture.sh check runs it)")
else:
    from moesim_capture.twin import find_moesim

    SKIP = None if find_moesim() else (
        "no moesim binary ($MOESIM, target/release, target/debug): the patch was NOT checked")
if SKIP:
    print(f"test_cpu_capture: skipped: {SKIP}", file=sys.stderr)


@unittest.skipIf(SKIP, SKIP)
class TransformersRoutersTest(unittest.TestCase):
    def test_the_patch_routes_as_every_transformers_router_does(self):
        from moesim_capture import check

        results = check.run_all(("float32", "bfloat16"))
        table = check.table(results)
        print("\n" + table, file=sys.stderr)
        names = {r["architecture"] for r in results}
        self.assertLessEqual({"Mixtral", "Qwen2-MoE", "Qwen3-MoE", "OLMoE", "DeepSeek-V3"}, names)
        for r in results:
            with self.subTest(architecture=r["architecture"], dtype=r["dtype"]):
                self.assertTrue(r["ok"], table)
                self.assertTrue(r["recorded_logits_equal"])
                self.assertEqual(r["patched_routers"], r["layers"])
                # Mismatches only where two experts score exactly the same (bf16 logits).
                self.assertEqual(r["patched_mismatched_tokens"], r["patched_exact_ties"])
                self.assertEqual(r["capture_mismatched_tokens"], r["capture_exact_ties"])
                if r["dtype"] == "float32":
                    self.assertEqual(r["patched_mismatched_tokens"], 0)
                if r["architecture"] == "DeepSeek-V3":
                    # The correction bias and the group limit both change choices here.
                    self.assertGreater(r["tokens_changed_by_bias"], 0)
                    self.assertGreater(r["tokens_changed_by_groups"], 0)


if __name__ == "__main__":
    unittest.main()
