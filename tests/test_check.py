"""``hardnet-export check`` on real artifacts: passes a good graph, fails a tampered one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixture_files import run_cli
from onnx import numpy_helper

from hardnet_export import host

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def int8_cpu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model's cpu-flavour INT8 graph for this host, as `onnx` writes it."""
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("check") / "model.int8-cpu.onnx"
    options = Int8Options(calibration_size=512, gate_size=300)
    return export_onnx(None, out, variant="int8-cpu", options=options, parity=False)


def test_check_artifact_passes_an_fp16_export_of_its_reference(
    fp16_onnx: Path, checkpoint: Path
) -> None:
    # The fast suite's one run of check_artifact, in this process (the CLI runs are slow).
    from hardnet_export.check import check_artifact

    report = check_artifact(fp16_onnx, checkpoint, device="cpu", pairs=50)
    assert report.passed, report.reason()
    assert report.precision == "fp16" and report.reference.endswith(checkpoint.name)
    assert "PASSED" in report.format()


@pytest.mark.slow
def test_check_passes_a_good_graph(int8_cpu: Path, tmp_path: Path) -> None:
    report = tmp_path / "check.json"
    result = run_cli("check", str(int8_cpu), "--pairs", "300", "--json", str(report))
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout and f"int8 kernels {host.int8_isa()}" in result.stdout
    assert "hardnet_builtin.pth" in result.stdout  # the shipped model, found by weights hash
    data = json.loads(report.read_text())
    assert data["passed"] and data["semantics"] == "host-kernels" and data["device"] == "cpu"
    assert data["gate"]["pairs"] == 300 and data["gate"]["min_cosine"] >= 0.98
    assert data["host"]["cpu"]["int8_isa"] == host.int8_isa()
    assert data["host"]["libraries"]["onnxruntime"]


@pytest.mark.slow
def test_check_fails_a_graph_with_one_corrupted_scale(int8_cpu: Path, tmp_path: Path) -> None:
    model = onnx.load(int8_cpu)
    inits = {init.name: init for init in model.graph.initializer}
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    name = quantize[len(quantize) // 2].input[1]  # one activation scale mid-network
    scale = numpy_helper.to_array(inits[name])
    # 100 times too small: that layer's activations saturate (a bit flip in the exponent).
    inits[name].CopyFrom(numpy_helper.from_array((scale / 100).astype(scale.dtype), name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, tampered)
    result = run_cli("check", str(tampered), "--pairs", "300")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tampered.onnx" in errors[0] and "limit" in errors[0]
    assert "Traceback" not in result.stderr and "FAILED" in result.stdout


@pytest.mark.slow
def test_check_needs_a_reference_for_foreign_weights(tmp_path: Path) -> None:
    import torch

    from hardnet_export import HardNet, save_checkpoint
    from hardnet_export.export.onnx import export_onnx

    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "mine.pth", HardNet().eval())
    fp16 = export_onnx(weights, tmp_path / "mine.fp16.onnx", variant="fp16", parity=False)
    result = run_cli("check", str(fp16), "--pairs", "100")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not the shipped model" in result.stderr and "--reference" in result.stderr
    result = run_cli("check", str(fp16), "--reference", str(weights), "--pairs", "100")
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout and "mine.pth" in result.stdout


@pytest.mark.slow
def test_check_refuses_a_missing_artifact(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "nothing.onnx"))
    assert result.returncode == 1 and "not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not np.any([p.exists() for p in tmp_path.iterdir()])
