"""Resizing dataset patches to the network's 32x32 input."""

from __future__ import annotations

import cv2
import numpy as np

PATCH_SIZE = 32


def resize_patches(patches: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """Bilinear resize of every patch to ``size`` x ``size`` (Brown 64 -> 32, HPatches 65 -> 32).

    Shape:
        - patches: (N, S, S) uint8.
        - output: (N, size, size) uint8; the input itself (made contiguous) when S == size.
    """
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise ValueError(f"patches must be (N, S, S) uint8, got {patches.shape} {patches.dtype}")
    if patches.shape[1:] == (size, size):
        return np.ascontiguousarray(patches)
    out = np.empty((len(patches), size, size), np.uint8)
    for i, patch in enumerate(patches):
        cv2.resize(patch, (size, size), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out
