"""What evaluation compares: anything that turns 32x32 patches into descriptors.

A describer is a callable ``patches (N, 32, 32) uint8 -> descriptors (N, D) float32``.
Model files load through :func:`hardnet_export.runtime.load` when this installation has it
(``.pth``, ``.onnx``, ``.engine`` alike); without it, ``.pth`` checkpoints run through the
PyTorch model directly.
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
        device: ``auto``, ``cpu`` or ``cuda`` for backends that have a choice.
    """
    if callable(model):
        return getattr(model, "__name__", type(model).__name__), model
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model {path} does not exist (expected a .pth, .onnx or .engine)")
    from hardnet_export import runtime

    load: Any = getattr(runtime, "load", None)
    if load is not None:
        describer = load(path, device=device)
        return path.name, describer.describe
    if path.suffix in (".pth", ".pt"):
        return path.name, _torch_describer(path, device)
    raise ValueError(
        f"cannot evaluate {path}: {path.suffix} artifacts need hardnet_export.runtime.load, "
        "which this installation lacks; pass a .pth checkpoint"
    )


def _torch_describer(path: Path, device: str, batch: int = 1024) -> Describe:
    import torch

    from hardnet_export.model import load_model

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)  # fmt: skip
    model = load_model(path).to(dev)

    def describe(patches: np.ndarray) -> np.ndarray:
        out = np.empty((len(patches), 128), np.float32)
        with torch.inference_mode():
            for i in range(0, len(patches), batch):
                x = torch.from_numpy(np.ascontiguousarray(patches[i : i + batch]))[:, None]
                out[i : i + batch] = model(x.to(dev)).float().cpu().numpy()
        return out

    describe.__name__ = path.name
    return describe


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
