"""Route HuggingFace transformers MoE models through moesim's gating kernel and record their
router logits in the layout `moesim capture --layers-from-dir` reads.

    from moesim_capture import patch_model, LogitsRecorder
    recorder = LogitsRecorder()
    patched = patch_model(model, recorder)          # routers now use moesim's kernel (CuPy)
    model(input_ids)                                # forward passes record per-layer logits
    recorder.save("logits/")                        # logits/layer_00.npy ... [tokens, experts]
    # then: moesim capture --layers-from-dir logits/ --top-k K ... -o trace.parquet

Pure-Python parts (router specs, the recorder) need only NumPy; the kernel needs CuPy and a GPU.
Without a GPU, `patch_model(model, recorder, kernel=CpuTwinKernel())` routes through the kernel's
CPU twin (`moesim capture --cpu`); `python -m moesim_capture.check` checks the patch that way.
"""

from .recorder import LogitsRecorder
from .routers import RouterSpec, router_spec, capture_args

__all__ = ["LogitsRecorder", "RouterSpec", "router_spec", "capture_args", "patch_model"]


def patch_model(model, recorder, use_kernel=True, kernel=None):
    """Patches every supported router of `model` (see `routers.SUPPORTED`); returns their count.
    `kernel`: the kernel to route with (default: the CUDA one; `twin.CpuTwinKernel()` on a CPU)."""
    from .patch import patch_model as _patch

    return _patch(model, recorder, use_kernel=use_kernel, kernel=kernel)
