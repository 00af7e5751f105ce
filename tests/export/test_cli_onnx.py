from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from hardnet_export._io import sha256_file
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


def test_onnx_int8_command_gates_and_records_calibration(checkpoint: Path, tmp_path: Path) -> None:
    out, calib = tmp_path / "m.int8.onnx", tmp_path / "calib.npy"
    args = ["onnx", str(checkpoint), "-o", str(out), "--precision", "int8"]
    args += ["--calibration-size", "256", "--save-calibration", str(calib), "--gate-pairs", "500"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["int8_target"] == "tensorrt"
    assert meta["calibration_sha256"] == sha256_file(calib)
    assert meta["int8_gate"]["passed"] and "INT8 gate passed" in result.stdout
    assert meta["int8_gate"]["pairs"] == 500
    assert set(meta["parity"]["batches"]) == {"1", "7", "300"}


def test_onnx_int8_command_refuses_blank_calibration(checkpoint: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.npy"
    np.save(blank, np.zeros((64, 32, 32), np.uint8))
    out = tmp_path / "m.int8.onnx"
    args = ["onnx", str(checkpoint), "-o", str(out), "--precision", "int8", "--no-parity"]
    result = run_cli(*args, "--calibration", str(blank), "--gate-pairs", "300")
    assert result.returncode != 0 and not out.exists()
    assert "refused by the accuracy gate" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr
