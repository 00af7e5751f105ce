"""What evaluation compares: anything that turns 32x32 patches into descriptors.

A describer is a callable ``patches (N, 32, 32) uint8 -> descriptors (N, D) float32``.
Model files (``.pth``, ``.onnx``, ``.engine`` alike) load through
:func:`hardnet_export.runtime.load`, the one runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Describe = Callable[[np.ndarray], np.ndarray]


def as_describer(model: str | Path | Describe, *, device: str = "auto") -> tuple[str, Describe]:
    """A display name and a describer for a model file or a callable.

    Args:
        model: a checkpoint (``.pth``/``.pt``), an exported artifact (``.onnx``, ``.engine``)
            or any callable patches -> descriptors.
        device: ``auto`` (the runtime picks the best available), ``cpu``, ``cuda`` or
            ``cuda:N``.
    """
    if callable(model):
        return getattr(model, "__name__", type(model).__name__), model
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model {path} does not exist (expected a .pth, .onnx or .engine)")
    from hardnet_export import runtime

    describer = runtime.load(path, device=None if device == "auto" else device)
    return path.name, describer.describe


def describe_in_chunks(
    describe: Describe, patches: np.ndarray, chunk: int = 4096, progress: Any = None
) -> np.ndarray:
    """Run ``describe`` over ``patches`` in chunks (bounded memory), advancing a rich task.

    Shape:
        - patches: (N, 32, 32) uint8.
        - output: (N, D) float32.
    """
    if patches.ndim != 3 or patches.shape[1:] != (32, 32) or patches.dtype != np.uint8:
        raise ValueError(f"patches must be (N, 32, 32) uint8, got {patches.shape} {patches.dtype}")
    parts = []
    for i in range(0, len(patches), chunk):
        d = np.asarray(describe(patches[i : i + chunk]), dtype=np.float32)
        if d.ndim != 2 or len(d) != len(patches[i : i + chunk]):
            raise ValueError(f"a describer must return (N, D) descriptors, got shape {d.shape}")
        parts.append(d)
        if progress is not None:
            progress(len(d))
    if not parts:
        return np.zeros((0, 128), np.float32)
    return np.concatenate(parts)
