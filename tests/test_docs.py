"""The documentation: the site builds with warnings as errors, and the README's links land.

The build needs the ``docs`` extra (part of ``all``, which CI installs). Without it the build
test is skipped with the command that installs it; under CI (``CI`` set) it fails instead, so
the docs cannot stop being built unnoticed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_MODULES = ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python")
# An inline Markdown link or image target: ](target) or ](target#anchor).
LINK = re.compile(r"\]\(([^()\s]+)\)")


def _missing_docs_modules() -> list[str]:
    missing = []
    for module in DOCS_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package is missing
            found = False
        if not found:
            missing.append(module)
    return missing


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing_docs_modules()
    if missing:
        reason = (
            f"the docs extra is not installed (no {', '.join(missing)}): "
            'python -m pip install -e ".[docs]"'
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI installs it through the 'all' extra")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    took = time.perf_counter() - start
    assert result.returncode == 0, (
        f"`mkdocs build --strict` failed after {took:.1f} s:\n{result.stdout}\n{result.stderr}"
    )
    print(f"mkdocs build --strict: {took:.1f} s")
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [
        "index.html",
        "getting-started/index.html",
        "deploying/index.html",
        "sfm/index.html",
        "training/index.html",
        "benchmarks/index.html",
        "design/index.html",
        "api/runtime/index.html",
        "api/applications/index.html",
        "repo/benchmarks/results/magnification/index.html",  # a result file the docs link to
    ],
)
def test_the_site_has_its_pages(site: Path, page: str) -> None:
    assert (site / page).is_file(), page


@pytest.mark.slow
def test_the_api_reference_is_generated_from_the_docstrings(site: Path) -> None:
    runtime = (site / "api" / "runtime" / "index.html").read_text()
    assert "hardnet_export.runtime.load" in runtime


def _relative_links(markdown: str) -> list[str]:
    links = []
    for target in LINK.findall(markdown):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        links.append(target.split("#", 1)[0])
    return links


def test_every_relative_link_in_the_readme_lands_on_a_file() -> None:
    links = _relative_links(README.read_text())
    assert any(link.startswith("docs/") for link in links), "the README links to docs/"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_readme_stays_a_landing_page() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= 200, f"README.md has {lines} lines: move the detail into docs/"
