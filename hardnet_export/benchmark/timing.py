"""The timing loop: warm up, then run back to back for a minimum time and iteration count."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardnet_export.errors import InputError

#: trtexec's conventions: 200 ms warm-up, then at least 3 s and at least 10 iterations.
DEFAULT_WARMUP_S = 0.2
DEFAULT_DURATION_S = 3.0
MIN_ITERATIONS = 10


@dataclass(frozen=True)
class Timings:
    """Per-iteration durations of one timed window, in seconds, in time order.

    ``host`` is end to end as the caller sees it (host input in, host descriptors out, copies
    included); ``device`` is the accelerator's own compute time (CUDA events) where the step
    reports one, else ``None``.

    Shape:
        - host: (N,) seconds.
        - device: (N,) seconds or None.
    """

    host: np.ndarray
    device: np.ndarray | None
    warmup_iterations: int


def time_step(
    step: Callable[[], float | None],
    *,
    warmup_s: float = DEFAULT_WARMUP_S,
    duration_s: float = DEFAULT_DURATION_S,
    min_iterations: int = MIN_ITERATIONS,
) -> Timings:
    """Time ``step`` back to back: warm up for ``warmup_s`` (at least one call), then run until
    both ``duration_s`` have passed and ``min_iterations`` calls are done.

    ``step`` does one iteration and returns its device compute time in seconds, or ``None``
    when it has no device clock; it must have finished its work when it returns (a GPU step
    synchronises), so host clocks around it measure real latency.
    """
    if warmup_s < 0 or not np.isfinite(warmup_s):
        raise InputError(f"warmup_s must be >= 0, got {warmup_s}")
    if duration_s < 0 or not np.isfinite(duration_s):
        raise InputError(f"duration_s must be >= 0, got {duration_s}")
    if min_iterations < 1:
        raise InputError(f"min_iterations must be >= 1, got {min_iterations}")
    clock = time.perf_counter
    warmup = 0
    start = clock()
    while warmup == 0 or clock() - start < warmup_s:
        step()
        warmup += 1

    host: list[float] = []
    device: list[float | None] = []
    start = clock()
    while len(host) < min_iterations or clock() - start < duration_s:
        t0 = clock()
        device_s = step()
        host.append(clock() - t0)
        device.append(device_s)
    device_array = None if any(d is None for d in device) else np.asarray(device, dtype=np.float64)
    return Timings(np.asarray(host, dtype=np.float64), device_array, warmup)
