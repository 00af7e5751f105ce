"""The provenance every exported ONNX graph carries in its ``metadata_props``, as a typed record.

:class:`GraphMetadata` is written by the exporter (:meth:`GraphMetadata.to_props`) and read by
the TensorRT builder, the runtime and ``check`` (:func:`read_metadata`), which may run without
torch or onnx: reading falls back to ONNX Runtime. Values are strings in the file; structured
ones (input spec, parity, provenance, quantisation) are JSON.

A quantised graph's calibration, settings and gates are one
:class:`~hardnet_export.artifacts.quantisation.Quantisation` record under ``quantisation``;
graphs exported before it existed kept them in separate ``int8_*`` and ``calibration*``
props, which are read into that record (:data:`LEGACY_QUANTISATION_PROPS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.quantisation import (
    SEMANTICS,
    SEMANTICS_DEVICE,
    SEMANTICS_EXACT,
    SEMANTICS_HOST,
    GateResult,
    Quantisation,
)
from hardnet_export.artifacts.variants import all_flavours, precisions
from hardnet_export.errors import InputError, MissingFileError, Remedy
from hardnet_export.host import int8_kernels_fit
from hardnet_export.validate import check_str, parse_json_object

PRODUCER = "hardnet-export"

# The semantics names live with the gate's record; readers have long imported them from here.
__all__ = [
    "GRAPH_KINDS",
    "IMAGE_GRAPH_REMEDY",
    "PRODUCER",
    "SEMANTICS",
    "SEMANTICS_DEVICE",
    "SEMANTICS_EXACT",
    "SEMANTICS_HOST",
    "GraphMetadata",
    "read_metadata",
]

#: What a graph takes: ``patches`` (N, 1, 32, 32), or ``image`` and ``keypoints`` (patch
#: extraction inside the graph: :mod:`hardnet_export.export.image_graph`).
GRAPH_KINDS = ("patches", "image")
#: How an image graph is made (its metadata then holds the settings an image describer and
#: an image engine need): ``export_image_graph()``, ``hardnet-export onnx --with-extraction``.
IMAGE_GRAPH_REMEDY = Remedy(
    stage="onnx",
    function="hardnet_export.export.image_graph.export_image_graph",
    switches={"with_extraction": True},
)
# Plain-string fields that hold numbers.
_FLOAT_FIELDS = frozenset({"magnification", "width"})
_INT_FIELDS = frozenset({"pyramid_levels", "min_image_side"})

#: The JSON-valued fields of :class:`GraphMetadata`.
_JSON_FIELDS = frozenset(
    {"input", "output", "weights_provenance", "parity", "quantisation", "inference_gates"}
)
#: The props in which graphs exported before :class:`Quantisation` kept its fields; JSON
#: ones are True.
LEGACY_QUANTISATION_PROPS = {
    "int8_target": False,
    "int8_isa": False,
    "int8_settings": True,
    "calibration_sha256": False,
    "calibration": True,
    "int8_gate": True,
    "int8_gate_openvino": True,
    "int8_sensitivity": True,
}


@dataclass(frozen=True)
class GraphMetadata:
    """What an exported HardNet graph says about itself.

    Attributes:
        producer: ``hardnet-export <version>``; None for a foreign graph.
        precision: ``fp32``, ``fp16``, ``int8`` (``unknown`` when a foreign graph says none).
        input: ``{"name", "dtype", "shape", "range", "normalisation"}``.
        output: ``{"name", "dtype", "shape"}``.
        weights_sha256: the checkpoint's sha256 (or its state_dict's for an in-memory model).
        weights_provenance: the checkpoint's metadata (training data, steps, ...).
        parity: :func:`hardnet_export.export.parity.parity_report` against PyTorch, with the
            semantics it was computed in and the host.
        quantisation: a quantised graph's flavour, settings, calibration, sensitivity and
            accuracy gates keyed by backend
            (:class:`~hardnet_export.artifacts.quantisation.Quantisation`); None for a float
            graph.
        inference_gates: accuracy gates of arithmetic a backend may run the graph in
            (``openvino:bf16``: OpenVINO with bf16 float layers), keyed
            ``backend:inference precision``, measured at export on a CPU that has it.
        graph_kind: ``patches`` or ``image`` (:data:`GRAPH_KINDS`); None (a graph from before
            image graphs, or a foreign one) means ``patches``.
        magnification: an image graph's support region in units of ``KeyPoint.size``.
        pyramid_levels: an image graph's number of pyramid levels.
        min_image_side: the smallest image side an image graph takes.
        model_name: the registered model (:func:`hardnet_export.models`) the weights are;
            None for other weights.
        width: the width multiplier of the network's channels (None: a graph from before
            widths, which is width 1, or a foreign one).
        layout: the network's layout (:data:`~hardnet_export.artifacts.models.LAYOUTS`;
            None: a graph from before layouts, which is ``l2net``, or a foreign one).
        other: keys this version does not know, as they were stored.
    """

    producer: str | None = None
    precision: str = "unknown"
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    weights_provenance: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    quantisation: Quantisation | None = None
    inference_gates: dict[str, GateResult] = field(default_factory=dict)
    graph_kind: str | None = None
    magnification: float | None = None
    pyramid_levels: int | None = None
    min_image_side: int | None = None
    model_name: str | None = None
    width: float | None = None
    layout: str | None = None
    other: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``patches`` or ``image`` (``patches`` where the graph does not say)."""
        return self.graph_kind or "patches"

    @property
    def flavour(self) -> str | None:
        """The variant's flavour (``tensorrt``, ``cpu`` for INT8); None for a float graph."""
        return self.quantisation.flavour if self.quantisation is not None else None

    @property
    def made_for(self) -> str | None:
        """The int8 kernel kind an INT8 graph's weights were made for (a key of
        :data:`~hardnet_export.host.INT8_ISAS`); None for a float graph or one that does not
        say."""
        return self.quantisation.isa if self.quantisation is not None else None

    def int8_kernels_fit(self, isa: str) -> bool:
        """Whether fused int8 kernels of kind ``isa`` compute this graph without clipping a
        sum (:func:`~hardnet_export.host.int8_kernels_fit`); always for a float graph."""
        return self.precision != "int8" or int8_kernels_fit(isa, self.flavour, self.made_for)

    @property
    def variant(self) -> str:
        """The variant name (``fp32``, ``fp16``, ``int8-tensorrt``, ``int8-cpu``, ...)."""
        from hardnet_export.artifacts.variants import variant_for

        return variant_for(self.precision, self.flavour).name

    @property
    def teacher(self) -> dict[str, Any] | None:
        """The teacher the weights were distilled from (``model``, ``file``, ``sha256``,
        ``width``), as their training recorded it; None for weights trained without one."""
        config = self.weights_provenance.get("config")
        found = config.get("teacher_provenance") if isinstance(config, dict) else None
        return found if isinstance(found, dict) else None

    def gate_on(self, backend: str) -> GateResult | None:
        """The accuracy gate the export measured with the graph run by ``backend`` (None
        where it did not; keys: :data:`~hardnet_export.artifacts.quantisation.GATE_BACKENDS`,
        or ``backend:inference precision`` for :attr:`inference_gates`)."""
        if backend in self.inference_gates:
            return self.inference_gates[backend]
        return self.quantisation.gates.get(backend) if self.quantisation is not None else None

    @property
    def input_name(self) -> str:
        return str(self.input.get("name", "patches"))

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` strings (JSON for structured fields; None fields omitted)."""
        props: dict[str, str] = {}
        for item in fields(self):
            if item.name == "other":
                continue
            value = getattr(self, item.name)
            if isinstance(value, Quantisation):
                value = value.to_dict()
            elif item.name == "inference_gates":
                value = {key: gate.to_dict() for key, gate in value.items()}
            if value is None or (item.name in _JSON_FIELDS and value == {}):
                continue
            props[item.name] = (
                json.dumps(value, default=str) if item.name in _JSON_FIELDS else str(value)
            )
        return {**self.other, **props}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "the graph") -> GraphMetadata:
        """Decode ``metadata_props``.

        Raises:
            InputError: a structured field that is not the JSON object this version wrote.
        """
        known = {item.name for item in fields(cls)} - {"other"}
        values: dict[str, Any] = {}
        legacy: dict[str, Any] = {}
        for key, text in props.items():
            where = f"{source}: metadata {key!r}"
            if key in LEGACY_QUANTISATION_PROPS:
                legacy[key] = (
                    parse_json_object(text, source=where)
                    if LEGACY_QUANTISATION_PROPS[key]
                    else check_str(key, text, source=source)
                )
            elif key not in known:
                continue
            elif key == "quantisation":
                values[key] = Quantisation.from_dict(
                    parse_json_object(text, source=where), source=where
                )
            elif key == "inference_gates":
                gates = parse_json_object(text, source=where)
                values[key] = {
                    str(name): GateResult.from_dict(_object(gate, where), source=where)
                    for name, gate in gates.items()
                }
            elif key in _JSON_FIELDS:
                values[key] = parse_json_object(text, source=where)
            elif key in _FLOAT_FIELDS or key in _INT_FIELDS:
                convert = float if key in _FLOAT_FIELDS else int
                try:
                    values[key] = convert(text)
                except ValueError:
                    raise InputError(
                        f"{source}: metadata {key!r} must be a number, got {text!r}"
                    ) from None
            else:
                values[key] = check_str(key, text, source=source)
        if "quantisation" not in values:
            values["quantisation"] = Quantisation.from_legacy_props(legacy, source=source)
        produced_here = str(values.get("producer", "")).startswith(PRODUCER)
        if produced_here and "precision" in values:
            # Ours name a known precision; a foreign graph may say anything and stays "unknown".
            check_str(
                "precision", values["precision"], choices=(*precisions(), "unknown"), source=source
            )
        if values["quantisation"] is not None:
            flavour = values["quantisation"].flavour
            check_str("quantisation flavour", flavour, choices=all_flavours(), source=source)
        if values.get("graph_kind") is not None:
            check_str("graph_kind", values["graph_kind"], choices=GRAPH_KINDS, source=source)
        other = {
            k: v for k, v in props.items() if k not in known and k not in LEGACY_QUANTISATION_PROPS
        }
        return cls(**values, other=other)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: each gate must be a JSON object, got {type(value).__name__}")
    return value


def read_metadata(path: str | Path) -> GraphMetadata:
    """The metadata of an ONNX file (with onnx, or ONNX Runtime without it).

    Raises:
        MissingFileError: no such file.
        InputError: not a readable ONNX file, or malformed metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"ONNX file not found: {path}")
    try:
        import onnx
    except ImportError:
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind classes
            raise InputError(f"{path} is not a readable ONNX file ({exc})") from exc
        return GraphMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a broken file
        raise InputError(f"{path} is not a readable ONNX file ({exc})") from exc
    return GraphMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))


#: The newest opset an image graph may have: from opset 20 on, ONNX spells GridSample's
#: bilinear mode ``linear``, which TensorRT's ONNX importer (10.x-11.x) does not recognise and
#: silently runs as nearest (NVIDIA/TensorRT issue 4646; onnx-tensorrt PR 1060).
MAX_IMAGE_GRAPH_OPSET = 19


def graph_opset(path: str | Path) -> int | None:
    """The default-domain (``ai.onnx``) opset an ONNX file imports; None if it names none.

    Reads ``ModelProto.opset_import`` from the protobuf wire format itself, so it runs in the
    torch- and onnx-free core (ONNX Runtime does not expose the opset).

    Raises:
        MissingFileError: no such file.
        InputError: not a readable ONNX (protobuf) file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"ONNX file not found: {path}")
    data = path.read_bytes()
    try:
        for number, value in _protobuf_fields(data):
            if number != 8 or not isinstance(value, bytes):  # 8: ModelProto.opset_import
                continue
            domain, version = "", None
            for inner, item in _protobuf_fields(value):
                if inner == 1 and isinstance(item, bytes):  # OperatorSetIdProto.domain
                    domain = item.decode()
                elif inner == 2 and isinstance(item, int):  # OperatorSetIdProto.version
                    version = item
            if domain in ("", "ai.onnx") and version is not None:
                return version
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable ONNX file ({exc})") from exc
    return None


def _protobuf_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message: varints as int, length-
    delimited fields as bytes, fixed-width ones as bytes (never needed here)."""
    found: list[tuple[int, int | bytes]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("a varint longer than 10 bytes")

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            found.append((number, varint()))
        elif wire == 2:
            size = varint()
            if pos + size > len(data):
                raise ValueError("a field runs past the end of the file")
            found.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            found.append((number, data[pos : pos + width]))
            pos += width
        else:
            raise ValueError(f"wire type {wire} at byte {pos}")
    return found


def check_image_graph_opset(path: str | Path, metadata: GraphMetadata, *, purpose: str) -> None:
    """Refuse an image graph above :data:`MAX_IMAGE_GRAPH_OPSET` for ``purpose`` (a TensorRT
    build, a check), whose GridSample TensorRT would run as nearest; other graphs pass.

    Raises:
        InputError: one line naming the file, its opset and the opset to export at.
    """
    if metadata.kind != "image":
        return
    opset = graph_opset(path)
    if opset is not None and opset > MAX_IMAGE_GRAPH_OPSET:
        raise InputError(
            f"{path} is an image graph at opset {opset}; {purpose} needs opset <= "
            f"{MAX_IMAGE_GRAPH_OPSET}, where GridSample's bilinear mode is not the 'linear' "
            "that TensorRT's ONNX importer runs as nearest (NVIDIA/TensorRT#4646); export it "
            f"again with opset {MAX_IMAGE_GRAPH_OPSET} or lower"
        )
