"""Calibration fixtures: the shipped model's FP32 graph, a 256-patch set, 500 held-out pairs.

The shipped (trained) model, not a random one: INT8 accuracy depends on trained activation
statistics, and the accuracy the tests assert is the one users get.
"""

from __future__ import annotations

import onnx
import pytest

from hardnet_export import HardNet, load_model
from hardnet_export.calibration.dataset import CalibrationSet, make_calibration_set
from hardnet_export.data.builtin import validation_pairs
from hardnet_export.data.types import MatchedPairs
from hardnet_export.export.onnx import torch_to_onnx


@pytest.fixture(scope="session")
def model() -> HardNet:
    return load_model()


@pytest.fixture(scope="session")
def fp32_graph(model: HardNet) -> onnx.ModelProto:
    return torch_to_onnx(model)


@pytest.fixture(scope="session")
def calibration() -> CalibrationSet:
    return make_calibration_set("builtin", size=256, seed=0)


@pytest.fixture(scope="session")
def gate_pairs() -> MatchedPairs:
    return validation_pairs(500, seed=0)
