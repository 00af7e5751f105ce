"""Latency statistics the way trtexec reports them, and the run-to-run stability check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from hardnet_export.errors import InputError

#: Percentiles reported for every latency series, as trtexec reports them.
PERCENTILES = (50, 90, 95, 99)
#: Run-to-run variation above this fraction is flagged (trtexec's threshold for GPU time).
VARIATION_LIMIT = 0.025
#: The timed window is split into this many consecutive runs to measure variation.
DEFAULT_RUNS = 5


def _as_timings(timings: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(timings, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InputError(f"timings must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise InputError("timings must be finite and non-negative")
    return array


def percentile(timings: Sequence[float] | np.ndarray, p: float) -> float:
    """The p-th percentile by trtexec's rule: the value at index ``N-1-int((1-p/100)*N)`` of
    the sorted timings. It is always one of the measured values, never an interpolation.
    The product is computed exactly (``p`` as written in decimal), so p90 of 10 timings drops
    exactly one value where float arithmetic would give ``int(0.9999999999999998) = 0``.

    Shape:
        - timings: (N,) durations, any unit, N >= 1.
    """
    if not 0 < p <= 100:
        raise InputError(f"percentile must lie in (0, 100], got {p}")
    ordered = np.sort(_as_timings(timings))
    n = len(ordered)
    index = n - 1 - int((1 - Fraction(str(p)) / 100) * n)
    return float(ordered[max(index, 0)])


@dataclass(frozen=True)
class LatencySummary:
    """min, mean, p50, p90, p95, p99 and max of one latency series, in milliseconds."""

    n: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def from_seconds(cls, timings: Sequence[float] | np.ndarray) -> LatencySummary:
        """Summarise per-iteration durations given in seconds.

        Shape:
            - timings: (N,) seconds, N >= 1.
        """
        ms = _as_timings(timings) * 1e3
        p50, p90, p95, p99 = (percentile(ms, p) for p in PERCENTILES)
        return cls(
            n=len(ms),
            min=float(ms.min()),
            mean=float(ms.mean()),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            max=float(ms.max()),
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def throughput(batch_size: int, timings: Sequence[float] | np.ndarray) -> float:
    """Patches per second over back-to-back iterations: patches done / time spent.

    Shape:
        - timings: (N,) seconds per iteration of ``batch_size`` patches.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    array = _as_timings(timings)
    total = float(array.sum())
    if total <= 0:
        raise InputError("timings sum to zero; cannot compute a throughput")
    return batch_size * len(array) / total


def run_medians(timings: Sequence[float] | np.ndarray, runs: int = DEFAULT_RUNS) -> np.ndarray:
    """Median (trtexec p50) of each of ``runs`` consecutive, equal-count slices of the series.

    Shape:
        - timings: (N,) durations in time order, N >= runs.
        - return: (runs,) medians.
    """
    array = _as_timings(timings)
    if runs < 2:
        raise InputError(f"runs must be >= 2, got {runs}")
    if len(array) < runs:
        raise InputError(
            f"need at least {runs} timings to split into {runs} runs, got {len(array)}"
        )
    return np.array([percentile(part, 50) for part in np.array_split(array, runs)])


def run_variation(timings: Sequence[float] | np.ndarray, runs: int = DEFAULT_RUNS) -> float:
    """Run-to-run variation: (largest - smallest run median) / median of the whole series.

    The timed window is split into ``runs`` consecutive slices of equal iteration count
    (:func:`run_medians`); medians rather than means keep one preempted iteration from
    counting as instability, while a slow drift (thermal throttling, a neighbour process
    taking a core) moves whole slices and shows. 0.03 means the runs disagree by 3 %.

    Shape:
        - timings: (N,) durations in time order, N >= runs.
    """
    medians = run_medians(timings, runs)
    middle = percentile(timings, 50)
    return float((medians.max() - medians.min()) / middle) if middle > 0 else 0.0


def is_unstable(variation: float, limit: float = VARIATION_LIMIT) -> bool:
    """Whether a run-to-run variation is above the warning threshold (2.5 % by default)."""
    return variation > limit
