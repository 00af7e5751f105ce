from __future__ import annotations

import subprocess
import sys

import pytest

from hardnet_export import __version__

STAGES = ["train", "eval", "onnx", "trt", "bench", "describe", "match", "demo"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hardnet_export", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_stage() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for stage in STAGES:
        assert stage in result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hardnet-export {__version__}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_command_has_help_with_example(stage: str) -> None:
    result = run_cli(stage, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout and "hardnet-export" in result.stdout
