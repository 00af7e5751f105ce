"""Fixtures shared by the export tests: one small random checkpoint, real patches, one export
each; and for INT8, the shipped model's FP32 graph, a 256-patch calibration set and 500
held-out pairs (INT8 accuracy depends on trained activation statistics, and the accuracy the
tests assert is the one users get)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from hardnet_export import HardNet, load_model, save_checkpoint
from hardnet_export.calibration.dataset import CalibrationSet, make_calibration_set
from hardnet_export.data.builtin import validation_pairs
from hardnet_export.data.types import MatchedPairs
from hardnet_export.export.onnx import default_parity_patches, export_onnx, torch_to_onnx


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
    return export_onnx(checkpoint, out, variant="fp16", parity_patches=parity_patches)


@pytest.fixture(scope="session")
def fp32_graph() -> onnx.ModelProto:
    """The shipped model's FP32 graph, as the exporter makes it."""
    return torch_to_onnx(load_model())


@pytest.fixture(scope="session")
def calibration() -> CalibrationSet:
    return make_calibration_set("builtin", size=256, seed=0)


@pytest.fixture(scope="session")
def gate_pairs() -> MatchedPairs:
    return validation_pairs(500, seed=0)
