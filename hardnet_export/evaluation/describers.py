"""What evaluation compares: anything that turns 32x32 patches into descriptors.

A describer is a callable ``patches (N, 32, 32) uint8 -> descriptors (N, D) float32``.
Model files (``.pth``, ``.onnx``, ``.engine`` alike) load through
:func:`hardnet_export.runtime.load`, the one runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hardnet_export.artifacts.describe import DescribeFn
from hardnet_export.artifacts.models import lookup, model_names
from hardnet_export.errors import MissingFileError

if TYPE_CHECKING:
    from hardnet_export.runtime.base import Describer


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
        return entry.name, exact_model(entry.name, device=device).describe
    path = Path(model)
    if not path.is_file():
        raise MissingFileError(
            f"model {path} does not exist (expected a .pth, .onnx or .engine, or a registered "
            f"model: {', '.join(model_names())})"
        )
    describer = runtime.load(path, device=device)
    return path.name, describer.describe


def exact_model(name: str | None, *, device: str | None = "auto") -> Describer:
    """A registered model (None: the default) computed exactly in FP32, on any CPU: its
    checkpoint on PyTorch where torch is installed, else its FP32 graph on ONNX Runtime.

    What evaluation measures is the model itself: ``runtime.load(name)`` on the CPU would
    take the graph's host path (bf16 where the CPU has it), and the figures would change
    with the CPU.

    Raises:
        InputError: not a registered model's name.
    """
    from hardnet_export import runtime
    from hardnet_export.runtime.base import patch_describer
    from hardnet_export.runtime.registry import model_backend

    return patch_describer(runtime.load(name, backend=model_backend(), device=device), "evaluation")
