"""Ours against the peers in interleaved rounds: ratios that a shared, noisy machine does
not skew (each round runs every contender for about the same time, in a rotating order,
and the ratio is taken within a round)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hardnet_export.benchmark.results import Versus
from hardnet_export.errors import InputError
from hardnet_export.validate import check_float, check_int

DEFAULT_ROUNDS = 10

#: Seconds of idle before each contender's turn. ONNX Runtime's default session keeps its
#: worker threads spinning for new work after a run (session option
#: ``session.intra_op.allow_spinning``, on by default), and whatever runs next shares the cores
#: with them: on a 2-core Zen 4, OpenCV SIFT ``compute()`` of 2000 keypoints took 1.21x as
#: long straight after ONNX Runtime, 1.17x after 10 ms idle and 1.01x after 50 ms; an
#: OpenVINO frame straight after it took 1.65x. In a fixed rotation the same contender always
#: follows the ONNX Runtime one, so without this pause one of them was slowed in every round.
#: The pause costs an OpenVINO frame 4 % against back-to-back calls (its threads wake up), SIFT
#: nothing; every contender starts from the same idle machine.
SETTLE_S = 0.05


def settle() -> None:
    """Let the previous contender's worker threads go idle (:data:`SETTLE_S`)."""
    time.sleep(SETTLE_S)


def interleaved_times(
    steps: Sequence[tuple[str, Callable[[], Any]]], *, rounds: int, slice_s: float
) -> dict[str, np.ndarray]:
    """Milliseconds per call of every step, one value per round.

    Each step is called once to warm up and once to measure how many calls fill
    ``slice_s`` (at least one); each round then runs every step that many times, the order
    rotating by one per round, each after :func:`settle`, and records its mean time per call.

    Shape:
        - Output values: (rounds,) ms.
    """
    check_int("rounds", rounds, low=1, high=100_000)
    check_float("slice_s", slice_s, low=0.0, low_open=True, high=3600.0)
    labels = [label for label, _ in steps]
    if len(set(labels)) != len(labels):
        raise InputError(f"interleaved steps need distinct labels, got {labels}")
    clock = time.perf_counter
    calls = []
    for _, step in steps:
        step()  # warm-up: first calls of a shape allocate (and compile, for torch.compile)
        start = clock()
        step()
        calls.append(max(1, round(slice_s / max(clock() - start, 1e-9))))
    times: dict[str, list[float]] = {label: [] for label in labels}
    order = list(range(len(steps)))
    for r in range(rounds):
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            label, step = steps[i]
            settle()
            start = clock()
            for _ in range(calls[i]):
                step()
            times[label].append(1e3 * (clock() - start) / calls[i])
    return {label: np.asarray(ms) for label, ms in times.items()}


def versus(
    times: dict[str, np.ndarray],
    ours: Sequence[str],
    peers: Sequence[str],
    *,
    unit: str,
    size: int,
    sift: str | None = None,
    goal: float | None = None,
) -> list[Versus]:
    """One :class:`Versus` per label in ``ours``, from :func:`interleaved_times`' rounds:
    every peer's time over ours within each round, the median over rounds; the best peer is
    the one with the lowest ratio. ``sift`` names the OpenCV SIFT step (per frame), and
    ``goal`` is the ratio (per patch) or x SIFT (per frame) aimed for."""
    if not peers:
        return []
    records = []
    for label in ours:
        mine = times[label]
        ratios = {p: float(np.median(times[p] / mine)) for p in peers}
        best = min(ratios, key=lambda p: ratios[p])
        vs_sift = None if sift is None else float(np.median(mine / times[sift]))
        if goal is None:
            met = None
        elif unit == "keypoints":
            met = vs_sift is not None and vs_sift <= goal
        else:
            met = ratios[best] >= goal
        records.append(
            Versus(
                unit=unit,
                size=size,
                ours=label,
                ours_ms=float(np.median(mine)),
                peers=ratios,
                peers_ms={p: float(np.median(times[p])) for p in peers},
                best_peer=best,
                ratio=ratios[best],
                rounds=len(mine),
                vs_sift=vs_sift,
                goal=goal,
                meets_goal=met,
            )
        )
    return records
