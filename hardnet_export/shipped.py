"""Where the models shipped inside the package lie (torch-free, so the runtime can find them).

The checkpoint is what training wrote; the FP32 ONNX graph beside it is its export
(``hardnet-export onnx -o hardnet_export/weights/hardnet_builtin.fp32.onnx``, checked against
the checkpoint by ``tests/test_shipped_model.py``), so machines without torch run the model.
The table of every shipped model (the default and its smaller variants) is
:mod:`hardnet_export.artifacts.models`.
"""

from __future__ import annotations

from pathlib import Path

#: The folder of every shipped model's checkpoint, FP32 graph and model card.
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: The shipped HardNet checkpoint, trained on the built-in photos (model card beside it).
SHIPPED_WEIGHTS = WEIGHTS_DIR / "hardnet_builtin.pth"
#: The same weights as an FP32 ONNX graph, for the torch-free runtime.
SHIPPED_ONNX = SHIPPED_WEIGHTS.with_name("hardnet_builtin.fp32.onnx")
