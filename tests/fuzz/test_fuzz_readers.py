"""Fuzzing every reader of a file field: JSON documents, checkpoints, ONNX metadata, engine
sidecars and ``.npy`` files.

Whatever the bytes, a reader returns its record or raises a ValueError/TypeError (or
FileNotFoundError for a missing file) whose message names the file, never another exception
(a KeyError from deep inside, a RecursionError, an OpenCV or pickle error) and never after
more than the hang guard. Inputs start from a valid document and are then broken: a field
given another type, a number made NaN or huge, the text truncated or nested deeply, strings
that look like booleans.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardnet_export._io import load_npy
from hardnet_export.artifacts.metadata import GraphMetadata
from hardnet_export.artifacts.quantisation import GateResult, Quantisation
from hardnet_export.artifacts.sidecar import FORMAT, EngineSidecar, read_sidecar
from hardnet_export.model import HardNet, read_checkpoint
from hardnet_export.validate import parse_json

pytestmark = pytest.mark.slow

HANG_GUARD = timedelta(seconds=5)
FUZZ = settings(
    max_examples=60,
    deadline=HANG_GUARD,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DOCUMENTED = (ValueError, TypeError, FileNotFoundError)

HOSTILE_VALUES = st.one_of(
    st.sampled_from(
        ["true", "false", "1", "", "NaN", None, True, False, [], {}, -1, 0, 2**70, 1e308]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=5),
)

SIDECAR = {
    "format": FORMAT,
    "engine": "m.engine",
    "onnx": "m.onnx",
    "onnx_sha256": "0" * 64,
    "precision": "fp16",
    "tensorrt_version": "10.13.0",
    "gpu_name": "NVIDIA H200",
    "compute_capability": "9.0",
    "device_index": 0,
    "profile": {"input": "patches", "min": [1, 1, 32, 32], "opt": [256, 1, 32, 32],
                "max": [1024, 1, 32, 32]},
    "workspace_bytes": 1 << 30,
    "gpu_fallback": False,
    "version_compatible": False,
    "hardware_compatibility": "none",
}  # fmt: skip


@st.composite
def broken_documents(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with a few fields replaced, removed or added."""
    document = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*valid, "profile.min", "profile.max", "unknown_field"]))
        action = draw(st.sampled_from(["replace", "replace", "delete"]))
        if key.startswith("profile."):
            if isinstance(document.get("profile"), dict):
                document["profile"][key.split(".")[1]] = draw(HOSTILE_VALUES)
        elif action == "delete":
            document.pop(key, None)
        else:
            document[key] = draw(HOSTILE_VALUES)
    return document


def test_the_sidecar_fixture_is_valid() -> None:
    assert EngineSidecar.from_dict(SIDECAR, "m.engine.json").precision == "fp16"


@FUZZ
@given(document=broken_documents(SIDECAR))
def test_sidecar_fields(tmp_path: Path, document: dict[str, Any]) -> None:
    engine = tmp_path / "m.engine"
    (tmp_path / "m.engine.json").write_text(json.dumps(document, allow_nan=True))
    try:
        sidecar = read_sidecar(engine)
    except DOCUMENTED as exc:
        assert "m.engine.json" in str(exc)
        return
    assert sidecar is not None
    # What was accepted has the documented types (bool is not an int here).
    assert type(sidecar.device_index) is int and sidecar.device_index >= 0
    assert type(sidecar.workspace_bytes) is int
    assert type(sidecar.version_compatible) is bool
    assert all(type(v) is int for v in sidecar.profile["max"])


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_sidecar_bytes(tmp_path: Path, text: str | bytes) -> None:
    path = tmp_path / "m.engine.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(DOCUMENTED, match="m.engine.json"):
        read_sidecar(tmp_path / "m.engine")


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["random", "deep", "valid-cut", "constants"]))
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        return opener * depth + "1" + ("]" if opener == "[" else "}") * depth
    if kind == "valid-cut":
        text = json.dumps(SIDECAR)
        return text[: draw(st.integers(0, len(text)))]
    if kind == "constants":
        return json.dumps({"a": draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))})[:-1]
    return draw(st.text(max_size=300))


@FUZZ
@given(text=json_texts())
def test_json_documents(text: str) -> None:
    try:
        value = parse_json(text, source="doc.json")
    except ValueError as exc:
        assert str(exc).startswith("doc.json")
        return
    assert value == json.loads(text)


_GATE = {
    **dict.fromkeys(("pairs", "flat_patches"), 10),
    **dict.fromkeys(
        [f.name for f in dataclasses.fields(GateResult) if f.type in ("float", float)], 1.0
    ),
    "source": "held-out photos",
    "passed": True,
    "forced": False,
    "semantics": "host-kernels",
}
GRAPH_PROPS = GraphMetadata(
    producer="hardnet-export 1.0",
    precision="int8",
    input={"name": "patches", "dtype": "uint8", "shape": ["batch", 1, 32, 32]},
    quantisation=Quantisation(flavour="cpu", gates={"onnxruntime": GateResult.from_dict(_GATE)}),
).to_props()
# Graphs of earlier versions kept the quantisation in props of their own.
LEGACY_PROPS = {"int8_target": "cpu", "int8_gate": json.dumps(_GATE), "int8_isa": "avx2"}


@FUZZ
@given(
    props=st.dictionaries(
        st.sampled_from([*GRAPH_PROPS, *LEGACY_PROPS, "other_key"]),
        st.one_of(json_texts(), st.text()),
        max_size=4,
    ).map(lambda broken: {**GRAPH_PROPS, **broken})
)  # fmt: skip
def test_onnx_metadata_fields(props: dict[str, str]) -> None:
    try:
        meta = GraphMetadata.from_props(props, source="model.onnx")
    except DOCUMENTED as exc:
        assert "model.onnx" in str(exc)
        return
    for name in ("input", "output", "parity"):
        value = getattr(meta, name)
        assert value is None or isinstance(value, dict)
    assert meta.quantisation is None or isinstance(meta.quantisation, Quantisation)
    if meta.quantisation is not None:
        assert all(isinstance(g, GateResult) for g in meta.quantisation.gates.values())
        assert isinstance(meta.quantisation.settings, dict)
    assert meta.flavour in (None, "tensorrt", "cpu")


CHECKPOINT_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from(["hardnet-export/1", "other", 3]),
        "state_dict": st.sampled_from(["weights", "empty", "not a dict", "bad values"]),
        "meta": st.one_of(json_texts(), HOSTILE_VALUES),
        "step": HOSTILE_VALUES,
        "lr_anchor": HOSTILE_VALUES,
        "lr_anchor_step": HOSTILE_VALUES,
        "optimizer": HOSTILE_VALUES,
        "epoch": HOSTILE_VALUES,
    },
)
WEIGHTS = HardNet().state_dict()


@FUZZ
@given(fields=CHECKPOINT_FIELDS)
def test_checkpoint_fields(tmp_path: Path, fields: dict[str, Any]) -> None:
    kinds = {
        "weights": WEIGHTS,
        "empty": {},
        "not a dict": [1, 2],
        "bad values": {"features.0.weight": "zeros"},
    }
    payload = {k: kinds[v] if k == "state_dict" else v for k, v in fields.items()}
    path = tmp_path / "fuzz.pth"
    torch.save(payload, path)
    try:
        checkpoint = read_checkpoint(path)
    except DOCUMENTED as exc:
        assert "fuzz.pth" in str(exc)
        assert "weights_only" not in str(exc)
        return
    assert all(torch.is_tensor(v) for v in checkpoint.state_dict.values())
    assert isinstance(checkpoint.meta, dict)
    if "step" in checkpoint.extra:
        assert type(checkpoint.extra["step"]) is int or float(checkpoint.extra["step"]).is_integer()


@FUZZ
@given(cut=st.integers(0, 4000), flip=st.integers(0, 4000))
def test_corrupt_checkpoint_bytes(tmp_path: Path, cut: int, flip: int) -> None:
    path = tmp_path / "corrupt.pth"
    torch.save({"format": "hardnet-export/1", "state_dict": {"w": torch.ones(8)}, "meta": "{}"},
               path)  # fmt: skip
    data = bytearray(path.read_bytes())
    if flip < len(data):
        data[flip] ^= 0xFF
    path.write_bytes(bytes(data[: max(cut, 1)] if cut < len(data) else data))
    try:
        read_checkpoint(path)
    except DOCUMENTED as exc:
        assert "corrupt.pth" in str(exc)


@FUZZ
@given(
    kind=st.sampled_from(["bytes", "npz", "object", "cut", "array"]),
    blob=st.binary(max_size=300),
    shape=st.lists(st.integers(0, 5), max_size=4),
)
def test_npy_files(tmp_path: Path, kind: str, blob: bytes, shape: list[int]) -> None:
    path = tmp_path / "given.npy"
    if kind == "bytes":
        path.write_bytes(blob)
    elif kind == "npz":
        with open(path, "wb") as f:
            np.savez(f, a=np.zeros(shape))
    elif kind == "object":
        np.save(path, np.array([blob], dtype=object), allow_pickle=True)
    else:
        np.save(path, np.zeros(shape, np.float32))
        if kind == "cut":
            path.write_bytes(path.read_bytes()[: len(blob)])
    try:
        array = load_npy(path, "keypoints")
    except DOCUMENTED as exc:
        assert "given.npy" in str(exc)
        return
    assert isinstance(array, np.ndarray) and array.dtype != object
