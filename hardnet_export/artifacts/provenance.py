"""What an artifact says about itself before it is opened: its graph kind and provenance.

The readers each :class:`~hardnet_export.artifacts.backends.Backend` record names: ONNX graphs
by their metadata, engines by their sidecar (and the ONNX graph it names, where present),
checkpoints by their hash. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.sidecar import read_sidecar
from hardnet_export.errors import HardnetError, MissingFileError


@dataclass(frozen=True)
class Provenance:
    """An artifact's weights hash and the INT8 gate's limits it was exported with (empty
    where it has none)."""

    weights_sha256: str | None
    gate: dict[str, Any] = field(default_factory=dict)


def _exists(path: Path) -> Path:
    if not path.is_file():
        raise MissingFileError(f"artifact not found: {path}")
    return path


def checkpoint_provenance(path: Path) -> Provenance:
    from hardnet_export._io import sha256_file

    return Provenance(sha256_file(_exists(path)))


def graph_provenance(path: Path) -> Provenance:
    """An ONNX graph's (or an OpenVINO IR's ONNX origin's) provenance, from its metadata."""
    meta = read_metadata(_exists(path))
    return Provenance(meta.weights_sha256, meta.int8_gate or {})


def engine_provenance(path: Path) -> Provenance:
    """An engine's, from its sidecar and the gate of the ONNX graph it was built from."""
    sidecar = read_sidecar(_exists(path))
    if sidecar is None:
        return Provenance(None)
    graph = Path(sidecar.onnx)
    gate = read_metadata(graph).int8_gate or {} if graph.is_file() else {}
    return Provenance(sidecar.weights_sha256, gate)


def graph_kind(path: Path) -> str:
    """An ONNX graph's kind from its metadata; ``patches`` where it cannot be read (the
    backend that opens it says why)."""
    try:
        return read_metadata(path).kind
    except HardnetError:
        return "patches"


def engine_kind(path: Path) -> str:
    """An engine's kind from its sidecar; ``patches`` without a readable one (the backend
    checks the sidecar itself, in its own order)."""
    try:
        sidecar = read_sidecar(path)
    except HardnetError:
        return "patches"
    return sidecar.graph_kind if sidecar is not None else "patches"
