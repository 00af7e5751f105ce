"""The GPU test gate.

Helpers that write test data live in ``fixture_files.py``, not here: several test folders
have their own conftest.py, all imported as the module ``conftest``, so
``from conftest import ...`` would pick up whichever was collected last.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpu_gate import gpu_test_gate, gpu_visible

from hardnet_export._cuda import cuda_status

pytest_plugins = ("model_fixtures",)


@pytest.fixture(autouse=True, scope="session")
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's own cache folder: a developer's tuning choices (``hardnet-export tune``)
    would change which backend runs a graph, so tests never read ``~/.cache``."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HARDNET_EXPORT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: only the GPU tests that would run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    count, why = cuda_status()
    if count > 0:
        return
    visible, evidence = gpu_visible()
    decision = gpu_test_gate(visible, wrappers_work=False)
    if decision == "fail":
        # A session-level error, not a skip: a GPU run must never pass having tested nothing.
        pytest.exit(
            f"a GPU is visible ({evidence}) but the CUDA wrappers cannot use it: {why}. "
            f"{len(gpu_items)} GPU test(s) would be skipped; fix the install, or deselect them "
            "with -m 'not gpu'",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    skip = pytest.mark.skip(reason=f"needs a CUDA device ({why})")
    for item in gpu_items:
        item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    # INT8 figures depend on the CPU's int8 kernels; say which ones this run had.
    from hardnet_export import host

    isa = host.int8_isa()
    return f"hardnet-export: {host.cpu_model()}, int8 kernels {isa} ({host.INT8_ISAS[isa]})"
