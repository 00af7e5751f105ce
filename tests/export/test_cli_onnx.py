from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hardnet_export.export.metadata import read_metadata


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hardnet_export", *args], capture_output=True, text=True, timeout=300
    )


def test_onnx_command_writes_graph(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = run_cli("onnx", str(checkpoint), "-o", str(out), "--no-parity")
    assert result.returncode == 0, result.stderr
    assert read_metadata(out)["precision"] == "fp32"
    assert str(out) in result.stdout


def test_onnx_command_errors_are_one_sentence(checkpoint: Path, tmp_path: Path) -> None:
    cases = [
        (("onnx", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "a.onnx")), "not found"),
        (("onnx", str(checkpoint), "-o", str(tmp_path / "no" / "a.onnx")), "does not exist"),
        (("onnx", str(checkpoint), "-o", str(tmp_path / "a.onnx"), "--precision", "int4"), "int4"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode != 0
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())
