"""Orchestration: load each target, measure its accuracy, time it at every batch size."""

from __future__ import annotations

import datetime as _dt
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export._progress import progress_bar
from hardnet_export.artifacts.models import resolve_model
from hardnet_export.benchmark.machine import load_average, machine_info
from hardnet_export.benchmark.peers import (
    GOALS,
    PeerUnavailable,
    best_chunk,
    chunked,
    load_ours,
    target_note,
)
from hardnet_export.benchmark.results import (
    PAPER_MS_PER_PATCH,
    Accuracy,
    BenchmarkResult,
    CaseResult,
    TargetResult,
    Versus,
)
from hardnet_export.benchmark.stats import (
    VARIATION_LIMIT,
    LatencySummary,
    is_unstable,
    run_variation,
    throughput,
)
from hardnet_export.benchmark.targets import (
    Target,
    artifact_targets,
    baseline_target,
    check_device,
    default_targets,
    shipped_weights,
)
from hardnet_export.benchmark.timing import (
    DEFAULT_DURATION_S,
    DEFAULT_WARMUP_S,
    MIN_ITERATIONS,
    time_step,
)
from hardnet_export.benchmark.versus import DEFAULT_ROUNDS, interleaved_times, versus
from hardnet_export.data.types import MatchedPairs
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.host import installed, usable_cpus
from hardnet_export.shipped import PATCH_SIZE
from hardnet_export.validate import check_float, check_int

if TYPE_CHECKING:
    from hardnet_export.runtime.base import Describer, KeypointDescriber

DEFAULT_BATCH_SIZES = (1, 32, 256, 1024)
#: Batch sizes at which ours is timed against the peers (the goal's: latency, throughput).
VERSUS_BATCH_SIZES = (1, 256)
DEFAULT_ACCURACY_PAIRS = 1000
#: Pairs drawn for timing input alone when the accuracy column is switched off.
TIMING_ONLY_PAIRS = 256
ACCURACY_SEED = 0
#: The largest batch a benchmark times (1 Mi patches: 1 GiB of uint8 input).
MAX_BATCH = 1 << 20


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,32,256"`` -> ``[1, 32, 256]``; ValueError for anything but positive integers."""
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(int(part.strip()))
        except ValueError:
            raise InputError(
                f"batch sizes must be comma-separated positive integers, got {text!r}"
            ) from None
    return check_batch_sizes(sizes)


def check_batch_sizes(batch_sizes: Sequence[int]) -> list[int]:
    """Sorted unique positive batch sizes; ValueError naming the bad value otherwise."""
    sizes = list(batch_sizes)
    if not sizes:
        raise InputError("batch sizes must not be empty")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise InputError(f"batch sizes must be positive integers, got {size!r}")
        if size > MAX_BATCH:
            raise InputError(f"batch sizes must be at most {MAX_BATCH:,} patches, got {size:,}")
    return sorted({int(s) for s in sizes})


def held_out_pairs(n: int, seed: int = ACCURACY_SEED) -> MatchedPairs | None:
    """``n`` fixed matched pairs from the held-out built-in photos; None where the built-in
    photos (scikit-image, scikit-learn, matplotlib) are not installed."""
    try:
        from hardnet_export.data.builtin import validation_pairs

        return validation_pairs(n, seed=seed)
    except ImportError:
        return None


def benchmark_patches(
    n: int, pairs: MatchedPairs | None, seed: int = ACCURACY_SEED
) -> tuple[np.ndarray, str]:
    """``n`` timing patches and what they are: the patches of ``pairs`` (tiled when there are
    fewer), or uniform noise without pairs.

    Shape:
        - return[0]: (n, 1, 32, 32) uint8, C-contiguous: the layout the graphs take, so the
          timed calls copy nothing.
    """
    if pairs is not None and len(pairs):
        pool = np.concatenate([pairs.anchors, pairs.positives])
        source = f"held-out built-in photo patches ({pairs.name})"
    else:
        shape = (n, PATCH_SIZE, PATCH_SIZE)
        pool = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
        source = "uniform noise patches (built-in photos not installed)"
    reps = -(-n // len(pool))
    return np.ascontiguousarray(np.tile(pool, (reps, 1, 1))[:n, None]), source


def measure_accuracy(describer: Describer, pairs: MatchedPairs) -> Accuracy:
    """FPR95 and nearest-neighbour accuracy of ``describer`` on matched pairs, with the
    evaluation stage's definitions (fixed non-matching partners, seed ``ACCURACY_SEED``)."""
    from hardnet_export.evaluation.pairs import evaluate_matched_pairs

    scores = evaluate_matched_pairs(describer.describe, pairs, seed=ACCURACY_SEED)
    return Accuracy(pairs.name, len(pairs), scores["fpr95"], scores["nn_accuracy"])


def resolve_loader(target: Target) -> Callable[[Target, int, int], KeypointDescriber]:
    """The function ``target.loader`` names (``module:function``).

    Raises:
        InputError: the target has no loader.
    """
    from hardnet_export.artifacts.backends import resolve

    if target.loader is None:
        raise InputError(f"target {target.label!r} has no loader")
    loader: Callable[[Target, int, int], KeypointDescriber] = resolve(target.loader)
    return loader


def load_target(target: Target, max_batch: int, threads: int) -> KeypointDescriber:
    """Load ``target`` through the runtime with ``threads`` CPU threads where that applies;
    ours with ``runtime.load(artifact, device=...)`` alone, a peer by its own loader."""
    from hardnet_export.runtime import load
    from hardnet_export.runtime.registry import backend_for, get_backend

    if target.loader is not None:
        loaded: KeypointDescriber = resolve_loader(target)(target, max_batch, threads)
        return loaded
    if target.role == "ours":
        return load_ours(target.artifact, target.device)
    if target.backend is not None:
        backend = get_backend(target.backend)
    elif target.artifact is not None:
        backend = backend_for(target.artifact)
    else:
        raise InputError(f"target {target.label!r} names neither a backend nor an artifact")
    options = dict(target.options)
    if target.device == "cpu" and backend.threads_option is not None:
        options.setdefault(backend.threads_option, threads)
    return load(
        target.artifact, backend=backend.name, device=target.device, max_batch=max_batch, **options
    )


def _step(
    describer: Describer, batch: np.ndarray, chunk: int | None = None
) -> Callable[[], float | None]:
    # describe_timed returns when the descriptors are on the host (GPU work synchronised).
    if chunk is None or chunk >= len(batch):
        return lambda: describer.describe_timed(batch)[1]
    return chunked(describer, batch, chunk)


def time_target(
    describer: Describer,
    patches: np.ndarray,
    batch_size: int,
    *,
    warmup_s: float,
    duration_s: float,
    min_iterations: int = MIN_ITERATIONS,
    chunk: int | None = None,
) -> CaseResult:
    """Time ``describer`` on the first ``batch_size`` of ``patches`` (in ``describe`` calls of
    ``chunk`` patches where given).

    Shape:
        - patches: (N, 1, 32, 32) uint8, N >= batch_size.
    """
    batch = patches[:batch_size]
    timings = time_step(
        _step(describer, batch, chunk),
        warmup_s=warmup_s,
        duration_s=duration_s,
        min_iterations=min_iterations,
    )
    rate = throughput(batch_size, timings.host)
    # Variation is judged on the device clock where there is one, as trtexec does.
    variation = run_variation(timings.device if timings.device is not None else timings.host)
    return CaseResult(
        batch_size=batch_size,
        iterations=len(timings.host),
        warmup_iterations=timings.warmup_iterations,
        latency=LatencySummary.from_seconds(timings.host),
        compute=None if timings.device is None else LatencySummary.from_seconds(timings.device),
        throughput=rate,
        per_patch_ms=1e3 / rate,
        patches_per_ms=rate / 1e3 * PAPER_MS_PER_PATCH,
        variation=variation,
        unstable=is_unstable(variation),
        chunk=chunk if chunk is not None and chunk < batch_size else None,
    )


def run_benchmark(
    artifacts: Sequence[str | Path] = (),
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    device: str = "cpu",
    threads: int | None = None,
    warmup_s: float = DEFAULT_WARMUP_S,
    duration_s: float = DEFAULT_DURATION_S,
    min_iterations: int = MIN_ITERATIONS,
    accuracy_pairs: int = DEFAULT_ACCURACY_PAIRS,
    baseline: bool = True,
    weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    command: str = "",
    progress: bool = True,
    peers: bool = True,
    rounds: int = DEFAULT_ROUNDS,
    versus_batch_sizes: Sequence[int] = VERSUS_BATCH_SIZES,
) -> BenchmarkResult:
    """Benchmark artifacts (or every variant of the shipped model) at every batch size, and
    ours against the peers.

    Args:
        artifacts: ``.onnx`` / ``.engine`` / ``.pth`` files; empty benchmarks the default set
            (:func:`~hardnet_export.benchmark.targets.default_targets`).
        batch_sizes: patches per call.
        device: ``cpu`` or ``cuda``.
        threads: CPU threads for ONNX Runtime and PyTorch; default all usable cores.
        warmup_s, duration_s, min_iterations: trtexec's timing rules per case.
        accuracy_pairs: held-out built-in pairs for the FPR95 / NN-accuracy column (0: skip).
        baseline: add PyTorch eager FP32 of the shipped model to explicit artifacts, so the
            throughput ratio has its reference in the same run.
        weights: the checkpoint (or registered model name) behind the default set and the
            baseline; default the model shipped in the package.
        cache_dir: where the default set's exports are kept.
        command: the command line to record in the result.
        progress: show a progress bar.
        peers: with the default set, time ours (``runtime.load`` by default) and the peers
            (:mod:`hardnet_export.benchmark.peers`), and ours against the best peer in
            interleaved rounds at ``versus_batch_sizes`` (those of ``batch_sizes``).
        rounds: interleaved rounds of ours against the peers; each round runs every one for
            about ``duration_s / rounds``.
    """
    sizes = check_batch_sizes(batch_sizes)
    device = check_device(device)
    threads = _check_threads(threads)
    # NaN or negative durations made the timing loop run forever.
    check_float("warmup_s", warmup_s, low=0.0, high=3600.0)
    check_float("duration_s", duration_s, low=0.0, low_open=True, high=3600.0)
    check_int("min_iterations", min_iterations, low=1, high=10_000_000)
    check_int("accuracy_pairs", accuracy_pairs, low=0, high=1_000_000)
    check_int("rounds", rounds, low=1, high=100_000)
    weights = _check_weights(weights)
    notes: list[str] = []
    if artifacts:
        targets = _artifact_targets(artifacts, device, baseline, weights, notes)
    else:
        targets = default_targets(
            device,
            Path(cache_dir) if cache_dir else None,
            weights,
            max_batch=max(sizes),
            notes=notes,
            peers=peers,
        )

    # One fixed pair set: its patches are the timing input, and it is the accuracy set.
    pairs = held_out_pairs(accuracy_pairs or TIMING_ONLY_PAIRS)
    patches, inputs = benchmark_patches(max(sizes), pairs)
    if pairs is None and accuracy_pairs:
        notes.append("no accuracy column: the built-in photos are not installed")
    accuracy_set = pairs if accuracy_pairs else None

    result = BenchmarkResult(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=command,
        settings={
            "batch_sizes": sizes,
            "device": device,
            "threads": threads,
            "warmup_s": warmup_s,
            "duration_s": duration_s,
            "min_iterations": min_iterations,
            "variation_runs": 5,
            "variation_limit": VARIATION_LIMIT,
            "accuracy_pairs": accuracy_pairs,
            "accuracy_seed": ACCURACY_SEED,
            "weights": str(weights) if weights is not None else "shipped model",
            "versus_rounds": rounds,
        },
        machine=machine_info(),
        inputs=inputs,
        warnings=notes,
    )
    plan = _Plan(sizes, patches, threads, accuracy_set, warmup_s, duration_s, min_iterations)
    # Ours and the peers stay loaded for the interleaved rounds after every target's timing.
    kept: dict[str, tuple[Target, TargetResult, Describer]] = {}
    with progress_bar(enabled=progress, transient=True) as bar:
        task = bar.add_task("bench", total=len(targets) * len(sizes))
        for target in targets:
            show = functools.partial(_show, bar, task, target.label)
            try:
                entry, describer = _bench_target(target, plan, show, result.warnings)
            except PeerUnavailable as exc:
                result.warnings.append(f"{target.label} skipped: {exc}")
                bar.update(task, advance=len(sizes))
                continue
            result.targets.append(entry)
            if target.role in ("ours", "peer"):
                kept[target.label] = (target, entry, describer)
            del describer
        versus_sizes = [s for s in sizes if s in set(versus_batch_sizes)]
        if kept and versus_sizes:
            bar.update(task, description="ours against the peers (interleaved rounds)")
            result.versus = _versus(kept, plan, versus_sizes, rounds)
    kept.clear()
    result.machine["load_average_end"] = load_average()
    busy = _busy_warning(result.machine)
    if busy:
        result.warnings.append(busy)
    add_ratios(result)
    return result


def _check_threads(threads: int | None) -> int:
    """``threads``, or every core this process may use."""
    if threads is not None:
        return check_int("threads", threads, low=1, high=4096)
    usable = usable_cpus()
    return int(usable or 1)


def _check_weights(weights: str | Path | None) -> Path | None:
    """The checkpoint file ``weights`` names (a registered name, or the path itself)."""
    if weights is None:
        return None
    path = resolve_model(weights, "weights")
    if not Path(path).is_file():
        raise MissingFileError(f"weights not found: {path}")
    return Path(path)


def _artifact_targets(
    artifacts: Sequence[str | Path],
    device: str,
    baseline: bool,
    weights: Path | None,
    notes: list[str],
) -> list[Target]:
    """The given artifacts, after the PyTorch eager FP32 baseline of ``weights`` (the shipped
    model where None) if asked for and possible; ``notes`` says why not."""
    targets = artifact_targets(artifacts, device)
    if baseline and not installed("torch"):
        notes.append("no PyTorch eager FP32 baseline, so no throughput ratio: no torch here")
    elif baseline:
        try:
            source = weights if weights is not None else shipped_weights()
            targets.insert(0, baseline_target(device, source))
        except FileNotFoundError as exc:
            notes.append(f"no PyTorch eager FP32 baseline, so no throughput ratio: {exc}")
    return targets


@dataclass(frozen=True)
class _Plan:
    """What every target of one run is timed with.

    Shape:
        - patches: (N, 1, 32, 32) uint8, N >= max(sizes).
    """

    sizes: list[int]
    patches: np.ndarray
    threads: int
    accuracy_set: MatchedPairs | None
    warmup_s: float
    duration_s: float
    min_iterations: int


def _versus(
    kept: dict[str, tuple[Target, TargetResult, Describer]],
    plan: _Plan,
    sizes: list[int],
    rounds: int,
) -> list[Versus]:
    """Ours against the peers at each of ``sizes``, in interleaved rounds; a peer that tries
    chunks runs in the chunk its own timing found fastest at that size."""
    ours = [label for label, (t, _, _) in kept.items() if t.role == "ours"]
    peer_labels = [label for label, (t, _, _) in kept.items() if t.role == "peer"]
    found: list[Versus] = []
    for size in sizes:
        batch = plan.patches[:size]
        steps = []
        for label, (_, entry, describer) in kept.items():
            case = entry.case(size)
            steps.append((label, _step(describer, batch, case.chunk if case else None)))
        times = interleaved_times(steps, rounds=rounds, slice_s=plan.duration_s / rounds)
        found += versus(times, ours, peer_labels, unit="patches", size=size, goal=GOALS.get(size))
    return found


def _bench_target(
    target: Target, plan: _Plan, show: Callable[[str, int], None], warnings: list[str]
) -> tuple[TargetResult, Describer]:
    """Load ``target``, score its accuracy and time it at every batch size (a target with
    ``chunks`` in its fastest chunk per size); ``show`` gets what is happening and how many
    cases are done, ``warnings`` the unstable cases. Returns the result and the describer.

    Raises:
        PeerUnavailable: a peer cannot run here.
    """
    from hardnet_export.runtime.base import patch_describer

    show("loading", 0)
    start = time.perf_counter()
    describer = patch_describer(load_target(target, max(plan.sizes), plan.threads), "bench")
    load_s = time.perf_counter() - start
    accuracy = (
        measure_accuracy(describer, plan.accuracy_set) if plan.accuracy_set is not None else None
    )
    entry = TargetResult(
        label=target.label,
        artifact=None if target.artifact is None else str(target.artifact),
        backend=describer.backend,
        precision=describer.precision,
        device=describer.device,
        options={k: v for k, v in target.options.items()},
        load_s=load_s,
        accuracy=accuracy,
        is_baseline=target.is_baseline,
        role=target.role,
        note=target_note(target, describer),
    )
    for size in plan.sizes:
        show(f"batch {size}", 0)
        if target.per_batch:
            del describer
            describer = patch_describer(load_target(target, size, plan.threads), "bench")
        chunk = None
        if target.chunks:
            # A short try of each chunk; the case then times the fastest for the full window.
            tries = min(plan.duration_s, 0.5) / 2
            chunk = best_chunk(describer, plan.patches[:size], target.chunks, tries)
        case = time_target(
            describer,
            plan.patches,
            size,
            warmup_s=plan.warmup_s,
            duration_s=plan.duration_s,
            min_iterations=plan.min_iterations,
            chunk=chunk,
        )
        entry.cases.append(case)
        if case.unstable:
            warnings.append(
                f"{target.label} at batch {size}: run-to-run variation "
                f"{100 * case.variation:.1f} % exceeds {100 * VARIATION_LIMIT:.1f} %"
            )
        show(f"batch {size}", 1)
    return entry, describer


def _show(bar: Any, task: Any, label: str, what: str, advance: int) -> None:
    bar.update(task, description=f"{label}: {what}", advance=advance)


def _busy_warning(machine: dict[str, Any]) -> str | None:
    """A warning when other work was running as the benchmark started: a 1-minute load
    average above one core (or a quarter of the cores on a big machine). The end-of-run
    value includes the benchmark's own threads, so it is recorded but not judged."""
    start = machine.get("load_average_start")
    cpus = machine["cpu"]["usable_cpus"] or 1
    if not start or start[0] <= max(1.0, 0.25 * cpus):
        return None
    return (
        f"the machine was busy when the run started (1-minute load average {start[0]:.1f} on "
        f"{cpus} CPUs): other work competed for the cores, so timings are pessimistic and noisy"
    )


def add_ratios(result: BenchmarkResult) -> None:
    """Fill ``vs_baseline``: throughput over the baseline's at the same batch size."""
    base = next((t for t in result.targets if t.is_baseline), None)
    if base is None:
        return
    for target in result.targets:
        for i, case in enumerate(target.cases):
            ref = base.case(case.batch_size)
            if ref is not None:
                target.cases[i] = _replace(case, vs_baseline=case.throughput / ref.throughput)


def _replace(case: CaseResult, **changes: Any) -> CaseResult:
    return replace(case, **changes)
