"""Calibration fixtures: a 256-patch set drawn from the built-in training photos."""

from __future__ import annotations

import pytest

from hardnet_export.calibration.dataset import CalibrationSet, make_calibration_set


@pytest.fixture(scope="session")
def calibration() -> CalibrationSet:
    return make_calibration_set("builtin", size=256, seed=0)
