"""Small artifacts shared by the runtime tests: one random HardNet as .pth and as .onnx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-models")


@pytest.fixture(scope="session")
def checkpoint(model_dir: Path) -> Path:
    """A randomly initialised HardNet in this project's checkpoint format."""
    import torch

    from hardnet_export.model import HardNet, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(model_dir / "random.pth", HardNet().eval())


@pytest.fixture(scope="session")
def onnx_model(checkpoint: Path, model_dir: Path) -> Path:
    """The same weights exported by the project's exporter: FP32, dynamic batch, uint8 input."""
    from hardnet_export.export.onnx import export_onnx

    return export_onnx(checkpoint, model_dir / "random.fp32.onnx", parity=False)


@pytest.fixture(scope="session")
def onnx_fp16_model(checkpoint: Path, model_dir: Path) -> Path:
    from hardnet_export.export.onnx import export_onnx

    return export_onnx(checkpoint, model_dir / "random.fp16.onnx", variant="fp16", parity=False)


@pytest.fixture(scope="session")
def patches() -> np.ndarray:
    """Textured uint8 patches: smooth random fields, like image patches (not white noise)."""
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (64, 40, 40)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), 2.0)[4:36, 4:36] for n in noise])
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).round().astype(np.uint8)
