from __future__ import annotations

from pathlib import Path

import pytest

from hardnet_export.artifacts.metadata import GraphMetadata, read_metadata
from hardnet_export.errors import InputError, MissingFileError


def test_round_trip_keeps_every_field_and_unknown_keys() -> None:
    meta = GraphMetadata(
        producer="hardnet-export 0.1.0",
        precision="int8",
        input={"name": "patches", "dtype": "uint8"},
        weights_sha256="ab" * 32,
        int8_target="cpu",
        int8_isa="avx2",
        int8_gate={"passed": True, "min_cosine": 0.99},
        other={"added_by_a_later_version": "x"},
    )
    props = meta.to_props()
    assert props["int8_gate"].startswith("{") and props["precision"] == "int8"
    assert "parity" not in props  # None fields are not written
    assert GraphMetadata.from_props(props) == meta
    assert meta.variant == "int8-cpu" and meta.input_name == "patches"


def test_malformed_metadata_is_refused() -> None:
    with pytest.raises(InputError, match="'int8_gate' is not valid JSON"):
        GraphMetadata.from_props({"int8_gate": "{"}, "m.onnx")
    with pytest.raises(InputError, match="must be a JSON object"):
        GraphMetadata.from_props({"parity": "[1, 2]"}, "m.onnx")


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
