"""What a benchmark produces: one result per target and batch size, and the whole run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardnet_export.benchmark.stats import LatencySummary
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.validate import parse_json_object

FORMAT = "hardnet-export-bench/1"
#: The per-image benchmark's JSON (``hardnet-export bench --image``).
FRAME_FORMAT = "hardnet-export-bench-frame/1"
#: Stages timed per target in the per-image benchmark; detection and the SIFT reference are
#: per keypoint count (they do not depend on the target).
FRAME_STAGES = ("extract", "infer", "total")
#: "computing a descriptor takes about 1 millisecond on a low-end GPU" (HardNet, arXiv abstract).
PAPER_MS_PER_PATCH = 1.0


@dataclass(frozen=True)
class CaseResult:
    """One target at one batch size.

    ``latency`` is end to end per call (host patches in, host descriptors out; on a GPU that
    includes the host-to-device and device-to-host copies); ``compute`` is the device's own
    time for the same calls from CUDA events, ``None`` where the backend has no device clock.
    ``throughput`` is patches per second over the timed window; ``vs_baseline`` is it over
    PyTorch eager FP32 on the same device at the same batch size in the same run;
    ``patches_per_ms`` is how many descriptors fit in the paper's "about 1 ms" per descriptor.
    ``variation`` is the run-to-run spread of the window's slices (see
    :func:`hardnet_export.benchmark.stats.run_variation`), ``unstable`` whether it is > 2.5 %.
    """

    batch_size: int
    iterations: int
    warmup_iterations: int
    latency: LatencySummary
    compute: LatencySummary | None
    throughput: float
    per_patch_ms: float
    patches_per_ms: float
    variation: float
    unstable: bool
    vs_baseline: float | None = None
    #: Patches per ``describe`` call where the target tries chunks (a peer at its best
    #: batch): the fastest chunk, None where the batch went in one call.
    chunk: int | None = None


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of a target on a fixed held-out pair set, beside its speed.

    ``fpr95`` and ``nn_accuracy`` are fractions in [0, 1].
    """

    pairs: str
    n_pairs: int
    fpr95: float
    nn_accuracy: float


@dataclass
class TargetResult:
    """One artifact loaded with one backend on one device, timed at every batch size."""

    label: str
    artifact: str | None
    backend: str
    precision: str
    device: str
    options: dict[str, Any]
    load_s: float
    accuracy: Accuracy | None
    cases: list[CaseResult] = field(default_factory=list)
    is_baseline: bool = False
    #: ``ours``, ``peer`` or empty (see :class:`hardnet_export.benchmark.targets.Target`).
    role: str = ""
    #: What ran, where it is not the label's to say: the runtime's choice for ours,
    #: OpenVINO's chosen inference precision for its default peer.
    note: str = ""

    def case(self, batch_size: int) -> CaseResult | None:
        return next((c for c in self.cases if c.batch_size == batch_size), None)


@dataclass(frozen=True)
class Versus:
    """One of ours against every peer at one size (patches per call, or keypoints per
    frame), timed in interleaved rounds: each round runs ours and every peer (and, per
    frame, OpenCV SIFT ``compute()``) for about the same time, in an order that rotates, so
    a slow spell of a shared machine falls on all of them alike.

    ``peers`` maps each peer's label to the median over rounds of its time per call over
    ours in the same round (above 1: ours is faster; at batch 1 that is a latency ratio, at
    a large batch a throughput ratio); ``best_peer`` is the peer with the lowest ratio and
    ``ratio`` its ratio. ``ours_ms``/``peers_ms`` are medians over rounds per call;
    ``vs_sift`` (per frame) is ours over SIFT's time, the median over rounds; ``goal`` the
    ratio (per patch) or the x SIFT (per frame) the project aims for, None where none is set.
    """

    unit: str
    size: int
    ours: str
    ours_ms: float
    peers: dict[str, float]
    peers_ms: dict[str, float]
    best_peer: str
    ratio: float
    rounds: int
    vs_sift: float | None = None
    goal: float | None = None
    #: Whether ``goal`` is met (per patch ``ratio >= goal``, per frame ``vs_sift <= goal``);
    #: None where there is no goal.
    meets_goal: bool | None = None


@dataclass
class BenchmarkResult:
    """A whole run: settings, machine, every target's results, and the warnings raised."""

    created: str
    command: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    inputs: str
    targets: list[TargetResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Ours against the peers (see :class:`Versus`), per batch size and target of ours.
    versus: list[Versus] = field(default_factory=list)
    format: str = FORMAT

    @property
    def batch_sizes(self) -> list[int]:
        return list(self.settings["batch_sizes"])

    def to_dict(self) -> dict[str, Any]:
        return {"paper_ms_per_patch": PAPER_MS_PER_PATCH, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        """Rebuild a result from :meth:`to_dict` output (a saved JSON file)."""
        if data.get("format") != FORMAT:
            raise InputError(f"not a {FORMAT} result: format is {data.get('format')!r}")
        targets = []
        for t in data["targets"]:
            cases = [
                CaseResult(
                    **{
                        **c,
                        "latency": LatencySummary(**c["latency"]),
                        "compute": LatencySummary(**c["compute"]) if c["compute"] else None,
                    }
                )
                for c in t["cases"]
            ]
            accuracy = Accuracy(**t["accuracy"]) if t["accuracy"] else None
            targets.append(TargetResult(**{**t, "cases": cases, "accuracy": accuracy}))
        fields = {k: data[k] for k in ("created", "command", "settings", "machine", "inputs")}
        # Files written before the peers were timed have no "versus".
        versus = [Versus(**v) for v in data.get("versus", [])]
        return cls(**fields, targets=targets, warnings=list(data["warnings"]), versus=versus)

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkResult:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"benchmark result not found: {path}")
        data = parse_json_object(path.read_bytes(), source=f"benchmark result {path}")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, AttributeError) as exc:
            # A hand-edited or foreign file: say which, not a KeyError from deep inside.
            raise InputError(
                f"{path} is not a complete {FORMAT} result ({type(exc).__name__}: {exc})"
            ) from None


@dataclass(frozen=True)
class FrameCase:
    """One target at one keypoint count: ``stages`` maps extract / infer / total to their
    latency per frame (ms); ``vs_sift`` is the total's p50 over SIFT ``compute()``'s p50 at the
    same keypoints in the same run (below 1 is faster than SIFT)."""

    requested: int
    keypoints: int
    stages: dict[str, LatencySummary]
    vs_sift: float


@dataclass
class FrameTarget:
    """One artifact with one backend on one device, timed at every keypoint count."""

    label: str
    artifact: str | None
    backend: str
    precision: str
    device: str
    cases: list[FrameCase] = field(default_factory=list)
    role: str = ""
    note: str = ""


@dataclass(frozen=True)
class FrameReference:
    """Per keypoint count, the stages that do not depend on the target: SIFT detection and
    the reference, OpenCV SIFT ``compute()`` on those keypoints (ms per frame)."""

    requested: int
    keypoints: int
    detect: LatencySummary
    sift: LatencySummary


@dataclass
class FrameBenchmarkResult:
    """A whole per-image run: settings, machine, the reference rows and every target's."""

    created: str
    command: str
    image: str
    image_shape: list[int]
    settings: dict[str, Any]
    machine: dict[str, Any]
    references: list[FrameReference] = field(default_factory=list)
    targets: list[FrameTarget] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    versus: list[Versus] = field(default_factory=list)
    format: str = FRAME_FORMAT

    def reference(self, requested: int) -> FrameReference:
        return next(r for r in self.references if r.requested == requested)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"
