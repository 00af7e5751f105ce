"""The provenance every exported ONNX graph carries in its ``metadata_props``.

Values are strings; structured ones (input spec, parity, provenance, gate) are JSON. The keys
are read by the TensorRT builder (precision, calibration hash) and by the runtime, which may
run without torch or onnx: :func:`read_metadata` falls back to ONNX Runtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRODUCER = "hardnet-export"

# Keys of metadata_props; JSON_KEYS hold JSON documents.
PRECISION = "precision"  # fp32 | fp16 | int8
INT8_TARGET = "int8_target"  # tensorrt | cpu (int8 only)
INPUT = "input"  # {"name", "dtype", "shape", "range", "normalisation"}
OUTPUT = "output"  # {"name", "dtype", "shape"}
WEIGHTS_SHA256 = "weights_sha256"
WEIGHTS_PROVENANCE = "weights_provenance"  # the checkpoint's meta: training data, steps, ...
PARITY = "parity"  # export.parity.parity_report against PyTorch
CALIBRATION_SHA256 = "calibration_sha256"  # int8 only
CALIBRATION = "calibration"  # {"source", "size", "seed", "method", ...}
INT8_GATE = "int8_gate"  # calibration.gate result
INT8_ISA = "int8_isa"  # cpu flavour: the int8 kernel kind it was made for (host.INT8_ISAS)
INT8_SETTINGS = "int8_settings"  # {"activations", "per_channel_weights", "float_layers", ...}
INT8_SENSITIVITY = "int8_sensitivity"  # calibration.sensitivity report, when one chose layers
JSON_KEYS = frozenset(
    {
        INPUT,
        OUTPUT,
        WEIGHTS_PROVENANCE,
        PARITY,
        CALIBRATION,
        INT8_GATE,
        INT8_SETTINGS,
        INT8_SENSITIVITY,
    }
)

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


def encode_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """Turn values into metadata strings (JSON for the structured keys)."""
    return {
        key: json.dumps(value, default=str) if key in JSON_KEYS else str(value)
        for key, value in values.items()
        if value is not None
    }


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`; unknown keys stay strings."""
    decoded: dict[str, Any] = {}
    for key, value in props.items():
        if key in JSON_KEYS:
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError:
                decoded[key] = value
        else:
            decoded[key] = value
    return decoded


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded ``metadata_props`` of an ONNX file (with onnx, or ONNX Runtime without it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        import onnx
    except ImportError:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return decode_metadata(session.get_modelmeta().custom_metadata_map)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable ONNX file ({exc})") from exc
    return decode_metadata({p.key: p.value for p in model.metadata_props})
