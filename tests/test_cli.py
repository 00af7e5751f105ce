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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "imagenet"], "unknown data spec 'imagenet'"),
        (["--data", "phototour:/no/such/folder/liberty"], "does not exist"),
        (["--batch-size", "1"], "batch_size must be at least 2"),
        (["--batch-reduce", "max"], "batch_reduce must be one of"),
    ],
)
def test_train_bad_arguments_give_one_sentence(args: list[str], message: str, tmp_path) -> None:
    result = run_cli("train", "--out", str(tmp_path / "run"), "--no-progress", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
