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
    """The same weights as an ONNX graph with a dynamic batch and uint8 input."""
    import warnings

    import torch

    from hardnet_export.model import load_model

    path = model_dir / "random.fp32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            load_model(checkpoint),
            (torch.zeros(2, 1, 32, 32, dtype=torch.uint8),),
            str(path),
            input_names=["patches"],
            output_names=["descriptors"],
            dynamic_axes={"patches": {0: "batch"}, "descriptors": {0: "batch"}},
            dynamo=False,
        )
    return path


@pytest.fixture(scope="session")
def patches() -> np.ndarray:
    """Textured uint8 patches: smooth random fields, like image patches (not white noise)."""
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (64, 40, 40)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), 2.0)[4:36, 4:36] for n in noise])
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).round().astype(np.uint8)
