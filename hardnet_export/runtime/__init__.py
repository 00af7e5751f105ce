"""Runtime: one descriptor API over PyTorch, ONNX Runtime and TensorRT artifacts.

Example::

    from hardnet_export import runtime

    describer = runtime.load("model.fp16.onnx")          # or .pth, .engine; None: shipped
    descriptors = describer.describe(patches)            # (N, 32, 32) -> (N, 128)
    keypoints, descriptors = describer.compute(image, cv2.SIFT_create().detect(image))

Importing this package loads numpy and OpenCV only; torch, ONNX Runtime, TensorRT and
cuda-python are imported by the backend that needs them.
"""

from __future__ import annotations

from typing import Any

from hardnet_export.artifacts.backends import Backend, backends, register_backend
from hardnet_export.geometry import DEFAULT_MAGNIFICATION, extract_patches
from hardnet_export.runtime.base import Describer
from hardnet_export.runtime.registry import load

__all__ = [
    "BACKENDS",
    "DEFAULT_MAGNIFICATION",
    "Backend",
    "Describer",
    "backends",
    "extract_patches",
    "load",
    "register_backend",
]


def __getattr__(name: str) -> Any:
    # BACKENDS reads the live table (register_backend adds to it after import).
    if name == "BACKENDS":
        return backends()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
