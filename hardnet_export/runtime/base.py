"""The one small base class every backend implements: load once, infer a batch."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

DESCRIPTOR_SIZE = 128
PATCH_SIZE = 32


def as_patch_batch(patches: Any) -> np.ndarray:
    """Validate patches and return them as a contiguous (N, 1, 32, 32) uint8 or float32 array.

    Accepts numpy arrays and anything ``np.asarray`` understands (CPU torch tensors included).

    Shape:
        - Input: (N, 32, 32) or (N, 1, 32, 32); uint8, or float32/float64 in 0..255.
        - Output: (N, 1, 32, 32), uint8 or float32.
    """
    array = np.asarray(patches)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1:] != (1, PATCH_SIZE, PATCH_SIZE):
        raise ValueError(
            f"patches must have shape (N, {PATCH_SIZE}, {PATCH_SIZE}) or "
            f"(N, 1, {PATCH_SIZE}, {PATCH_SIZE}), got {np.shape(patches)}"
        )
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype not in (np.float32, np.float64, np.float16):
        raise TypeError(f"patches must be uint8 or float (0..255), got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.size:
        if not np.isfinite(array).all():
            raise ValueError("patches contain NaN or inf")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 255.0:
            raise ValueError(f"float patches must lie in 0..255, got values in [{low}, {high}]")
    return array


class Describer(abc.ABC):
    """A loaded descriptor model: ``describe`` patches, ``compute`` at OpenCV keypoints.

    Subclasses implement ``_infer`` on one validated batch of at most ``max_batch`` patches;
    this class validates input, chunks large batches and handles N = 0.
    """

    backend: ClassVar[str] = ""

    def __init__(
        self, artifact: Path | None, *, precision: str, device: str, max_batch: int | None
    ) -> None:
        self.artifact = artifact
        self.precision = precision
        self.device = device
        self.max_batch = max_batch

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Descriptors of one batch.

        Shape:
            - batch: (n, 1, 32, 32) uint8 or float32, 1 <= n <= max_batch.
            - Output: (n, 128) float32.
        """

    def describe(self, patches: Any) -> np.ndarray:
        """128-D unit descriptors of 32x32 patches.

        Shape:
            - patches: (N, 32, 32) or (N, 1, 32, 32), uint8 or float (0..255); any N >= 0.
            - Output: (N, 128) float32.
        """
        batch = as_patch_batch(patches)
        if len(batch) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        step = self.max_batch or len(batch)
        chunks = [self._infer(batch[i : i + step]) for i in range(0, len(batch), step)]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(artifact={self.artifact}, precision={self.precision!r}, "
            f"device={self.device!r}, max_batch={self.max_batch})"
        )
