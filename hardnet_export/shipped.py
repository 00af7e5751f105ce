"""What the shipped models take and give, and where they lie (torch-free, so the runtime can
find them).

The checkpoint is what training wrote; the FP32 ONNX graph beside it is its export
(``hardnet-export onnx -o hardnet_export/weights/hardnet_builtin.fp32.onnx``, checked against
the checkpoint by ``tests/test_shipped_model.py``), so machines without torch run the model.
The table of every shipped model (the default and its smaller variants) is
:mod:`hardnet_export.artifacts.models`.

The patch side lives here, below both :mod:`hardnet_export.geometry` and
:mod:`hardnet_export.artifacts` (which may not import each other), so that every stage reads
one value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hardnet_export.errors import MissingFileError, Remedy

#: Side of the square grayscale patch every model takes, in pixels.
PATCH_SIZE = 32
#: Added to each patch's standard deviation before the graph divides by it (a flat patch
#: has none).
STD_EPSILON = 1e-7
#: The folder of every shipped model's checkpoint, FP32 graph and model card.
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: The model ``load_model()`` and ``runtime.load()`` give without a name or path (the first
#: entry of :data:`hardnet_export.artifacts.models.MODELS`).
DEFAULT_MODEL = "hardnet"
#: The default model's file stem in :data:`WEIGHTS_DIR`.
DEFAULT_STEM = "hardnet_builtin"
#: The shipped HardNet checkpoint, trained on the built-in photos (model card beside it).
SHIPPED_WEIGHTS = WEIGHTS_DIR / f"{DEFAULT_STEM}.pth"
#: The same weights as an FP32 ONNX graph, for the torch-free runtime.
SHIPPED_ONNX = WEIGHTS_DIR / f"{DEFAULT_STEM}.fp32.onnx"


def require_shipped(
    path: Path, remedy: str = "", remedies: Mapping[str, Remedy] | None = None
) -> Path:
    """``path`` (one of the default model's files) if this installation has it.

    Raises:
        MissingFileError: "no shipped model in this installation", naming ``path``, then
            ``remedy`` (what to pass instead) when given, which may hold the placeholders of
            ``remedies`` (:class:`~hardnet_export.errors.HardnetError`).
    """
    if not path.is_file():
        hint = f"; {remedy}" if remedy else ""
        raise MissingFileError(
            f"no shipped model in this installation ({path} is missing){hint}", remedies=remedies
        )
    return path
