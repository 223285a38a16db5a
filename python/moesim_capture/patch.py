"""Replacing the forward of HuggingFace routers (transformers 5.x) with moesim's kernel.

Each supported router's forward becomes: fp32 logits -> record them -> moesim's kernel for the
top-k -> `(router_logits, weights * scale, indices)`, the tuple the MoE block expects. Routers
moesim cannot reproduce (DeepSeek-V2 group_limited_greedy) keep their own routing and are only
recorded. Inference only: the kernel has no backward.
"""

import cupy as cp
import torch
import torch.nn.functional as F

from .kernel import GatingKernel
from .routers import SUPPORTED, router_spec


def patch_model(model, recorder, use_kernel=True):
    """Patches every router of `model` whose class is in `routers.SUPPORTED`; returns the count."""
    kernel = GatingKernel() if use_kernel else None
    patched = 0
    for module in model.modules():
        if type(module).__name__ not in SUPPORTED:
            continue
        spec = router_spec(module) if use_kernel else None
        layer = recorder.layer_for(module)
        module.forward = _forward(module, module.forward, spec, kernel, recorder, layer)
        patched += 1
    return patched


def _forward(module, original, spec, kernel, recorder, layer):
    def forward(hidden_states):
        hidden = hidden_states.reshape(-1, module.hidden_dim)
        logits = F.linear(hidden.float(), module.weight.float()).detach().contiguous()
        recorder.record(layer, logits.cpu().numpy())
        if spec is None:
            return original(hidden_states)
        bias = None
        if spec.has_bias:
            bias = cp.from_dlpack(module.e_score_correction_bias.detach().float().contiguous())
        experts, weights = kernel.route(cp.from_dlpack(logits), spec, bias)
        indices = torch.from_dlpack(experts).long()
        weights = torch.from_dlpack(weights) * spec.scale
        if spec.has_bias or spec.scale != 1.0:  # DeepSeek routers return fp32
            return logits, weights, indices
        return logits.to(hidden.dtype), weights.to(hidden.dtype), indices

    return forward
