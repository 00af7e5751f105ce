"""Fixtures shared by the export tests: one small checkpoint, real patches, one export each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hardnet_export import HardNet, save_checkpoint
from hardnet_export.export.onnx import default_parity_patches, export_onnx


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "weights.pth"
    return save_checkpoint(path, HardNet(), step=123, data="builtin", config={"lr": 10.0})


@pytest.fixture(scope="session")
def parity_patches() -> np.ndarray:
    # 300 real patches from the held-out built-in photos (the export's default parity set).
    return default_parity_patches()[0]


@pytest.fixture(scope="session")
def fp32_onnx(
    checkpoint: Path, parity_patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.fp32.onnx"
    return export_onnx(checkpoint, out, parity_patches=parity_patches)


@pytest.fixture(scope="session")
def fp16_onnx(
    checkpoint: Path, parity_patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.fp16.onnx"
    return export_onnx(checkpoint, out, precision="fp16", parity_patches=parity_patches)
