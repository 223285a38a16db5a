"""Replacing the forward of HuggingFace routers (transformers 5.x) with moesim's kernel.

Each supported router's forward becomes: logits computed as the router computes them -> record
them (fp32) -> moesim's kernel for the top-k -> `(router_logits, weights * scale, indices)`, with
the dtypes the router returns (see `routers.py`). Routers moesim cannot reproduce (DeepSeek-V2
group_limited_greedy) keep their own routing and are only recorded. Inference only: the kernel
has no backward.

The kernel is the CUDA one through CuPy (`kernel.GatingKernel`, the default) or any object with
the same `route_torch` method, e.g. `twin.CpuTwinKernel`, which runs the kernel's CPU twin through
`moesim capture --cpu` so that the patch runs, and is checked, on a machine without a GPU.
"""

import torch
import torch.nn.functional as F

from .routers import SUPPORTED, router_spec


def patch_model(model, recorder, use_kernel=True, kernel=None):
    """Patches every router of `model` whose class is in `routers.SUPPORTED`; returns the count.

    `use_kernel=False` only records (each router keeps its own routing); `kernel` replaces the
    default CUDA kernel."""
    if use_kernel and kernel is None:
        from .kernel import GatingKernel  # needs CuPy and a GPU

        kernel = GatingKernel()
    patched = 0
    for module in model.modules():
        if type(module).__name__ not in SUPPORTED:
            continue
        spec = router_spec(module) if use_kernel else None
        layer = recorder.layer_for(module)
        module.forward = _forward(module, module.forward, spec, kernel, recorder, layer)
        patched += 1
    return patched


def router_logits(module, hidden_states, spec):
    """`module`'s logits for `hidden_states`, computed as its own forward computes them: in fp32
    for the DeepSeek routers, in the model's dtype for the others (their softmax then upcasts)."""
    hidden = hidden_states.reshape(-1, module.hidden_dim)
    if spec is None or spec.fp32_logits:
        return F.linear(hidden.type(torch.float32), module.weight.type(torch.float32))
    return F.linear(hidden, module.weight)


def _forward(module, original, spec, kernel, recorder, layer):
    def forward(hidden_states):
        with torch.no_grad():
            logits = router_logits(module, hidden_states, spec)
            scores_in = logits.float().contiguous()
            recorder.record(layer, scores_in.cpu().numpy())
        if spec is None:
            return original(hidden_states)
        bias = module.e_score_correction_bias.detach().float() if spec.has_bias else None
        indices, weights = kernel.route_torch(scores_in, spec, bias)
        weights = weights.to(logits.device)
        if spec.scale != 1.0:
            weights = weights * spec.scale
        if not spec.fp32_weights:
            weights = weights.to(logits.dtype)
        return logits, weights, indices.to(logits.device)

    return forward
