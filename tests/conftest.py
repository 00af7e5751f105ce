"""Shared fixtures and the GPU skip rule."""

from __future__ import annotations

import pytest

from hardnet_export._cuda import cuda_device_count


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_device_count() > 0:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
