"""hardnet-export: HardNet local descriptors from training to TensorRT.

Importing the package is cheap: torch is loaded only when a torch-backed name
(``HardNet``, ``load_model``, ``save_checkpoint``) is first used, so running
ONNX and TensorRT artifacts works where torch is not installed. ``models()`` lists the
registered models (torch-free); their names go wherever a model path goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "models": "hardnet_export.artifacts.models",
    "get_model": "hardnet_export.artifacts.models",
    "HardNet": "hardnet_export.model",
    "load_model": "hardnet_export.model",
    "save_checkpoint": "hardnet_export.model",
}

if TYPE_CHECKING:
    from hardnet_export.artifacts.models import get_model, models
    from hardnet_export.model import HardNet, load_model, save_checkpoint

__all__ = ["HardNet", "__version__", "get_model", "load_model", "models", "save_checkpoint"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hardnet_export' has no attribute {name!r}")
