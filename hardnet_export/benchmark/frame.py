"""Per-image benchmarks: one photo in, descriptors out, against OpenCV SIFT's ``compute``.

Per keypoint count and target (artifact, backend, device) a frame is timed stage by stage
with the batch benchmark's rules (:func:`~hardnet_export.benchmark.timing.time_step`):
detection (SIFT, listed apart: both descriptors need it), extraction
(:func:`~hardnet_export.geometry.extract_patches_with_mask`), inference (``describe`` of those
patches) and total (``Describer.compute``: extraction and inference as an application calls
them); an image graph (``onnx --with-extraction``) cuts its patches inside the one call,
so it has a total only. The reference row is OpenCV SIFT ``compute()`` on the same keypoints
of the same image, timed in the same run; ``vs_sift`` is a total's p50 over SIFT's.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from hardnet_export.benchmark.results import (
    FrameBenchmarkResult,
    FrameCase,
    FrameReference,
    FrameTarget,
    Versus,
)
from hardnet_export.benchmark.stats import LatencySummary
from hardnet_export.benchmark.timing import DEFAULT_DURATION_S, DEFAULT_WARMUP_S, time_step
from hardnet_export.benchmark.versus import DEFAULT_ROUNDS, interleaved_times, settle, versus
from hardnet_export.errors import InputError
from hardnet_export.host import usable_cpus
from hardnet_export.validate import check_float, check_int

if TYPE_CHECKING:
    from hardnet_export.runtime.base import Describer, KeypointDescriber

DEFAULT_KEYPOINTS = (500, 2000, 8000)
#: Keypoints per frame at which ours is timed against the peers (the goal's count).
VERSUS_KEYPOINTS = 2000
#: The most keypoints a frame benchmark asks for (the runtime's own detection limit).
MAX_KEYPOINTS = 1_000_000


def bench_photo() -> np.ndarray:
    """The benchmark frame: scikit-image's ``coffee`` photo (held out of training) enlarged
    1.6x (bicubic) to 960x640 and cropped to its central 800x640, in BGR.

    Shape:
        - Output: (640, 800, 3) uint8 BGR.
    """
    import skimage.data

    rgb = cv2.resize(skimage.data.coffee(), (960, 640), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(rgb[:, 80:880, ::-1])


def bench_mosaic() -> np.ndarray:
    """A large frame: the four held-out photos (coffee, flower, gravel, coins), each enlarged
    to 800x640 (bicubic), in a 2x2 mosaic of 1600x1280 grey pixels with about 19,000 SIFT
    keypoints, for keypoint counts the benchmark frame does not have (8000 and up).

    Shape:
        - Output: (1280, 1600) uint8.
    """
    from hardnet_export.data.builtin import load_photo, split_photos
    from hardnet_export.geometry import as_gray

    tiles = [
        cv2.resize(as_gray(load_photo(name)), (800, 640), interpolation=cv2.INTER_CUBIC)
        for name in split_photos("val")
    ]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])


#: Frames ``bench --image`` knows by name, beside image files.
BUILTIN_FRAMES = {"builtin:frame": bench_photo, "builtin:large": bench_mosaic}


def frame_image(image: str | Path, *, max_image_pixels: int | None = None) -> np.ndarray:
    """A named built-in frame (:data:`BUILTIN_FRAMES`) or an image file (``max_image_pixels``:
    as :func:`hardnet_export.applications.images.read_image`).

    Raises:
        FileNotFoundError, ValueError: as :func:`hardnet_export.applications.images.read_image`.

    Shape:
        - Output: (H, W) or (H, W, 3) uint8.
    """
    if str(image) in BUILTIN_FRAMES:
        return BUILTIN_FRAMES[str(image)]()
    from hardnet_export.applications.images import read_image

    return read_image(Path(image), max_image_pixels=max_image_pixels)


def parse_keypoint_counts(text: str) -> list[int]:
    """``"500,2000"`` -> ``[500, 2000]``; ValueError for anything but positive integers."""
    counts = []
    for part in text.split(","):
        try:
            counts.append(int(part.strip()))
        except ValueError:
            raise InputError(
                f"keypoint counts must be comma-separated positive integers, got {text!r}"
            ) from None
    for count in counts:
        check_int("keypoint count", count, low=1, high=MAX_KEYPOINTS)
    return sorted(set(counts))


def sift_keypoints(gray: np.ndarray, count: int) -> list[cv2.KeyPoint]:
    """The ``count`` strongest SIFT keypoints (fewer where the image has fewer)."""
    from hardnet_export.applications.detection import detect_keypoints

    return detect_keypoints(gray, detector="sift", max_keypoints=count)


def _summary(step: Any, warmup_s: float, duration_s: float, min_iterations: int) -> LatencySummary:
    def timed() -> None:
        step()

    timings = time_step(
        timed, warmup_s=warmup_s, duration_s=duration_s, min_iterations=min_iterations
    )
    return LatencySummary.from_seconds(timings.host)


def run_frame_benchmark(
    image: np.ndarray,
    describers: Sequence[tuple[str, Describer]],
    *,
    keypoints: Sequence[int] = DEFAULT_KEYPOINTS,
    image_name: str = "",
    warmup_s: float = DEFAULT_WARMUP_S,
    duration_s: float = DEFAULT_DURATION_S,
    min_iterations: int = 10,
    command: str = "",
) -> FrameBenchmarkResult:
    """Time SIFT detection, SIFT ``compute()`` and each describer's extraction, inference and
    ``compute`` on ``image`` at every keypoint count.

    Args:
        image: the frame, grayscale or BGR uint8.
        describers: (label, loaded describer) pairs.
        keypoints: keypoint counts; the strongest SIFT keypoints, fewer where the image has
            fewer (the result records how many).
        image_name: what the image is, for the report.
        warmup_s, duration_s, min_iterations: the timing rules per stage.
        command: the command line to record.

    Raises:
        ValueError: bad counts or durations, or an image without any SIFT keypoint.
        TypeError: not a uint8 image.

    Shape:
        - image: (H, W) or (H, W, 3) uint8.
    """
    from hardnet_export.benchmark.machine import load_average, machine_info
    from hardnet_export.geometry import as_gray, extract_patches_with_mask

    counts = sorted({check_int("keypoint count", k, low=1, high=MAX_KEYPOINTS) for k in keypoints})
    if not counts:
        raise InputError("keypoint counts must not be empty")
    check_float("warmup_s", warmup_s, low=0.0, high=3600.0)
    check_float("duration_s", duration_s, low=0.0, low_open=True, high=3600.0)
    check_int("min_iterations", min_iterations, low=1, high=10_000_000)
    gray = as_gray(image)
    result = FrameBenchmarkResult(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=command,
        image=image_name,
        image_shape=list(image.shape),
        settings={
            "keypoints": counts,
            "detector": "sift",
            "warmup_s": warmup_s,
            "duration_s": duration_s,
            "min_iterations": min_iterations,
            "opencv_threads": cv2.getNumThreads(),
        },
        machine=machine_info(),
    )
    timing = {"warmup_s": warmup_s, "duration_s": duration_s, "min_iterations": min_iterations}
    targets = [
        FrameTarget(label, None if d.artifact is None else str(d.artifact), d.backend,
                    d.precision, d.device)
        for label, d in describers
    ]  # fmt: skip
    sift = cv2.SIFT_create()
    for count in counts:
        kps = sift_keypoints(gray, count)
        if not kps:
            raise InputError(f"{image_name or 'the image'} has no SIFT keypoints to describe")
        if len(kps) < count:
            result.warnings.append(
                f"{count} keypoints asked for, the image has {len(kps)} SIFT keypoints: "
                f"that row times {len(kps)}"
            )
        # The same detector settings describe_image uses, so detection is what it would pay.
        detect = _summary(lambda c=count: sift_keypoints(gray, c), **timing)
        reference = _summary(lambda k=kps: sift.compute(gray, k), **timing)
        result.references.append(FrameReference(count, len(kps), detect, reference))
        for target, (_, describer) in zip(targets, describers, strict=True):
            stages = {}
            if describer.graph_kind == "patches":
                patches = extract_patches_with_mask(
                    image, kps, magnification=describer.magnification
                )[0][:, None]
                stages["extract"] = _summary(
                    lambda k=kps, m=describer.magnification: extract_patches_with_mask(
                        image, k, magnification=m
                    ),
                    **timing,
                )
                stages["infer"] = _summary(lambda p=patches, d=describer: d.describe(p), **timing)
            stages["total"] = _summary(lambda k=kps, d=describer: d.compute(image, k), **timing)
            target.cases.append(
                FrameCase(count, len(kps), stages, stages["total"].p50 / reference.p50)
            )
    result.targets = targets
    result.machine["load_average_end"] = load_average()
    return result


def run_image_benchmark(
    image: np.ndarray,
    artifacts: Sequence[str | Path] = (),
    *,
    keypoints: Sequence[int] = DEFAULT_KEYPOINTS,
    image_name: str = "",
    device: str = "cpu",
    threads: int | None = None,
    warmup_s: float = DEFAULT_WARMUP_S,
    duration_s: float = DEFAULT_DURATION_S,
    min_iterations: int = 10,
    weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    command: str = "",
    peers: bool = True,
    rounds: int = DEFAULT_ROUNDS,
    versus_keypoints: int = VERSUS_KEYPOINTS,
) -> FrameBenchmarkResult:
    """:func:`run_frame_benchmark` of given artifacts, or of the batch benchmark's default set
    (:func:`~hardnet_export.benchmark.targets.default_targets`), loaded the way
    ``hardnet-export bench`` loads them; with the default set and ``peers``, ours
    (``runtime.load`` by default) against the peers and OpenCV SIFT ``compute()`` per frame
    in interleaved rounds at ``versus_keypoints`` (the largest count where the run asks
    for fewer).

    Args:
        image: the frame, grayscale or BGR uint8.
        artifacts: ``.onnx`` / ``.engine`` / ``.pth`` files; empty: every variant of the
            shipped model (or of ``weights``) that runs on ``device``.
        keypoints, image_name, warmup_s, duration_s, min_iterations, command: as
            :func:`run_frame_benchmark`.
        device: ``cpu`` or ``cuda``.
        threads: CPU threads for ONNX Runtime and PyTorch; default all usable cores.
        weights: the checkpoint behind the default set.
        cache_dir: where the default set's exports are kept.
        peers, rounds, versus_keypoints: ours against the peers (see above); each round
            runs SIFT, ours and every peer on one frame once.

    Raises:
        ValueError: as :func:`run_frame_benchmark`; a bad device or thread count.
        FileNotFoundError: an artifact or the weights do not exist.

    Shape:
        - image: (H, W) or (H, W, 3) uint8.
    """

    from hardnet_export.benchmark.peers import target_note
    from hardnet_export.benchmark.run import load_target
    from hardnet_export.benchmark.targets import (
        artifact_targets,
        check_device,
        default_targets,
        image_graph_targets,
    )

    device = check_device(device)
    usable = usable_cpus()
    threads = (
        check_int("threads", threads, low=1, high=4096) if threads is not None else int(usable or 1)
    )
    counts = [check_int("keypoint count", k, low=1, high=MAX_KEYPOINTS) for k in keypoints]
    if artifacts:
        targets = artifact_targets(artifacts, device)
    else:
        cache = Path(cache_dir) if cache_dir else None
        source = Path(weights) if weights is not None else None
        targets = default_targets(
            device, cache, source, max_batch=max(counts, default=1), peers=peers
        )
        targets += image_graph_targets(device, cache, source)
    versus_count = (
        versus_keypoints if versus_keypoints in counts else max(counts, default=versus_keypoints)
    )
    describers = []
    for target in targets:
        # One call per frame describes every keypoint at once: max_batch = the largest count.
        describer = load_target(target, max(counts, default=1), threads)
        if target.chunks:
            # A peer at its best batch: the chunk fastest on this frame's patches.
            describer = _best_chunk_load(describer, target, image, versus_count, threads)
        describers.append((target.label, describer))
    result = run_frame_benchmark(
        image,
        describers,
        keypoints=counts,
        image_name=image_name,
        warmup_s=warmup_s,
        duration_s=duration_s,
        min_iterations=min_iterations,
        command=command,
    )
    result.settings.update(device=device, threads=threads, versus_rounds=rounds)
    for entry, target, (_, describer) in zip(result.targets, targets, describers, strict=True):
        entry.role = target.role
        entry.note = target_note(target, describer)
    ours = [(t.label, d) for t, (_, d) in zip(targets, describers, strict=True) if t.role == "ours"]
    rivals = [
        (t.label, d) for t, (_, d) in zip(targets, describers, strict=True) if t.role == "peer"
    ]
    if ours and rivals:
        result.versus = frame_versus(
            image, ours, rivals, versus_count, rounds=rounds, slice_s=duration_s / rounds
        )
    return result


def _best_chunk_load(
    loaded: KeypointDescriber, target: Any, image: np.ndarray, count: int, threads: int
) -> KeypointDescriber:
    """``target`` loaded again with ``max_batch`` = the chunk of ``target.chunks`` that
    describes ``count`` keypoints' patches of ``image`` fastest (a short try of each)."""
    from hardnet_export.benchmark.peers import best_chunk
    from hardnet_export.benchmark.run import load_target
    from hardnet_export.geometry import as_gray, extract_patches_with_mask
    from hardnet_export.runtime.base import patch_describer

    describer = patch_describer(loaded, "a chunk size")
    kps = sift_keypoints(as_gray(image), count)
    patches = extract_patches_with_mask(image, kps, magnification=describer.magnification)[0]
    chunk = best_chunk(describer, np.ascontiguousarray(patches[:, None]), target.chunks, 0.3)
    return describer if chunk is None else load_target(target, chunk, threads)


#: SIFT's label in the interleaved rounds.
SIFT_LABEL = "opencv sift compute()"


def frame_versus(
    image: np.ndarray,
    ours: Sequence[tuple[str, KeypointDescriber]],
    peers: Sequence[tuple[str, KeypointDescriber]],
    keypoints: int,
    *,
    rounds: int = DEFAULT_ROUNDS,
    slice_s: float = 0.0,
) -> list[Versus]:
    """Ours against the peers and OpenCV SIFT ``compute()`` per frame: ``compute`` of the
    ``keypoints`` strongest SIFT keypoints of ``image``, every contender once per round
    (``slice_s``: more calls where one is shorter), in rotating order.

    Shape:
        - image: (H, W) or (H, W, 3) uint8.
    """
    from hardnet_export.benchmark.peers import FRAME_GOAL_VS_SIFT
    from hardnet_export.geometry import as_gray

    gray = as_gray(image)
    kps = sift_keypoints(gray, check_int("keypoints", keypoints, low=1, high=MAX_KEYPOINTS))
    if not kps:
        raise InputError("the image has no SIFT keypoints to describe")
    sift = cv2.SIFT_create()
    steps: list[tuple[str, Any]] = [(SIFT_LABEL, lambda: sift.compute(gray, kps))]
    steps += [(label, lambda d=d: d.compute(image, kps)) for label, d in [*ours, *peers]]
    times = interleaved_times(steps, rounds=rounds, slice_s=slice_s or 1e-6)
    return versus(
        times,
        [label for label, _ in ours],
        [label for label, _ in peers],
        unit="keypoints",
        size=len(kps),
        sift=SIFT_LABEL,
        goal=FRAME_GOAL_VS_SIFT,
    )


def interleaved_compute_times(
    image: np.ndarray,
    describers: Sequence[tuple[str, Describer]],
    keypoints: int,
    *,
    rounds: int = 30,
) -> dict[str, Any]:
    """``compute()`` of every describer and OpenCV SIFT's on the same keypoints, timed in
    interleaved rounds: each round runs SIFT and every describer once, in an order that
    rotates, so a slow spell of a shared machine falls on all of them alike. Each describer's
    ratio to SIFT is the median over rounds of its time over SIFT's time in the same round.

    Returns:
        ``{"rounds", "keypoints", "sift_ms": [...], "targets": {label: {"ms": [...],
        "ms_p50", "vs_sift"}}}``, milliseconds.

    Shape:
        - image: (H, W) or (H, W, 3) uint8.
    """
    from hardnet_export.geometry import as_gray

    check_int("rounds", rounds, low=3, high=100_000)
    gray = as_gray(image)
    kps = sift_keypoints(gray, check_int("keypoints", keypoints, low=1, high=MAX_KEYPOINTS))
    if not kps:
        raise InputError("the image has no SIFT keypoints to describe")
    sift = cv2.SIFT_create()
    steps: list[tuple[str, Any]] = [("SIFT", lambda: sift.compute(gray, kps))]
    steps += [(label, lambda d=d: d.compute(image, kps)) for label, d in describers]
    if len({label for label, _ in steps}) != len(steps):
        raise InputError(f"describer labels must be distinct and not 'SIFT', got {describers}")
    for _, step in steps:  # warm-up
        step()
    times: dict[str, list[float]] = {label: [] for label, _ in steps}
    clock = time.perf_counter
    for r in range(rounds):
        shift = r % len(steps)
        for label, step in steps[shift:] + steps[:shift]:
            settle()
            start = clock()
            step()
            times[label].append(1000 * (clock() - start))
    sift_ms = np.asarray(times.pop("SIFT"))
    return {
        "rounds": rounds,
        "keypoints": len(kps),
        "sift_ms": sift_ms.tolist(),
        "sift_ms_p50": float(np.median(sift_ms)),
        "targets": {
            label: {
                "ms": ms,
                "ms_p50": float(np.median(ms)),
                "vs_sift": float(np.median(np.asarray(ms) / sift_ms)),
            }
            for label, ms in times.items()
        },
    }
