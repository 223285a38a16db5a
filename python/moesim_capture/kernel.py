"""moesim's gating kernel (src/capture/kernels/gating.cu) launched through CuPy.

CuPy's RawModule compiles the .cu with NVRTC at first use and shares memory with PyTorch through
DLPack without copies. That is why this is a CuPy module and not a cdylib with a C ABI: the GPU
machines ship PyTorch and CuPy, and Python users need no Rust toolchain or build step.
"""

import pathlib

import cupy as cp
import numpy as np
import torch

KERNEL = pathlib.Path(__file__).resolve().parents[2] / "src" / "capture" / "kernels" / "gating.cu"


class GatingKernel:
    """The plain (uninstrumented) kernel: routing decisions only; `moesim capture` runs the
    instrumented one on the recorded logits."""

    def __init__(self, source=KERNEL):
        code = pathlib.Path(source).read_text()
        self.module = cp.RawModule(code=code, options=("--fmad=false",))
        self.plain = self.module.get_function("moesim_gating")

    def route(self, logits, spec, bias=None):
        """Routes cupy float32 `[tokens, experts]` logits as `spec` (a RouterSpec) says; returns
        cupy `(experts int32 [tokens, k], weights float32 [tokens, k])`, best first."""
        logits = cp.ascontiguousarray(logits, dtype=cp.float32)
        tokens, experts = logits.shape
        k = spec.top_k
        out_experts = cp.empty((tokens, k), dtype=cp.int32)
        out_weights = cp.empty((tokens, k), dtype=cp.float32)
        null = np.uint64(0)
        bias_arg = null if bias is None else cp.ascontiguousarray(bias, dtype=cp.float32)
        warps = max(1, min(8, 49152 // (16 * experts)))
        blocks = max(1, min(-(-tokens // warps), 1 << 20))
        u32 = np.uint32
        args = (
            logits, bias_arg, out_experts, out_weights, null, null, null, null,
            u32(tokens), u32(experts), u32(k), u32(0 if spec.scoring == "softmax" else 1),
            u32(spec.groups or 0), u32(spec.top_groups or 0), u32(spec.renormalize),
            u32(0), u32(0), np.uint64(1), np.uint64(0),
        )
        self.plain((blocks,), (warps * 32,), args, shared_mem=warps * 16 * experts)
        return out_experts, out_weights

    def route_torch(self, logits, spec, bias=None):
        """`route` for torch tensors on the GPU (shared through DLPack, no copies): fp32
        `[tokens, experts]` logits and optional `[experts]` bias -> `(indices int64, weights
        float32)`, best first, as torch tensors on the same device."""
        bias_cp = None if bias is None else cp.from_dlpack(bias.float().contiguous())
        experts, weights = self.route(cp.from_dlpack(logits.float().contiguous()), spec, bias_cp)
        return torch.from_dlpack(experts).long(), torch.from_dlpack(weights)
