"""The one policy that picks a backend for an artifact on this host.

An explicit ``backend`` always wins. Otherwise the artifact's suffix names its default
backend (the first :class:`~hardnet_export.artifacts.backends.Backend` record that reads it);
on the CPU, a graph whose precision another installed backend lists in its ``cpu_first``
goes to that one instead, unless the export measured the graph failing its accuracy gate
there (the gate is recorded per backend). The choice is a rule from measurements
(``hardnet-export bench``), written down in the records; nothing here names a backend.
"""

from __future__ import annotations

from pathlib import Path

from hardnet_export.artifacts.backends import Backend, backend_for, backends, get_backend
from hardnet_export.artifacts.metadata import GraphMetadata, read_metadata
from hardnet_export.errors import HardnetError


def failed_gate(metadata: GraphMetadata, backend: str) -> bool:
    """Whether the export measured this graph on ``backend`` and it failed the gate there."""
    gate = metadata.gate_on(backend)
    return gate is not None and gate.get("passed") is False


def choose_backend(path: Path, *, device: str | None = None, backend: str | None = None) -> Backend:
    """The backend ``runtime.load`` opens ``path`` with.

    Raises:
        InputError: an unknown ``backend``, or no backend reads the suffix.
        MissingFileError: no file at ``path`` whose suffix no backend reads.
    """
    if backend is not None:
        return get_backend(backend)
    default = backend_for(path)
    if device != "cpu" or not path.is_file():
        return default
    candidates = [
        b
        for b in backends()
        if b is not default and b.reads(path) and "cpu" in b.devices and b.cpu_first
    ]
    if not candidates or not any(b.available() for b in candidates):
        return default
    try:
        metadata = read_metadata(path)
    except (HardnetError, ImportError):
        return default  # the default backend's open says what is wrong with the file
    for candidate in candidates:
        if (
            candidate.available()
            and metadata.precision in candidate.cpu_first
            and not failed_gate(metadata, candidate.name)
        ):
            return candidate
    if not default.available():
        # The suffix's default is missing here: an installed backend that reads it runs it.
        for other in backends():
            if other.reads(path) and "cpu" in other.devices and other.available():
                return other
    return default
