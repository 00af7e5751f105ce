"""What an artifact says about where it came from, before it is opened: its provenance.

The readers each :class:`~hardnet_export.artifacts.backends.Backend` record names: ONNX graphs
by their metadata, engines by their sidecar (and the ONNX graph it names, where present),
checkpoints by their hash. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.quantisation import GateResult
from hardnet_export.artifacts.sidecar import read_sidecar
from hardnet_export.errors import MissingFileError


@dataclass(frozen=True)
class Provenance:
    """An artifact's weights hash and the accuracy gate it was exported with, whose limits
    ``check`` applies (None where it has none: a float graph, a checkpoint)."""

    weights_sha256: str | None
    gate: GateResult | None = None


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
    return Provenance(meta.weights_sha256, meta.quantisation.gate if meta.quantisation else None)


def engine_provenance(path: Path) -> Provenance:
    """An engine's, from its sidecar and the gate of the ONNX graph it was built from."""
    sidecar = read_sidecar(_exists(path))
    if sidecar is None:
        return Provenance(None)
    graph = Path(sidecar.onnx)
    quantisation = read_metadata(graph).quantisation if graph.is_file() else None
    return Provenance(sidecar.weights_sha256, quantisation.gate if quantisation else None)
