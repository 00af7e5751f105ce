"""The GPU skip rule.

Helpers that write test data live in ``fixture_files.py``, not here: several test folders
have their own conftest.py, all imported as the module ``conftest``, so
``from conftest import ...`` would pick up whichever was collected last.
"""

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


def pytest_report_header(config: pytest.Config) -> str:
    # INT8 figures depend on the CPU's int8 kernels; say which ones this run had.
    from hardnet_export import host

    isa = host.int8_isa()
    return f"hardnet-export: {host.cpu_model()}, int8 kernels {isa} ({host.INT8_ISAS[isa]})"
