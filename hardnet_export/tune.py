"""``hardnet-export tune``: measure how an artifact runs fastest and still correctly on this CPU.

Like TensorRT's builder timing tactics: every candidate the installed CPU backends can build
from the artifact (each backend's record lists its load-option sets for this CPU: ONNX
Runtime as the graph is written; OpenVINO in f32, and in bf16 or f16 where the CPU computes
them natively; the thread counts worth trying here) is

1. **gated** on accuracy, as an INT8 graph is at export: its descriptors of held-out
   built-in pairs against the FP32 reference (:func:`hardnet_export.calibration.gate.
   evaluate_gate`: worst textured-patch cosine, NN accuracy and FPR95 losses, within the
   artifact's own limits or the gate's defaults), then
2. **timed** at batch 256 (throughput) and batch 1 (latency), in interleaved rounds so a slow
   spell of a shared CPU falls on every candidate alike.

The fastest candidate at batch 256 that passes wins (of those within 3 % of it, the one
closest to the reference: noise buys no lost accuracy); its chunk size (patches per inference
call) is then chosen on a frame's worth of patches (2048). The choice is written to the
tuning cache (:mod:`hardnet_export.artifacts.tuning`), keyed by the artifact's sha256, the
CPU and its instruction sets and the libraries' versions, and ``runtime.load`` takes it at
every later load on this host.

The reference of an FP32 graph is the graph itself, run exactly (in f32 by its first
backend); of any other graph, the FP32 model its metadata names (as ``check`` finds it) or the
one given.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.artifacts.backends import (
    Backend,
    backend_for,
    get_backend,
    plain_table,
    resolve,
)
from hardnet_export.artifacts.describe import DEFAULT_MAX_BATCH, DescribeFn, remembering
from hardnet_export.artifacts.metadata import GraphMetadata, read_metadata
from hardnet_export.artifacts.quantisation import GateResult
from hardnet_export.artifacts.tuning import Choice, write_choice
from hardnet_export.errors import HardnetError, InputError, MissingDependencyError, Remedy
from hardnet_export.export.inference_gates import GATE_PAIRS
from hardnet_export.validate import check_float, check_int

#: The batch the choice is made at, and the one-patch latency recorded beside it.
TUNE_BATCH = 256
#: A frame's worth of patches (2000 keypoints, rounded up to a power of two): the chunk size
#: is chosen on one call of this many.
FRAME_PATCHES = 2048
#: Chunk sizes tried for the winner (each at most the graph's fixed batch, if it has one).
CHUNK_SIZES = (64, 128, 256, 512, 1024)
DEFAULT_ROUNDS = 5
#: Throughputs this close (a share of the fastest) count as the same speed.
SAME_SPEED = 0.03


@dataclass(frozen=True)
class Candidate:
    """One way to run the artifact: a backend and its load options."""

    backend: str
    #: The load options as sorted (name, value) pairs: a candidate is a dictionary key.
    settings: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, backend: str, options: Mapping[str, Any] | None = None) -> Candidate:
        return cls(backend, tuple(sorted((options or {}).items())))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.settings)

    @property
    def label(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.backend} ({settings or 'defaults'})"


@dataclass(frozen=True)
class Row:
    """What one candidate measured."""

    candidate: Candidate
    gate: GateResult | None = None
    patches_per_s: float | None = None
    latency_ms: float | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.gate is not None and self.gate.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.candidate.backend,
            "options": dict(self.candidate.options),
            "passed": self.passed,
            "patches_per_s": self.patches_per_s,
            "latency_ms": self.latency_ms,
            "gate": None if self.gate is None else self.gate.to_dict(),
            "error": self.error,
        }


@dataclass(frozen=True)
class TuneReport:
    """Every candidate's figures, the chunk sizes tried and the choice."""

    artifact: str
    reference: str
    precision: str
    rows: list[Row]
    chunks: dict[int, float]
    choice: Choice
    cache_file: str | None
    host: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "reference": self.reference,
            "precision": self.precision,
            "rows": [r.to_dict() for r in self.rows],
            "chunks": {str(k): v for k, v in self.chunks.items()},
            "choice": self.choice.to_dict(),
            "cache_file": self.cache_file,
            "host": self.host,
        }

    def format(self) -> str:
        """A plain-text table for the terminal, the chosen row marked."""
        header = ("", "candidate", "gate", "worst cos", "NN acc loss", "FPR95 loss",
                  "patches/s @256", "ms @1")  # fmt: skip
        table: list[tuple[str, ...]] = [header]
        chosen = Candidate.of(self.choice.backend, self.choice.options)
        for row in self.rows:
            g = row.gate
            mark = "*" if row.candidate == chosen else ""
            if row.error is not None:
                table.append((mark, row.candidate.label, "error", row.error, "", "", "", ""))
                continue
            assert g is not None
            table.append(
                (
                    mark,
                    row.candidate.label,
                    "passed" if g.passed else "FAILED",
                    f"{g.min_cosine:.4f}",
                    f"{g.nn_accuracy_loss_pp:+.2f} pp",
                    f"{g.fpr95_loss_pp:+.2f} pp",
                    "-" if row.patches_per_s is None else f"{row.patches_per_s:,.0f}",
                    "-" if row.latency_ms is None else f"{row.latency_ms:.2f}",
                )
            )
        cpu = self.host.get("cpu", "unknown CPU")
        lines = [
            f"artifact   {self.artifact} ({self.precision})",
            f"reference  {self.reference}",
            f"host       {cpu}, instruction sets {', '.join(self.host.get('isa', [])) or '-'}",
            "",
            plain_table(table),
            "",
            "chunk      "
            + ", ".join(f"{size}: {rate:,.0f}/s" for size, rate in sorted(self.chunks.items()))
            + f" (describe of {FRAME_PATCHES} patches)",
            f"chosen     {self.choice.summary()}",
        ]
        if self.cache_file:
            lines.append(f"cached     {self.cache_file} (runtime.load takes it on this host)")
        return "\n".join(lines)


def candidates(metadata: GraphMetadata, runners: Sequence[Backend]) -> list[Candidate]:
    """Every candidate the ``runners`` can build for the graph on this CPU: each record's
    option sets, and where this process may use more logical CPUs than there are cores, each
    also at one thread per core."""
    from hardnet_export.benchmark.machine import physical_cores
    from hardnet_export.host import cpu_flags, usable_cpus

    flags = cpu_flags()
    cores = physical_cores()
    usable = usable_cpus()
    found = []
    for backend in runners:
        if backend.tuning is None:
            continue
        for options in resolve(backend.tuning)(metadata, flags):
            found.append(Candidate.of(backend.name, options))
            if backend.threads_option and cores and cores < usable:
                found.append(Candidate.of(backend.name, {**options, backend.threads_option: cores}))
    return found


def tune_artifact(
    artifact: str | Path,
    reference: str | Path | None = None,
    *,
    pairs: int = GATE_PAIRS,
    seed: int = 0,
    duration_s: float = 2.0,
    write: bool = True,
    cache_dir: Path | None = None,
    progress: Callable[[str], Any] | None = None,
) -> TuneReport:
    """Measure every CPU candidate for ``artifact`` here and keep the fastest that passes.

    Args:
        artifact: an ``.onnx`` graph (or OpenVINO IR), or a registered model's name (its
            FP32 graph).
        reference: the FP32 model for a non-FP32 graph (default: the registered model whose
            weights hash the graph's metadata names).
        pairs: held-out built-in pairs for the accuracy gate (as many as the export's gates
            draw, so a choice and a recorded gate judge the same patches).
        seed: their seed.
        duration_s: timing budget per candidate (split over interleaved rounds).
        write: store the choice in the tuning cache (``runtime.load`` takes it).
        cache_dir: the cache's root (default :func:`~hardnet_export.host.default_cache_dir`).
        progress: called with one line per step.

    Raises:
        InputError: not a patch graph, no candidate passes the gate, or no reference.
        MissingDependencyError: no CPU backend for it, or no built-in photos, installed.
    """
    from hardnet_export.artifacts.models import resolve_model
    from hardnet_export.benchmark.machine import cpu_info, library_versions
    from hardnet_export.host import BUILTIN_PHOTO_PACKAGES, require, tuning_flags
    from hardnet_export.runtime.policy import cpu_runners

    say = progress or (lambda _line: None)
    check_int("pairs", pairs, low=16, high=1_000_000)
    check_int("seed", seed, low=0, high=2**63 - 1)
    check_float("duration_s", duration_s, low=0.0, high=3600.0)
    path = resolve_model(artifact, "onnx")
    runners = cpu_runners(path)
    if not runners:
        backend_for(path)  # a missing file or an unknown suffix first
        raise MissingDependencyError(
            f"no CPU backend that reads {path.name} is installed: pip install "
            "'hardnet-export[cpu]' (ONNX Runtime) or 'hardnet-export[openvino]'"
        )
    require("tuning (its accuracy gate runs on the built-in held-out photos)",
            *BUILTIN_PHOTO_PACKAGES)  # fmt: skip
    first = _load(runners[0].name, path, {})
    metadata = _metadata_of(first, path)
    if first.graph_kind != "patches":
        raise InputError(
            f"{path} is an image graph; tune times patch graphs (describe): tune the patch "
            "graph it was exported from and the image graph runs on the same backend"
        )
    found = candidates(metadata, runners)
    reference_fn, reference_name = _reference(path, metadata, reference, found)
    from hardnet_export.data.builtin import validation_pairs

    held_out = validation_pairs(pairs, seed)
    limits = _limits(metadata)
    rows: list[Row] = []
    describers: dict[Candidate, Any] = {}
    for candidate in found:
        say(f"gate   {candidate.label}")
        bar = candidate_limits(metadata, candidate, limits)
        rows.append(_gate_row(candidate, path, reference_fn, held_out, bar, describers))
    passed = [row for row in rows if row.passed]
    if not passed:
        raise InputError(
            f"no way to run {path.name} on this CPU passes its accuracy gate against "
            f"{reference_name}: " + "; ".join(f"{r.candidate.label}: {_failure(r)}" for r in rows)
        )
    say(f"time   {len(passed)} candidates at batch {TUNE_BATCH} and 1, interleaved")
    speeds = _time_candidates({r.candidate: describers[r.candidate] for r in passed}, duration_s)
    rows = [
        replace(r, patches_per_s=speeds[r.candidate][0], latency_ms=speeds[r.candidate][1])
        if r.candidate in speeds else r
        for r in rows
    ]  # fmt: skip
    best = fastest_faithful([r for r in rows if r.passed])
    say(f"chunks {best.candidate.label}")
    chunks = _time_chunks(best.candidate, path, duration_s)
    chunk = max(chunks, key=lambda size: chunks[size])
    others = len(passed) - 1
    choice = Choice(
        backend=best.candidate.backend,
        options=dict(best.candidate.options),
        max_batch=chunk,
        source="tuned",
        patches_per_s=best.patches_per_s,
        latency_ms=best.latency_ms,
        gate=best.gate,
        why=(
            f"the fastest at batch {TUNE_BATCH} of {len(rows)} candidates measured on this CPU "
            f"({others} other{'s' if others != 1 else ''} passed the accuracy gate), "
            f"chunks of {chunk} fastest on {FRAME_PATCHES} patches"
        ),
    )
    table = [r.to_dict() for r in rows]
    cache_file = write_choice(path, choice, table, cache_dir) if write else None
    cpu = cpu_info()
    return TuneReport(
        artifact=str(path),
        reference=reference_name,
        precision=metadata.precision,
        rows=rows,
        chunks=chunks,
        choice=choice,
        cache_file=None if cache_file is None else str(cache_file),
        host={
            "cpu": cpu.get("model"),
            "isa": list(tuning_flags()),
            "details": cpu,
            "libraries": library_versions(),
        },  # fmt: skip
    )


@dataclass(frozen=True)
class ModelTuneReport:
    """``tune`` of a registered model's name: one report per graph its name may run, and
    the graph it runs here."""

    model: str
    reports: list[TuneReport]
    runs: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "runs": self.runs,
            "why": self.why,
            "graphs": [r.to_dict() for r in self.reports],
        }

    def format(self) -> str:
        """Each graph's table, then which one the name runs."""
        parts = [r.format() for r in self.reports]
        parts.append(f"model      {self.model} runs {self.runs} on this CPU ({self.why})")
        return "\n\n".join(parts)


def tune_model(
    model: str,
    *,
    pairs: int = GATE_PAIRS,
    seed: int = 0,
    duration_s: float = 2.0,
    write: bool = True,
    cache_dir: Path | None = None,
    progress: Callable[[str], Any] | None = None,
) -> ModelTuneReport:
    """Tune every graph the name ``model`` may run on the CPU (its FP32 graph, and each
    shipped graph of a variant with ``name_rules``: :func:`~hardnet_export.runtime.policy.
    registered_graph`), each against the model's FP32 weights; with every one in the cache,
    ``runtime.load(model)`` then runs the fastest of them.

    Raises:
        UnknownModelError: no registered model of that name.
        InputError, MissingDependencyError: as :func:`tune_artifact`.
    """
    from hardnet_export.artifacts.models import get_model
    from hardnet_export.runtime.policy import GraphPick, fastest_graph, name_candidates

    entry = get_model(model)
    fp32 = entry.file("onnx")
    graphs = [fp32] + [path for path, _ in name_candidates(entry)]
    say = progress or (lambda _line: None)
    reports = []
    for graph in graphs:
        say(f"graph  {graph.name}")
        reports.append(
            tune_artifact(
                graph,
                pairs=pairs,
                seed=seed,
                duration_s=duration_s,
                write=write,
                cache_dir=cache_dir,
                progress=progress,
            )
        )
    pick = fastest_graph({Path(r.artifact): r.choice for r in reports}) or GraphPick(fp32)
    why = pick.why or "its FP32 graph, the only one it runs"
    return ModelTuneReport(entry.name, reports, pick.graph.name, why)


def fastest_faithful(rows: Sequence[Row]) -> Row:
    """The fastest of ``rows`` at batch 256, except that among those within
    :data:`SAME_SPEED` of it the one closest to the reference (highest worst cosine) wins:
    a difference a shared CPU's noise could make buys no lost accuracy."""
    top = max(r.patches_per_s or 0.0 for r in rows)
    close = [r for r in rows if (r.patches_per_s or 0.0) >= top * (1 - SAME_SPEED)]
    return max(close, key=lambda r: (r.gate.min_cosine if r.gate else -1.0, r.patches_per_s or 0))


def _load(backend: str, path: Path, options: Mapping[str, Any], **more: Any) -> Any:
    from hardnet_export import runtime

    return runtime.load(path, backend=backend, device="cpu", **options, **more)


def _metadata_of(describer: Any, path: Path) -> GraphMetadata:
    metadata = getattr(describer, "metadata", None)
    if isinstance(metadata, GraphMetadata):
        return metadata
    return read_metadata(path)


def _limits(metadata: GraphMetadata) -> dict[str, float]:
    """The artifact's own gate limits (an INT8 graph's export recorded them), else the
    gate's defaults."""
    from hardnet_export.check import gate_limits

    return gate_limits(metadata.quantisation.gate if metadata.quantisation else None)


def candidate_limits(
    metadata: GraphMetadata, candidate: Candidate, limits: Mapping[str, float]
) -> dict[str, float]:
    """``limits`` for one candidate, with the stricter worst cosine of the gated rule that
    runs the graph with those options (``CpuRule.min_cosine``: an INT8 graph's bf16 float
    parts), so that tuning holds a candidate to what the rule table does."""
    options = candidate.options
    bars = [
        rule.min_cosine
        for rule in get_backend(candidate.backend).cpu_rules
        if rule.gated
        and rule.min_cosine is not None
        and metadata.precision in rule.precisions
        and all(options.get(k) == v for k, v in rule.options.items())
    ]
    if not bars:
        return dict(limits)
    return {**limits, "min_cosine": max(limits["min_cosine"], *bars)}


def _reference(
    path: Path,
    metadata: GraphMetadata,
    reference: str | Path | None,
    found: Sequence[Candidate],
) -> tuple[DescribeFn, str]:
    """The FP32 reference's describe function (remembering its answers: every candidate is
    gated on the same patches) and its name."""
    from hardnet_export.check import read_provenance, resolve_reference
    from hardnet_export.runtime.base import patch_describer

    if reference is None and metadata.precision == "fp32":
        # An FP32 graph is its own reference, run as written: the first candidate (the
        # suffix's default backend, or OpenVINO in f32) computes in f32.
        exact = found[0] if found else Candidate.of(backend_for(path).name)
        describer = _load(exact.backend, path, exact.options)
        name = f"{path.name} itself, exactly ({exact.label})"
    else:
        ref_path = resolve_reference(
            path, read_provenance(path), None if reference is None else Path(reference)
        )
        # The reference runs as written (its suffix's own backend), never a tuned path.
        describer = patch_describer(_load(backend_for(ref_path).name, ref_path, {}), "a reference")
        if describer.precision not in ("fp32", "unknown"):
            raise InputError(
                f"the reference must be an FP32 model, but {ref_path.name} is "
                f"{describer.precision}",
                remedy=Remedy({"reference": ...}),
            )
        name = str(ref_path)
    return remembering(describer.describe), name


def _gate_row(
    candidate: Candidate,
    path: Path,
    reference: DescribeFn,
    held_out: Any,
    limits: Mapping[str, float],
    describers: dict[Candidate, Any],
) -> Row:
    from hardnet_export.calibration.gate import evaluate_gate

    try:
        describer = _load(candidate.backend, path, candidate.options)
    except HardnetError as exc:
        return Row(candidate, error=str(exc).splitlines()[0])
    # Gate and timing calls of TUNE_BATCH patches are then full chunks, which a backend may
    # run on other kernels than smaller calls (OpenVINO: a graph compiled for that batch),
    # as the runtime's own chunks are.
    describer.use_chunks(TUNE_BATCH)
    describers[candidate] = describer
    gate = evaluate_gate(
        reference,
        describer.describe,
        held_out,
        force=True,
        label=candidate.label,
        semantics=describer.semantics,
        **limits,
    )
    # force=True records a failure instead of raising; here a failure is a verdict.
    return Row(candidate, gate=replace(gate, forced=False))


def _failure(row: Row) -> str:
    if row.error is not None:
        return row.error
    assert row.gate is not None
    return "; ".join(row.gate.failures()) or "failed"


def _rate(step: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``step``: the median call over about ``seconds`` (one call at
    least: a frame of patches through the full model takes longer than a short budget)."""
    clock = time.perf_counter
    times: list[float] = []
    start = clock()
    while not times or clock() - start < seconds:
        t0 = clock()
        step()
        times.append(clock() - t0)
    return 1.0 / statistics.median(times)


def _interleaved(
    steps: Mapping[Any, Callable[[], Any]], duration_s: float
) -> dict[Any, list[float]]:
    """Calls per second of each step, one figure per round; in each round every step runs
    for its share of ``duration_s`` (in all), after
    :func:`~hardnet_export.benchmark.versus.settle`, so a slow spell of a shared CPU falls
    on all alike and none starts beside another's spinning threads. Every step is called
    once first (a warm-up that also sizes the rounds: as many as the budget holds, one to
    :data:`DEFAULT_ROUNDS`)."""
    from hardnet_export.benchmark.versus import settle

    if not steps:
        return {}
    once = sum(1.0 / _rate(step, 0.0) for step in steps.values())
    rounds = int(min(DEFAULT_ROUNDS, max(1, duration_s // max(once, 1e-9))))
    share = duration_s / rounds / len(steps)
    rates: dict[Any, list[float]] = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            settle()
            rates[key].append(_rate(step, share))
    return rates


def _time_candidates(
    describers: Mapping[Candidate, Any], duration_s: float
) -> dict[Candidate, tuple[float, float]]:
    """(patches/s at batch 256, ms at batch 1) per candidate: the median over interleaved
    rounds."""
    from hardnet_export.benchmark.run import benchmark_patches, held_out_pairs

    batch, _ = benchmark_patches(TUNE_BATCH, held_out_pairs(TUNE_BATCH // 2))
    one = np.ascontiguousarray(batch[:1])
    steps: dict[tuple[Candidate, int], Callable[[], Any]] = {}
    for candidate, describer in describers.items():
        steps[candidate, TUNE_BATCH] = lambda d=describer: d.describe(batch)
        steps[candidate, 1] = lambda d=describer: d.describe(one)
    rates = _interleaved(steps, duration_s * len(describers))
    return {
        c: (
            TUNE_BATCH * statistics.median(rates[c, TUNE_BATCH]),
            1000.0 / statistics.median(rates[c, 1]),
        )
        for c in describers
    }


def _time_chunks(candidate: Candidate, path: Path, duration_s: float) -> dict[int, float]:
    """Patches/s of one describe of :data:`FRAME_PATCHES` patches per chunk size, the
    median over interleaved rounds; sizes above a fixed-batch graph's batch are skipped."""
    from hardnet_export.benchmark.run import benchmark_patches, held_out_pairs

    patches, _ = benchmark_patches(FRAME_PATCHES, held_out_pairs(TUNE_BATCH // 2))
    steps: dict[int, Callable[[], Any]] = {}
    for size in sorted({*CHUNK_SIZES, DEFAULT_MAX_BATCH}):
        try:
            describer = _load(candidate.backend, path, candidate.options, max_batch=size)
        except HardnetError:
            continue  # a fixed-batch graph takes no larger chunk
        if describer.max_batch == size:
            steps[size] = lambda d=describer: d.describe(patches)
    rates = _interleaved(steps, duration_s)
    return {size: FRAME_PATCHES * statistics.median(r) for size, r in rates.items()}
