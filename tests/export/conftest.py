"""Fixtures of the export tests: one FP32 export of the root plugin's random ``checkpoint``;
and for INT8, the shipped model's FP32 graph and 500 held-out pairs (INT8 accuracy depends on
trained activation statistics, and the accuracy the tests assert is the one users get). The
checkpoint, ``parity_patches``, ``fp16_onnx`` and the 256-patch ``calibration`` set are in
tests/model_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from hardnet_export import load_model
from hardnet_export.data.builtin import validation_pairs
from hardnet_export.data.types import MatchedPairs
from hardnet_export.export.onnx import export_onnx, torch_to_onnx


@pytest.fixture(scope="session")
def fp32_onnx(
    checkpoint: Path, parity_patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.fp32.onnx"
    return export_onnx(checkpoint, out, parity_patches=parity_patches)


@pytest.fixture(scope="session")
def fp32_graph() -> onnx.ModelProto:
    """The shipped model's FP32 graph, as the exporter makes it."""
    return torch_to_onnx(load_model())


@pytest.fixture(scope="session")
def gate_pairs() -> MatchedPairs:
    return validation_pairs(500, seed=0)
