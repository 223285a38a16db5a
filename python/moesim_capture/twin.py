"""The gating kernel's CPU twin (`src/capture/reference.rs`) as a drop-in for `GatingKernel`.

`moesim capture --cpu` routes the logits with the twin, which agrees with the CUDA kernel bit for
bit (README "GPU capture"); the trace is read back through `moesim trace convert --to csv`. One
process per router call, so this is for checking the patch and for small CPU captures, not speed.
"""

import csv
import os
import subprocess
import tempfile

import numpy as np
import torch

from .routers import gating_flags


def find_moesim():
    """`$MOESIM`, else a `moesim` built in this checkout (release, then debug), else None."""
    if os.environ.get("MOESIM"):
        return os.environ["MOESIM"]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    for profile in ("release", "debug"):
        path = os.path.join(target, profile, "moesim")
        if os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def read_trace(moesim, trace, top_k):
    """`(experts int64 [layers, tokens, k], weights float32 [layers, tokens, k])` of a fixed-k
    trace, through `moesim trace convert --to csv` (rows keep the top-k's rank order)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trace.csv")
        subprocess.run([moesim, "trace", "convert", trace, "--to", "csv", "-o", out], check=True,
                       capture_output=True)
        with open(out) as handle:
            rows = list(csv.DictReader(handle))
    layers = 1 + max(int(r["layer"]) for r in rows)
    tokens = 1 + max(int(r["token"]) for r in rows)
    experts = np.full((layers, tokens, top_k), -1, dtype=np.int64)
    weights = np.zeros((layers, tokens, top_k), dtype=np.float32)
    filled = np.zeros((layers, tokens), dtype=np.int64)
    for row in rows:
        layer, token = int(row["layer"]), int(row["token"])
        rank = filled[layer, token]
        experts[layer, token, rank] = int(row["expert"])
        weights[layer, token, rank] = np.float32(row["weight"])
        filled[layer, token] += 1
    if (filled != top_k).any():
        raise ValueError(f"{trace}: not every token has {top_k} experts at every layer")
    return experts, weights


class CpuTwinKernel:
    """Routes with `moesim capture --cpu`; same interface as `kernel.GatingKernel.route_torch`."""

    def __init__(self, moesim=None):
        self.moesim = moesim or find_moesim()
        if self.moesim is None:
            raise FileNotFoundError("no moesim binary: set $MOESIM or build it (cargo build)")
        self.calls = 0

    def route_numpy(self, logits, spec, bias=None):
        """fp32 `[tokens, experts]` logits (and `[experts]` bias) -> `(experts int64 [tokens, k],
        weights float32 [tokens, k])`, best first, as the kernel decides."""
        self.calls += 1
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "logits.npy")
            np.save(path, np.ascontiguousarray(logits, dtype=np.float32))
            bias_path = None
            if bias is not None:
                bias_path = os.path.join(tmp, "bias.npy")
                np.save(bias_path, np.ascontiguousarray(bias, dtype=np.float32))
            trace = os.path.join(tmp, "routed.parquet")
            args = [self.moesim, "capture", "--cpu", "--logits", path]
            args += gating_flags(spec, bias_path) + ["-o", trace]
            subprocess.run(args, check=True, capture_output=True)
            experts, weights = read_trace(self.moesim, trace, spec.top_k)
        return experts[0], weights[0]

    def route_torch(self, logits, spec, bias=None):
        """`route_numpy` for torch tensors (returned on the CPU; the patch moves them back)."""
        bias_np = None if bias is None else bias.detach().float().cpu().numpy()
        experts, weights = self.route_numpy(logits.detach().float().cpu().numpy(), spec, bias_np)
        return torch.from_numpy(experts), torch.from_numpy(weights)
