"""The provenance every exported ONNX graph carries in its ``metadata_props``, as a typed record.

:class:`GraphMetadata` is written by the exporter (:meth:`GraphMetadata.to_props`) and read by
the TensorRT builder, the runtime and ``check`` (:func:`read_metadata`), which may run without
torch or onnx: reading falls back to ONNX Runtime. Values are strings in the file; structured
ones (input spec, parity, provenance, calibration, gate, INT8 settings) are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.variants import INT8_TARGETS, PRECISIONS
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.validate import check_str, parse_json_object

PRODUCER = "hardnet-export"

# How a figure of an INT8 graph was computed (the "semantics" field of gate, parity, check).
#: The graph's exact Q/DQ semantics: ONNX Runtime with graph optimisations off, so Quantize-
#: and DequantizeLinear run as written and the convs in float: what TensorRT computes, equal
#: on every host.
SEMANTICS_EXACT = "exact-qdq"
#: This host's fused int8 kernels (ONNX Runtime with all optimisations): what a CPU runs.
SEMANTICS_HOST = "host-kernels"
#: A GPU backend's kernels (TensorRT, ONNX Runtime CUDA): what ``check`` measures on a GPU.
SEMANTICS_DEVICE = "device-kernels"
SEMANTICS = (SEMANTICS_EXACT, SEMANTICS_HOST, SEMANTICS_DEVICE)

#: What a graph takes: ``patches`` (N, 1, 32, 32), or ``image`` and ``keypoints`` (patch
#: extraction inside the graph: :mod:`hardnet_export.export.image_graph`).
GRAPH_KINDS = ("patches", "image")
# Plain-string fields that hold numbers.
_FLOAT_FIELDS = frozenset({"magnification", "width"})
_INT_FIELDS = frozenset({"pyramid_levels", "min_image_side"})

#: The JSON-valued fields of :class:`GraphMetadata`.
_JSON_FIELDS = frozenset(
    {
        "input",
        "output",
        "weights_provenance",
        "parity",
        "calibration",
        "int8_gate",
        "int8_gate_openvino",
        "int8_settings",
        "int8_sensitivity",
    }
)


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
        int8_target: INT8 flavour: ``tensorrt`` or ``cpu``.
        int8_isa: ``cpu`` flavour: the int8 kernel kind it was made for.
        int8_settings: ``{"activations", "per_channel_weights", "float_layers", ...}``.
        calibration_sha256: sha256 of the calibration set (its ``.npy`` bytes).
        calibration: ``{"source", "size", "seed", "sha256", "method"}``.
        int8_gate: the accuracy gate's result (:class:`hardnet_export.calibration.gate.GateResult`).
        int8_gate_openvino: ``cpu`` flavour: the same gate with the graph run by OpenVINO
            (which ``runtime.load(device="cpu")`` picks for INT8 graphs), when OpenVINO was
            installed at export; OpenVINO refuses a graph whose gate failed there.
        int8_sensitivity: the per-layer sensitivity report, when one was made.
        graph_kind: ``patches`` or ``image`` (:data:`GRAPH_KINDS`); None (a graph from before
            image graphs, or a foreign one) means ``patches``.
        magnification: an image graph's support region in units of ``KeyPoint.size``.
        pyramid_levels: an image graph's number of pyramid levels.
        min_image_side: the smallest image side an image graph takes.
        model_name: the registered model (:func:`hardnet_export.models`) the weights are;
            None for other weights.
        width: the width multiplier of the network's channels (None: a graph from before
            widths, which is width 1, or a foreign one).
        other: keys this version does not know, as they were stored.
    """

    producer: str | None = None
    precision: str = "unknown"
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    weights_provenance: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    int8_target: str | None = None
    int8_isa: str | None = None
    int8_settings: dict[str, Any] | None = None
    calibration_sha256: str | None = None
    calibration: dict[str, Any] | None = None
    int8_gate: dict[str, Any] | None = None
    int8_gate_openvino: dict[str, Any] | None = None
    int8_sensitivity: dict[str, Any] | None = None
    graph_kind: str | None = None
    magnification: float | None = None
    pyramid_levels: int | None = None
    min_image_side: int | None = None
    model_name: str | None = None
    width: float | None = None
    other: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``patches`` or ``image`` (``patches`` where the graph does not say)."""
        return self.graph_kind or "patches"

    @property
    def variant(self) -> str:
        """The variant name (``fp32``, ``fp16``, ``int8-tensorrt``, ``int8-cpu``, ...)."""
        from hardnet_export.artifacts.variants import variant_for

        return variant_for(self.precision, self.int8_target).name

    @property
    def teacher(self) -> dict[str, Any] | None:
        """The teacher the weights were distilled from (``model``, ``file``, ``sha256``,
        ``width``), as their training recorded it; None for weights trained without one."""
        config = self.weights_provenance.get("config")
        found = config.get("teacher_provenance") if isinstance(config, dict) else None
        return found if isinstance(found, dict) else None

    def gate_on(self, backend: str) -> dict[str, Any] | None:
        """The INT8 gate the export measured with the graph run by ``backend`` (None where
        it did not): ``int8_gate`` is ONNX Runtime's, ``int8_gate_openvino`` OpenVINO's."""
        gates = {"onnxruntime": self.int8_gate, "openvino": self.int8_gate_openvino}
        return gates.get(backend)

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
        for key, text in props.items():
            if key not in known:
                continue
            if key in _JSON_FIELDS:
                values[key] = parse_json_object(text, source=f"{source}: metadata {key!r}")
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
        produced_here = str(values.get("producer", "")).startswith(PRODUCER)
        if produced_here and "precision" in values:
            # Ours name a known precision; a foreign graph may say anything and stays "unknown".
            check_str(
                "precision", values["precision"], choices=(*PRECISIONS, "unknown"), source=source
            )
        if values.get("int8_target") is not None:
            check_str("int8_target", values["int8_target"], choices=INT8_TARGETS, source=source)
        if values.get("graph_kind") is not None:
            check_str("graph_kind", values["graph_kind"], choices=GRAPH_KINDS, source=source)
        other = {k: v for k, v in props.items() if k not in known}
        return cls(**values, other=other)


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
