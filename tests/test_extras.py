"""The extras' dependency sets: CPU and GPU ONNX Runtime are alternatives, never together."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ORT = {"onnxruntime", "onnxruntime-gpu"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()


def _expand(requirements: list[str]) -> set[str]:
    """Distribution names, the project's own extras (``hardnet-export[a,b]``) expanded."""
    names: set[str] = set()
    for requirement in requirements:
        own = re.fullmatch(r"hardnet-export\[([\w,\s-]+)\]", requirement.strip())
        if own:
            for extra in own.group(1).split(","):
                names |= _expand(PROJECT["optional-dependencies"][extra.strip()])
        else:
            names.add(_name(requirement))
    return names


EXTRAS = sorted(PROJECT["optional-dependencies"])


def test_core_holds_no_onnx_runtime_and_no_torch() -> None:
    core = _expand(PROJECT["dependencies"])
    assert not core & ORT and "torch" not in core


@pytest.mark.parametrize("extra", EXTRAS, ids=lambda e: f"extra={e}")  # "gpu" alone is a mark
def test_no_extra_nor_core_plus_extra_holds_both_onnx_runtimes(extra: str) -> None:
    union = _expand(PROJECT["dependencies"]) | _expand(PROJECT["optional-dependencies"][extra])
    assert not ORT.issubset(union), f"core + [{extra}] installs both {sorted(ORT)}"


def test_cpu_and_gpu_each_bring_one_onnx_runtime() -> None:
    extras = PROJECT["optional-dependencies"]
    assert _expand(extras["cpu"]) & ORT == {"onnxruntime"}
    assert _expand(extras["gpu"]) & ORT == {"onnxruntime-gpu"}


def test_readme_install_chooses_one_onnx_runtime() -> None:
    install = next(
        line for line in (ROOT / "README.md").read_text().splitlines()
        if line.strip().startswith("python -m pip install") and " -e " in line
    )  # fmt: skip
    chosen = re.search(r'-e "\.\[([\w,]+)\]"', install)
    assert chosen, install
    names = _expand([f"hardnet-export[{chosen.group(1)}]"])
    assert len(names & ORT) == 1, install


def test_each_optional_package_comes_with_the_extra_the_errors_name() -> None:
    from hardnet_export.host import OPTIONAL_PACKAGES

    extras = PROJECT["optional-dependencies"]
    for module, (distribution, extra) in OPTIONAL_PACKAGES.items():
        assert distribution in _expand(extras[extra]), (module, distribution, extra)
