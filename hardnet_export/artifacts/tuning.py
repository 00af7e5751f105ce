"""How an artifact runs on this host: the :class:`Choice` record and its on-disk cache.

``hardnet-export tune`` (:func:`hardnet_export.tune.tune_artifact`) measures every candidate
the CPU backends can build from an artifact (backend, inference precision, threads, chunk
size), gates each on accuracy and writes the fastest that passes here, keyed by what decides
speed and numerics: the artifact's sha256, the CPU model and its instruction sets (int8,
bf16, fp16) and the versions of the libraries that run it. ``runtime.load`` reads that
choice at every later load (:func:`read_choice`) and falls back to the backends' rule table
when there is none, so a load never measures. Torch-free.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.quantisation import GateResult

#: Where a choice came from: measured by ``tune`` on this host, the backends' rule table for
#: this CPU, what the caller asked for, or the suffix's default backend (not on the CPU).
SOURCES = ("tuned", "rule", "explicit", "default")
#: The load option that sets the arithmetic of a graph's float layers, for backends that
#: have one (OpenVINO's ``inference_precision``): a candidate without it computes them as
#: the graph is written.
INFERENCE_PRECISION = "inference_precision"
#: Bumped when the meaning of a cached choice changes: older entries are then ignored.
CACHE_VERSION = 1


@dataclass(frozen=True)
class Choice:
    """The path one artifact takes on this host, and why.

    Attributes:
        backend: the backend's name (its record in :mod:`hardnet_export.artifacts.backends`).
        options: the backend's load options (``inference_precision``, thread count, ...).
        max_batch: patches per inference call (the chunk size); None: the backend's default.
        source: one of :data:`SOURCES`.
        patches_per_s: measured throughput at batch 256 (``tuned`` only).
        latency_ms: measured time of one patch (``tuned`` only).
        gate: the accuracy figures against the FP32 reference on held-out pairs (``tuned``).
        why: one sentence: the rule or the measurement behind it.
        small_batches: the path of calls (and chunks) of at most its ``max_batch`` patches,
            another backend's (the records' ``small_batches`` rules); None: every call takes
            this one.
    """

    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    max_batch: int | None = None
    source: str = "default"
    patches_per_s: float | None = None
    latency_ms: float | None = None
    gate: GateResult | None = None
    why: str = ""
    small_batches: Choice | None = None

    @property
    def inference_precision(self) -> str:
        """The arithmetic of the float layers: ``f32``, ``bf16``, ``f16``, or ``graph`` (as
        the graph is written: f32, or f16 in an FP16 graph)."""
        return str(self.options.get(INFERENCE_PRECISION, "graph"))

    def path(self) -> str:
        """The backend and its settings, e.g. ``openvino (inference_precision=bf16)``."""
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.backend} ({settings or 'defaults'})"

    def summary(self) -> str:
        """One line: backend, settings, measured speed and accuracy."""
        parts = [self.path()]
        if self.max_batch:
            parts.append(f"chunks of {self.max_batch}")
        if self.patches_per_s is not None:
            parts.append(f"{self.patches_per_s:,.0f} patches/s at batch 256")
        if self.latency_ms is not None:
            parts.append(f"{self.latency_ms:.2f} ms at batch 1")
        if self.gate is not None:
            parts.append(f"worst cosine {self.gate.min_cosine:.4f}")
        small = self.small_batches
        if small is not None:
            patches = "patch" if small.max_batch == 1 else "patches"
            parts.append(f"up to {small.max_batch} {patches}: {small.path()}")
        return f"{self.source}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = dict(self.options)
        data["gate"] = None if self.gate is None else self.gate.to_dict()
        small = self.small_batches
        data["small_batches"] = None if small is None else small.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choice:
        gate = data.get("gate")
        small = data.get("small_batches")
        return cls(
            backend=str(data["backend"]),
            options=dict(data.get("options") or {}),
            max_batch=None if data.get("max_batch") is None else int(data["max_batch"]),
            source=str(data.get("source", "tuned")),
            patches_per_s=data.get("patches_per_s"),
            latency_ms=data.get("latency_ms"),
            gate=None if gate is None else GateResult.from_dict(gate),
            why=str(data.get("why", "")),
            small_batches=None if small is None else cls.from_dict(small),
        )


def tuning_key(artifact_sha256: str) -> dict[str, Any]:
    """What a measured choice holds for: the artifact, this CPU (model, instruction sets, the
    cores this process may use) and the versions of every backend's library."""
    from hardnet_export import __version__
    from hardnet_export.artifacts.backends import backends
    from hardnet_export.host import cpu_model, distribution_version, tuning_flags, usable_cpus

    return {
        "version": CACHE_VERSION,
        "artifact_sha256": artifact_sha256,
        "cpu": cpu_model(),
        "isa": list(tuning_flags()),
        "cores": usable_cpus(),
        "libraries": {
            "hardnet-export": __version__,
            **{b.name: b.version() for b in backends() if b.available()},
            # Packed candidates need onnx: a choice measured with it is not one without it.
            "onnx": distribution_version("onnx"),
        },
    }


def cache_file(key: Mapping[str, Any], cache_dir: Path | None = None) -> Path:
    """The file a choice for ``key`` lives in, under ``cache_dir``
    (:func:`~hardnet_export.host.default_cache_dir`) ``/tuning``."""
    from hardnet_export.host import default_cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return (cache_dir or default_cache_dir()) / "tuning" / f"{digest}.json"


def artifact_digest(path: Path) -> str:
    """The sha256 of ``path``, remembered per (path, size, modification time): a load hashes
    a file once, not at every call."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    from hardnet_export._io import sha256_file

    return sha256_file(Path(path))


def read_choice(path: Path, cache_dir: Path | None = None) -> Choice | None:
    """The choice ``tune`` measured for ``path`` on this host with these libraries; None when
    there is none (or the entry cannot be read: a broken cache never stops a load, it warns
    and the rule table decides)."""
    key = tuning_key(artifact_digest(path))
    file = cache_file(key, cache_dir)
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        if data.get("key") != json.loads(json.dumps(key)):
            return None
        return Choice.from_dict(data["choice"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"ignoring the unreadable tuning cache entry {file} ({type(exc).__name__}: {exc}); "
            "tune the artifact again to replace it",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def write_choice(
    path: Path, choice: Choice, table: list[dict[str, Any]], cache_dir: Path | None = None
) -> Path:
    """Store ``choice`` for ``path`` on this host (atomically), with the measured ``table``
    it was picked from; returns the cache file."""
    from hardnet_export._io import atomic_write_text

    key = tuning_key(artifact_digest(path))
    file = cache_file(key, cache_dir)
    file.parent.mkdir(parents=True, exist_ok=True)
    record = {"key": key, "artifact": str(path), "choice": choice.to_dict(), "table": table}
    atomic_write_text(file, json.dumps(record, indent=2, default=str) + "\n")
    return file
