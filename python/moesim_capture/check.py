"""The patch checked against transformers' own router classes, on the CPU (needs torch,
transformers and a `moesim` binary; no GPU, no download of weights).

For each supported architecture a tiny model is built from transformers' config and model classes
(random weights; DeepSeek-V3 also gets a random `e_score_correction_bias`), and one forward pass
runs with the patch on, routing through the kernel's CPU twin (`twin.CpuTwinKernel`). Every
router call is compared with the router class's own `forward` on the very same input:

- the logits the patch records equal the router's logits (bit for bit);
- the patched top-k experts equal the router's, and so do the weights and dtypes;
- `moesim capture --cpu --layers-from-dir` on the recorded logits (the command a user runs)
  decides the same experts and weights.

    python -m moesim_capture.check [--dtype float32 bfloat16] [--json OUT]
"""

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

from . import LogitsRecorder, capture_args, patch_model, router_spec
from .routers import SUPPORTED
from .twin import CpuTwinKernel, read_trace

VOCAB, HIDDEN, HEADS, TOKENS = 128, 64, 4, (4, 64)


def _configs():
    """(name, config class, model class, config kwargs) of every architecture checked."""
    import transformers as tf

    base = dict(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_attention_heads=HEADS,
        num_key_value_heads=HEADS, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, use_cache=False,
    )
    return [
        ("Mixtral", tf.MixtralConfig, tf.MixtralForCausalLM,
         dict(base, num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=2)),
        ("Qwen2-MoE", tf.Qwen2MoeConfig, tf.Qwen2MoeForCausalLM,
         dict(base, num_hidden_layers=2, num_experts=16, num_experts_per_tok=4, norm_topk_prob=False,
              moe_intermediate_size=32, shared_expert_intermediate_size=64)),
        ("Qwen3-MoE", tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM,
         dict(base, num_hidden_layers=2, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True,
              moe_intermediate_size=32, head_dim=16)),
        ("OLMoE", tf.OlmoeConfig, tf.OlmoeForCausalLM,
         dict(base, num_hidden_layers=2, num_experts=16, num_experts_per_tok=4, norm_topk_prob=False)),
        ("DeepSeek-V3", tf.DeepseekV3Config, tf.DeepseekV3ForCausalLM,
         dict(base, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=32,
              num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=1,
              routed_scaling_factor=2.5, norm_topk_prob=True, moe_intermediate_size=32,
              q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
              v_head_dim=16, head_dim=8)),
        ("DeepSeek-V2 (greedy)", tf.DeepseekV2Config, tf.DeepseekV2ForCausalLM,
         dict(base, num_hidden_layers=2, first_k_dense_replace=0, n_routed_experts=16,
              num_experts_per_tok=4, topk_method="greedy", n_shared_experts=1,
              routed_scaling_factor=1.5, moe_intermediate_size=32, q_lora_rank=None,
              kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, head_dim=8)),
    ]


def source_of(cls):
    """`transformers/models/.../modeling_x.py Class.forward (line N)`: the function mirrored."""
    path = inspect.getsourcefile(cls)
    rel = path[path.rindex("transformers" + os.sep):]
    return f"{rel} {cls.__name__}.forward (line {inspect.getsourcelines(cls.forward)[1]})"


def _by_expert(indices, weights):
    """Per token, experts sorted ascending with their weights (order-free comparison: DeepSeek's
    routers take `topk(sorted=False)`)."""
    order = np.argsort(indices, axis=-1, kind="stable")
    return np.take_along_axis(indices, order, -1), np.take_along_axis(weights, order, -1)


def _ulps(a, b, dtype):
    """Largest distance in units in the last place of `dtype` (the router's weight dtype)."""
    bits = torch.int16 if dtype == torch.bfloat16 else torch.int32
    a = torch.as_tensor(a).to(dtype).view(bits).long()
    b = torch.as_tensor(b).to(dtype).view(bits).long()
    return int((a - b).abs().max()) if a.numel() else 0


def compare(indices_a, weights_a, indices_b, weights_b, selection, dtype):
    """Compares two top-k decisions token by token. Returns `(mismatched, ties, max_abs, ulps)`:
    tokens whose expert sets differ, of them those explained by an exact tie (the two sets'
    selection scores are the same values: the kernel gives a tie to the lower expert id,
    `torch.topk` does not promise an order), and the largest weight difference on the others."""
    ia, wa = _by_expert(indices_a, weights_a)
    ib, wb = _by_expert(indices_b, weights_b)
    differ = (ia != ib).any(axis=-1)
    ties = 0
    for token in np.nonzero(differ)[0]:
        values_a = np.sort(selection[token, ia[token]])
        values_b = np.sort(selection[token, ib[token]])
        if np.array_equal(values_a, values_b):
            ties += 1
    keep = ~differ
    max_abs = float(np.abs(wa[keep] - wb[keep]).max()) if keep.any() else 0.0
    ulps = _ulps(wa[keep], wb[keep], dtype) if keep.any() else 0
    return int(differ.sum()), ties, max_abs, ulps


def _plain_choice(scores, k):
    """Experts a plain top-k of `scores` picks (no bias, no groups), sorted per token."""
    return np.sort(np.argsort(-scores, axis=-1, kind="stable")[:, :k], axis=-1)


def check_architecture(name, config_cls, model_cls, kwargs, dtype, kernel, seed=0):
    """Runs one architecture; returns a dict of what was compared (see `main` for the table)."""
    torch.manual_seed(seed)
    config = config_cls(**kwargs)
    model = model_cls(config).eval().to(dtype)
    routers = [m for m in model.modules() if type(m).__name__ in SUPPORTED]
    generator = torch.Generator().manual_seed(seed + 1)
    for router in routers:
        if hasattr(router, "e_score_correction_bias"):
            # A bias of the scores' spread, so it changes which experts are chosen.
            router.e_score_correction_bias.copy_(
                0.02 * torch.randn(router.num_experts, generator=generator)
            )
    ids = torch.randint(3, VOCAB, TOKENS, generator=generator)
    with torch.no_grad():
        reference_out = model(input_ids=ids).logits.float()

    calls = []  # (router, input, patched output) for every router call with the patch on
    hooks = [
        r.register_forward_hook(lambda m, args, out: calls.append((m, args[0].detach(), out)))
        for r in routers
    ]
    recorder = LogitsRecorder()
    patched = patch_model(model, recorder, kernel=kernel)
    with torch.no_grad():
        patched_out = model(input_ids=ids).logits.float()
    for hook in hooks:
        hook.remove()

    spec = router_spec(routers[0])
    result = {
        "architecture": name,
        "dtype": str(dtype).replace("torch.", ""),
        "router": source_of(type(routers[0])),
        "spec": f"{spec.scoring} top-{spec.top_k} of {spec.num_experts}"
        + (f", top-{spec.top_groups} of {spec.groups} groups" if spec.groups else "")
        + (", bias" if spec.has_bias else "")
        + (", renorm" if spec.renormalize else "")
        + (f", x{spec.scale:g}" if spec.scale != 1.0 else ""),
        "patched_routers": patched,
        "layers": len(routers),
        "tokens": int(np.prod(TOKENS)),
    }
    expected, recorded_ok, dtype_ok, by_bias, by_groups = [], True, True, 0, 0
    patched = [0, 0, 0.0, 0]  # mismatched tokens, of them exact ties, max |dw|, max ulps
    for layer, (router, hidden, (logits_p, weights_p, indices_p)) in enumerate(calls):
        with torch.no_grad():
            logits_r, weights_r, indices_r = type(router).forward(router, hidden)
        # The router's selection scores, to recognise exact ties.
        if spec.scoring == "softmax":
            selection = torch.softmax(logits_r.float(), dim=-1).numpy()
        else:
            selection = (torch.sigmoid(logits_r.float()) + router.e_score_correction_bias).numpy()
        expected.append((indices_r.numpy(), weights_r.float().numpy(), weights_r.dtype, selection))
        recorded = recorder.layer_logits(layer)
        recorded_ok &= np.array_equal(recorded, logits_r.float().numpy())
        recorded_ok &= torch.equal(logits_p, logits_r)
        dtype_ok &= (weights_p.dtype, indices_p.dtype, logits_p.dtype) == (
            weights_r.dtype, indices_r.dtype, logits_r.dtype)
        got = compare(indices_p.numpy(), weights_p.float().numpy(), indices_r.numpy(),
                      weights_r.float().numpy(), selection, weights_r.dtype)
        patched = [patched[0] + got[0], patched[1] + got[1], max(patched[2], got[2]),
                   max(patched[3], got[3])]
        if spec.has_bias or spec.groups:
            # Tokens whose experts the bias changes (plain top-k with and without it), and those
            # the group limit then changes (the router's choice against the biased plain top-k):
            # both paths are exercised, not only present.
            scores = torch.sigmoid(logits_r.float()).numpy()
            biased = _plain_choice(selection, spec.top_k)
            by_bias += int((biased != _plain_choice(scores, spec.top_k)).any(-1).sum())
            by_groups += int((biased != np.sort(indices_r.numpy(), axis=-1)).any(-1).sum())

    # `moesim capture --cpu --layers-from-dir` on what the recorder saved.
    with tempfile.TemporaryDirectory() as tmp:
        logits_dir = os.path.join(tmp, "logits")
        recorder.save(logits_dir)
        bias = None
        if spec.has_bias:
            bias = os.path.join(tmp, "bias.npy")
            np.save(bias, np.stack([r.e_score_correction_bias.float().numpy() for r in routers]))
        trace = os.path.join(tmp, "trace.parquet")
        args = capture_args(spec, logits_dir, trace, bias=bias, cpu=True)
        subprocess.run([kernel.moesim] + args, check=True, capture_output=True)
        experts_c, weights_c = read_trace(kernel.moesim, trace, spec.top_k)
    captured = [0, 0, 0.0, 0]
    for layer, (indices_r, weights_r, wdtype, selection) in enumerate(expected):
        # The trace holds the kernel's fp32 weights; the patch scales them and casts them to the
        # router's weight dtype, so the same is done here.
        scaled = torch.from_numpy(weights_c[layer] * np.float32(spec.scale)).to(wdtype).float()
        got = compare(experts_c[layer], scaled.numpy(), indices_r, weights_r, selection, wdtype)
        captured = [captured[0] + got[0], captured[1] + got[1], max(captured[2], got[2]),
                    max(captured[3], got[3])]
    result.update(
        recorded_logits_equal=bool(recorded_ok),
        patched_mismatched_tokens=patched[0],
        patched_exact_ties=patched[1],
        patched_weight_max_abs=patched[2],
        patched_weight_max_ulps=patched[3],
        dtypes_equal=bool(dtype_ok),
        capture_mismatched_tokens=captured[0],
        capture_exact_ties=captured[1],
        capture_weight_max_abs=captured[2],
        capture_weight_max_ulps=captured[3],
        tokens_changed_by_bias=by_bias,
        tokens_changed_by_groups=by_groups,
        model_output_max_abs=float((patched_out - reference_out).abs().max()),
    )
    result["ok"] = bool(
        recorded_ok and dtype_ok and weights_ok(result)
        and patched[0] == patched[1] and captured[0] == captured[1]
    )
    return result


def weights_ok(result):
    """Weights agree to float rounding: the kernel's softmax uses its own `exp` and sums in warp
    order, torch its vectorised `exp`, so the last bits may differ (a few ulp)."""
    return result["patched_weight_max_ulps"] <= 8 and result["capture_weight_max_ulps"] <= 8


def run_all(dtypes=("float32",), moesim=None):
    kernel = CpuTwinKernel(moesim)
    results = []
    for name, config_cls, model_cls, kwargs in _configs():
        for dtype in dtypes:
            results.append(
                check_architecture(name, config_cls, model_cls, kwargs, getattr(torch, dtype), kernel)
            )
    return results


def table(results):
    """A markdown table of `run_all`'s results."""
    yes = lambda ok: "yes" if ok else "**NO**"  # noqa: E731

    def grouped(r):
        if "DeepSeek-V3" not in r["architecture"]:
            return "-"
        return f"{r['tokens_changed_by_bias']} / {r['tokens_changed_by_groups']}"

    def experts(r, side):
        bad, ties = r[f"{side}_mismatched_tokens"], r[f"{side}_exact_ties"]
        if bad == 0:
            return "yes"
        if bad == ties:
            return f"yes, but {ties} exact tie{'s' * (ties > 1)}"
        return f"**NO** ({bad - ties} tokens)"

    lines = [
        "| architecture | dtype | routing | layers x tokens | recorded logits = router's "
        "| patched experts = router's | patched weights max abs (ulp) | dtypes "
        "| `capture --cpu` experts = router's | `capture --cpu` weights max abs (ulp) "
        "| tokens the bias / the groups changed | model out max abs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['architecture']} | {r['dtype']} | {r['spec']} | {r['layers']} x {r['tokens']} "
            f"| {yes(r['recorded_logits_equal'])} | {experts(r, 'patched')} "
            f"| {r['patched_weight_max_abs']:.1e} ({r['patched_weight_max_ulps']}) "
            f"| {yes(r['dtypes_equal'])} | {experts(r, 'capture')} "
            f"| {r['capture_weight_max_abs']:.1e} ({r['capture_weight_max_ulps']}) "
            f"| {grouped(r)} "
            f"| {r['model_output_max_abs']:.1e} |"
        )
    lines.append("")
    lines.append("Each router mirrors (installed transformers):")
    for r in {r["architecture"]: r for r in results}.values():
        lines.append(f"- {r['architecture']}: `{r['router']}`")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--moesim", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, CPU")
    results = run_all(args.dtype, args.moesim)
    print(table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    bad = [f"{r['architecture']} {r['dtype']}" for r in results if not r["ok"]]
    print("ALL MATCH" if not bad else f"MISMATCH: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
