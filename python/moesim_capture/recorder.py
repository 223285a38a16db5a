"""Per-layer router logits collected during forward passes, saved as float32 .npy files."""

import os

import numpy as np


class LogitsRecorder:
    """Collects `[tokens, experts]` router logits per MoE layer, in call order.

    Layer indices are assigned in the order routers are registered (`layer_for`), which is the
    model's module order, so layer 0 is the first MoE block.
    """

    def __init__(self):
        self._layers = {}
        self._chunks = []
        self.enabled = True

    def layer_for(self, module) -> int:
        """The MoE layer index of a router module (assigned on first sight)."""
        key = id(module)
        if key not in self._layers:
            self._layers[key] = len(self._layers)
            self._chunks.append([])
        return self._layers[key]

    def record(self, layer: int, logits) -> None:
        """Appends a `[tokens, experts]` block (any array-like; torch tensors must be on CPU)."""
        if self.enabled:
            self._chunks[layer].append(np.asarray(logits, dtype=np.float32))

    def layer_logits(self, layer: int) -> np.ndarray:
        """All tokens recorded at `layer`, as one `[tokens, experts]` array."""
        return np.concatenate(self._chunks[layer], axis=0)

    def save(self, directory: str) -> list:
        """Writes `layer_XX.npy` per layer; fails when layers saw different token counts."""
        os.makedirs(directory, exist_ok=True)
        arrays = [self.layer_logits(layer) for layer in range(len(self._chunks))]
        counts = {a.shape[0] for a in arrays}
        if len(counts) != 1:
            raise ValueError(f"layers recorded different token counts: {sorted(counts)}")
        width = max(2, len(str(len(arrays) - 1)))
        paths = []
        for layer, array in enumerate(arrays):
            path = os.path.join(directory, f"layer_{layer:0{width}d}.npy")
            np.save(path, np.ascontiguousarray(array, dtype=np.float32))
            paths.append(path)
        return paths
