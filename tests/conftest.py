"""Shared fixtures and the GPU skip rule."""

from __future__ import annotations

import pytest


def cuda_device_count() -> int:
    """CUDA devices visible through the driver; 0 without a driver or cuda-python."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        return 0
    err, count = runtime.cudaGetDeviceCount()
    return int(count) if int(err) == 0 else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_device_count() > 0:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
