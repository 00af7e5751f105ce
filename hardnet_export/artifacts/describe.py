"""The describe-function protocol and the one batching helper every stage uses.

A :data:`DescribeFn` turns a batch of 32x32 patches into descriptors: ``(N, 32, 32)`` or
``(N, 1, 32, 32)`` uint8 (whichever layout its caller passes) to ``(N, D)`` float32.
``Describer.describe`` (every runtime backend), OpenCV SIFT in evaluation and the exporter's
PyTorch and ONNX Runtime functions all have this shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from hardnet_export.errors import InputError
from hardnet_export.shipped import PATCH_SIZE

DescribeFn = Callable[[np.ndarray], np.ndarray]
#: Length of a HardNet descriptor.
DESCRIPTOR_SIZE = 128
#: Patches per call when the caller does not say: bounded memory, few calls.
DEFAULT_BATCH = 4096
#: Patches per inference a runtime backend runs, and the largest batch of a TensorRT engine's
#: profile, when the caller does not say: larger batches gain little throughput.
DEFAULT_MAX_BATCH = 1024


def remembering(describe: DescribeFn) -> DescribeFn:
    """``describe`` that answers a batch it has seen before (equal bytes) from memory: a
    reference model that several gates compare against runs once per batch."""
    answers: dict[bytes, np.ndarray] = {}

    def remembered(batch: np.ndarray) -> np.ndarray:
        key = np.ascontiguousarray(batch).tobytes()
        if key not in answers:
            answers[key] = describe(batch)
        return answers[key]

    return remembered


def batch_slices(n: int, max_batch: int | None) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``max_batch`` items each (``None`` or
    0: one slice of all ``n``); none for ``n`` = 0."""
    step = max_batch or n
    for start in range(0, n, step or 1):
        yield slice(start, min(start + step, n))


def describe_in_batches(
    describe: DescribeFn,
    patches: np.ndarray,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """Run ``describe`` over ``patches`` in slices of ``batch_size`` and concatenate.

    ``progress``, if given, is called with the number of patches done after each slice.

    Raises:
        InputError: ``batch_size`` < 1, patches that are not (N, [1,] 32, 32), or a describe
            function that returns anything but one (D,) row per patch.

    Shape:
        - patches: (N, 32, 32) or (N, 1, 32, 32).
        - Output: (N, D) float32; (0, 128) for N = 0.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    shape = tuple(patches.shape)
    square = shape[-2:] == (PATCH_SIZE, PATCH_SIZE)
    if not (len(shape) in (3, 4) and square and (len(shape) == 3 or shape[1] == 1)):
        side = f"{PATCH_SIZE}, {PATCH_SIZE}"
        raise InputError(f"patches must be (N, {side}) or (N, 1, {side}), got {shape}")
    parts = []
    for rows in batch_slices(len(patches), batch_size):
        chunk = patches[rows]
        out = np.asarray(describe(chunk), dtype=np.float32)
        if out.ndim != 2 or len(out) != len(chunk):
            raise InputError(
                f"a describe function must return one row per patch, got shape {out.shape} "
                f"for {len(chunk)} patches"
            )
        parts.append(out)
        if progress is not None:
            progress(len(out))
    if not parts:
        return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    return np.concatenate(parts)
