from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardnet_export.artifacts.metadata import GraphMetadata, read_metadata
from hardnet_export.artifacts.quantisation import GateResult, Quantisation
from hardnet_export.errors import InputError, MissingFileError

GATE = GateResult(
    pairs=300,
    source="held-out photos",
    fpr95_reference=1.5,
    fpr95_candidate=1.7,
    fpr95_loss_pp=0.2,
    nn_accuracy_reference=90.0,
    nn_accuracy_candidate=89.5,
    nn_accuracy_loss_pp=0.5,
    min_cosine=0.99,
    mean_cosine=0.999,
    max_fpr95_loss_pp=1.0,
    max_nn_accuracy_loss_pp=2.0,
    passed=True,
    forced=False,
    min_cosine_limit=0.98,
    nn_agreement=0.97,
    min_cosine_all=0.95,
    flat_patches=1,
    host={"cpu": {"int8_isa": "avx2"}},
)


def test_round_trip_keeps_every_field_and_unknown_keys() -> None:
    meta = GraphMetadata(
        producer="hardnet-export 0.1.0",
        precision="int8",
        input={"name": "patches", "dtype": "uint8"},
        weights_sha256="ab" * 32,
        quantisation=Quantisation(
            flavour="cpu",
            isa="avx2",
            settings={"float_layers": {"conv0": "fp32"}},
            calibration={"source": "builtin", "size": 256, "sha256": "cd" * 32},
            gates={"onnxruntime": GATE, "openvino": GATE},
        ),
        other={"added_by_a_later_version": "x"},
    )
    props = meta.to_props()
    assert props["quantisation"].startswith("{") and props["precision"] == "int8"
    assert "parity" not in props  # None fields are not written
    assert not any(key.startswith("int8_") for key in props)  # one record, not seven props
    assert GraphMetadata.from_props(props) == meta
    assert meta.variant == "int8-cpu" and meta.input_name == "patches"
    assert meta.flavour == "cpu" and meta.quantisation is not None
    assert meta.quantisation.gate == GATE and meta.quantisation.calibration_sha256 == "cd" * 32


def test_graphs_of_earlier_versions_are_read_into_the_record() -> None:
    # How exports before the quantisation record stored it: one prop per field.
    props = {
        "producer": "hardnet-export 0.1.0",
        "precision": "int8",
        "int8_target": "cpu",
        "int8_isa": "avx2",
        "int8_settings": json.dumps({"float_layers": {"conv0": "fp32"}}),
        "calibration_sha256": "cd" * 32,
        "calibration": json.dumps({"source": "builtin", "size": 256, "method": "percentile"}),
        "int8_gate": json.dumps(GATE.to_dict()),
        "int8_gate_openvino": json.dumps({**GATE.to_dict(), "passed": False}),
        "int8_sensitivity": json.dumps({"layers": []}),
    }
    meta = GraphMetadata.from_props(props, "old.onnx")
    assert meta.other == {} and meta.variant == "int8-cpu"
    quantisation = meta.quantisation
    assert quantisation is not None and quantisation.flavour == "cpu"
    assert quantisation.isa == "avx2" and quantisation.scheme == "qdq"
    assert quantisation.settings == {"float_layers": {"conv0": "fp32"}}
    assert quantisation.calibration == {
        "source": "builtin",
        "size": 256,
        "method": "percentile",
        "sha256": "cd" * 32,
    }
    assert quantisation.gate == GATE and quantisation.failed_on("openvino")
    assert quantisation.sensitivity == {"layers": []}
    # Written again, it is the one record.
    assert GraphMetadata.from_props(meta.to_props()) == meta


def test_malformed_metadata_is_refused() -> None:
    with pytest.raises(InputError, match="'int8_gate' is not valid JSON"):
        GraphMetadata.from_props({"int8_gate": "{"}, "m.onnx")
    with pytest.raises(InputError, match="must be a JSON object"):
        GraphMetadata.from_props({"parity": "[1, 2]"}, "m.onnx")
    with pytest.raises(InputError, match=r"m\.onnx: metadata 'quantisation' lacks its flavour"):
        GraphMetadata.from_props({"quantisation": "{}"}, "m.onnx")
    partial = json.dumps({"flavour": "cpu", "gates": {"onnxruntime": {"passed": True}}})
    with pytest.raises(InputError, match="m.onnx.*gate 'onnxruntime' lacks the gate fields pairs"):
        GraphMetadata.from_props({"quantisation": partial}, "m.onnx")
    wrong = json.dumps({**GATE.to_dict(), "passed": "yes"})
    with pytest.raises(InputError, match="m.onnx.*passed must be true or false"):
        GraphMetadata.from_props({"int8_target": "cpu", "int8_gate": wrong}, "m.onnx")
    with pytest.raises(InputError, match="flavour must be one of tensorrt, cpu"):
        GraphMetadata.from_props({"quantisation": json.dumps({"flavour": "gpu"})}, "m.onnx")


def test_read_metadata_of_an_export(fp16_onnx: Path, tmp_path: Path) -> None:
    meta = read_metadata(fp16_onnx)
    assert meta.precision == "fp16" and meta.variant == "fp16"
    assert meta.output["shape"] == ["batch", 128] and meta.weights_sha256
    with pytest.raises(MissingFileError):
        read_metadata(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(InputError, match="not a readable ONNX file"):
        read_metadata(broken)


def test_quantisation_summary_names_each_gate_and_the_float_layers() -> None:
    quantisation = Quantisation(
        flavour="cpu",
        isa="amx-int8",
        settings={
            "float_layers": {"conv0": "fp32", "conv6": "fp32"},
            "openvino_float_layers": ["conv6"],
        },
        calibration={"sha256": "cd" * 32},
        gates={"onnxruntime": GATE, "openvino": GATE},
    )
    lines = quantisation.summary_lines()
    assert lines[0] == GATE.summary() and lines[1] == f"on OpenVINO: {GATE.summary()}"
    assert lines[2] == f"calibration set sha256 {'cd' * 32}"
    assert lines[3] == (
        "float layers: conv0 fp32, conv6 fp32 (conv6: OpenVINO's int8 kernels get it wrong "
        "here), for amx-int8 int8 kernels"
    )
