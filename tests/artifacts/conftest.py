"""One small FP16 export (random HardNet) shared by the artifacts tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fp16_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from hardnet_export import HardNet, save_checkpoint
    from hardnet_export.export.onnx import export_onnx

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("artifacts")
    weights = save_checkpoint(folder / "w.pth", HardNet().eval())
    return export_onnx(weights, folder / "model.fp16.onnx", variant="fp16", parity=False)
