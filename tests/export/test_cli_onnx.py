from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixture_files import run_cli

from hardnet_export._io import sha256_file
from hardnet_export.artifacts.metadata import read_metadata

pytestmark = pytest.mark.slow


def test_onnx_command_writes_graph(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = run_cli("onnx", str(checkpoint), "-o", str(out), "--no-parity")
    assert result.returncode == 0, result.stderr
    assert read_metadata(out).precision == "fp32"
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


def test_onnx_int8_command_gates_and_records_calibration(tmp_path: Path) -> None:
    # The shipped model (no weights argument): INT8 accuracy is a property of trained weights.
    out, calib = tmp_path / "m.int8.onnx", tmp_path / "calib.npy"
    args = ["onnx", "-o", str(out), "--precision", "int8"]
    args += ["--calibration-size", "256", "--save-calibration", str(calib), "--gate-pairs", "500"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    meta = read_metadata(out)
    assert meta.precision == "int8" and meta.flavour == "tensorrt"
    assert meta.quantisation is not None and meta.quantisation.gate is not None
    assert meta.quantisation.calibration_sha256 == sha256_file(calib)
    gate = meta.quantisation.gate
    assert gate.passed and "INT8 gate passed (exact-qdq)" in result.stdout
    assert gate.pairs == 500
    assert set(meta.parity["batches"]) == {"1", "7", "300"}
    assert meta.parity["semantics"] == gate.semantics == "exact-qdq"
    assert "float layers: conv0 fp16, conv1 fp16, conv2 fp16, conv3 fp16" in result.stdout


def test_onnx_int8_sensitivity_and_chosen_layers(tmp_path: Path) -> None:
    out = tmp_path / "m.int8-cpu.onnx"
    args = ["onnx", "-o", str(out), "--precision", "int8", "--int8-target", "cpu", "--no-parity"]
    args += ["--calibration-size", "256", "--gate-pairs", "200", "--sensitivity"]
    result = run_cli(*args, "--keep-float", "conv0,conv1", "--min-cosine", "0.9")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "m.int8-cpu.onnx.sensitivity.json").read_text())
    assert sorted(row["layer"] for row in report["layers"]) == [f"conv{i}" for i in range(7)]
    assert report["target"] == "cpu" and report["semantics"] == "host-kernels"
    assert "most sensitive first" in result.stdout and report["layers"][0]["layer"] in result.stdout
    quantisation = read_metadata(out).quantisation
    assert quantisation is not None and quantisation.sensitivity is not None
    assert quantisation.settings["float_layers"] == {"conv0": "fp32", "conv1": "fp32"}
    assert quantisation.sensitivity["layers"] == report["layers"]


def test_onnx_int8_float_budget_keeps_the_most_sensitive(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    args = ["onnx", "-o", str(out), "--precision", "int8", "--no-parity", "--float-budget", "0.3"]
    result = run_cli(*args, "--calibration-size", "256", "--gate-pairs", "200", "--force")
    assert result.returncode == 0, result.stderr
    quantisation = read_metadata(out).quantisation
    assert quantisation is not None and quantisation.sensitivity is not None
    ranking = [row["layer"] for row in quantisation.sensitivity["layers"]]
    kept = list(quantisation.settings["float_layers"])
    shares = {row["layer"]: row["share"] for row in quantisation.sensitivity["layers"]}
    assert kept and sum(shares[k] for k in kept) <= 0.3
    assert ranking[0] in kept or shares[ranking[0]] > 0.3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--keep-float", "conv9"], "no conv layer called conv9"),
        (["--for-isa", "avx2"], "cpu flavour only"),
        (["--int8-target", "cpu", "--for-isa", "pentium"], "unknown int8 instruction set"),
        (["--keep-float", "conv0", "--float-budget", "0.2"], "not both"),
    ],
)
def test_onnx_int8_bad_options(tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "m.onnx"
    result = run_cli("onnx", "-o", str(out), "--precision", "int8", "--no-parity", *extra)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_onnx_int8_command_refuses_blank_calibration(checkpoint: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.npy"
    np.save(blank, np.zeros((64, 32, 32), np.uint8))
    out = tmp_path / "m.int8.onnx"
    args = ["onnx", str(checkpoint), "-o", str(out), "--precision", "int8", "--no-parity"]
    result = run_cli(*args, "--calibration", str(blank), "--gate-pairs", "300")
    assert result.returncode != 0 and not out.exists()
    assert "refused by the accuracy gate" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_during_int8_export_leaves_no_temporaries(tmp_path: Path) -> None:
    # Python's default SIGTERM ends the process without finally blocks: the scratch folder,
    # ONNX Runtime's ort.quant.* folders and the half-written graph stayed behind.
    import os
    import signal
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "m.onnx"
    process = subprocess.Popen(
        [sys.executable, "-m", "hardnet_export", "onnx", "-o", str(out), "--precision", "int8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    deadline = time.monotonic() + 120
    while not list(scratch.glob("hardnet-int8-*")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    assert list(scratch.glob("hardnet-int8-*")), "the export never started its scratch folder"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    leftovers = [*scratch.glob("hardnet-int8-*"), *scratch.rglob("ort.quant.*")]
    assert leftovers == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no graph, no .tmp file
