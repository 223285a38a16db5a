"""Which HuggingFace router classes moesim's kernel can stand in for, and with which settings.

transformers 5.x gives every MoE block a router module (`block.gate`) whose forward returns
`(router_logits, top_k_weights, top_k_indices)`; the settings below reproduce each one's
semantics with moesim's kernel (src/capture/gating.rs documents the kernel's):

| class                 | scores  | groups                        | renormalize         | scale |
| MixtralTopKRouter     | softmax | -                             | always              | 1     |
| Qwen2MoeTopKRouter    | softmax | -                             | config.norm_topk_prob | 1   |
| Qwen3MoeTopKRouter    | softmax | -                             | config.norm_topk_prob | 1   |
| OlmoeTopKRouter       | softmax | -                             | config.norm_topk_prob | 1   |
| DeepseekV2TopkRouter  | softmax | greedy only (see below)       | never               | routed_scaling_factor |
| DeepseekV3TopkRouter  | sigmoid | n_group / topk_group, top-2 sum, e_score_correction_bias | norm_topk_prob | routed_scaling_factor |

DeepSeek-V2's `group_limited_greedy` scores a group by its maximum, not moesim's top-2 sum, and
masks with 0: those routers are left unpatched (their logits are still recorded).

Dtypes, as each forward in transformers 5.25 does them (checked on CPU by `check.py`): Mixtral,
Qwen2/3-MoE and OLMoE compute the logits in the model's dtype (`F.linear(hidden, weight)`) and take
the softmax in fp32; Mixtral returns fp32 weights, the other three cast them back to the logits'
dtype. Both DeepSeek routers compute the logits in fp32 and return fp32 weights.
"""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class RouterSpec:
    """moesim gating settings equivalent to one router module."""

    num_experts: int
    top_k: int
    scoring: str  # "softmax" or "sigmoid"
    renormalize: bool
    groups: Optional[int] = None
    top_groups: Optional[int] = None
    scale: float = 1.0
    has_bias: bool = False
    fp32_logits: bool = False  # logits computed from fp32 inputs (DeepSeek), else in model dtype
    fp32_weights: bool = True  # weights returned as fp32, else cast to the logits' dtype


SUPPORTED = (
    "MixtralTopKRouter",
    "Qwen2MoeTopKRouter",
    "Qwen3MoeTopKRouter",
    "OlmoeTopKRouter",
    "DeepseekV2TopkRouter",
    "DeepseekV3TopkRouter",
)


def router_spec(module) -> Optional[RouterSpec]:
    """The kernel settings for `module`, or None when moesim cannot reproduce its routing."""
    name = type(module).__name__
    if name not in SUPPORTED:
        return None
    experts, top_k = int(module.num_experts), int(module.top_k)
    if name == "MixtralTopKRouter":
        return RouterSpec(experts, top_k, "softmax", True)
    if name in ("Qwen2MoeTopKRouter", "Qwen3MoeTopKRouter", "OlmoeTopKRouter"):
        return RouterSpec(
            experts, top_k, "softmax", bool(module.norm_topk_prob), fp32_weights=False
        )
    scale = float(module.routed_scaling_factor)
    if name == "DeepseekV2TopkRouter":
        if module.topk_method != "greedy":
            return None
        return RouterSpec(experts, top_k, "softmax", False, scale=scale, fp32_logits=True)
    groups, top_groups = int(module.num_group), int(module.topk_group)
    grouped = groups > 1
    return RouterSpec(
        experts,
        top_k,
        "sigmoid",
        bool(module.norm_topk_prob),
        groups=groups if grouped else None,
        top_groups=top_groups if grouped else None,
        scale=scale,
        has_bias=True,
        fp32_logits=True,
    )


def gating_flags(spec: RouterSpec, bias: Optional[str] = None) -> list:
    """The `moesim capture` gating flags equivalent to `spec` (`bias`: a `.npy` path)."""
    args = ["--top-k", str(spec.top_k), "--scoring", spec.scoring]
    if spec.groups is not None:
        args += ["--groups", str(spec.groups), "--top-groups", str(spec.top_groups)]
    if bias is not None:
        args += ["--bias", bias]
    if not spec.renormalize:
        args.append("--no-renormalize")
    return args


def capture_args(
    spec: RouterSpec, logits_dir: str, out: str, bias: Optional[str] = None, cpu: bool = False
) -> list:
    """The `moesim capture` arguments that route the recorded logits as `spec` does (`cpu`: with
    the kernel's CPU twin). `routed_scaling_factor` is not part of the trace's weights."""
    args = ["capture", "--layers-from-dir", logits_dir] + gating_flags(spec, bias)
    return args + (["--cpu"] if cpu else []) + ["-o", out]
