"""What evaluation compares: anything that turns 32x32 patches into descriptors.

A describer is a callable ``patches (N, 32, 32) uint8 -> descriptors (N, D) float32``.
Model files (``.pth``, ``.onnx``, ``.engine`` alike) load through
:func:`hardnet_export.runtime.load`, the one runtime.
"""

from __future__ import annotations

from pathlib import Path

from hardnet_export.artifacts.describe import DescribeFn
from hardnet_export.artifacts.models import lookup, model_names
from hardnet_export.errors import MissingFileError


def as_describer(model: str | Path | DescribeFn, *, device: str = "auto") -> tuple[str, DescribeFn]:
    """A display name and a describer for a model file or a callable.

    Args:
        model: a checkpoint (``.pth``/``.pt``), an exported artifact (``.onnx``, ``.engine``),
            a registered model's name (``hardnet``, ...) or any callable patches -> descriptors.
        device: ``auto`` (the runtime picks the best available), ``cpu``, ``cuda`` or
            ``cuda:N``.
    """
    if callable(model):
        return getattr(model, "__name__", type(model).__name__), model
    from hardnet_export import runtime

    entry = lookup(model)
    if entry is not None:
        describer = runtime.load(entry.name, device=device)
        return entry.name, describer.describe
    path = Path(model)
    if not path.is_file():
        raise MissingFileError(
            f"model {path} does not exist (expected a .pth, .onnx or .engine, or a registered "
            f"model: {', '.join(model_names())})"
        )
    describer = runtime.load(path, device=device)
    return path.name, describer.describe
