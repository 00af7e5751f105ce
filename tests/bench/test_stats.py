from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.benchmark.stats import (
    LatencySummary,
    is_unstable,
    percentile,
    run_medians,
    run_variation,
    throughput,
)


def test_percentile_trtexec_rule_by_hand() -> None:
    # N = 10, sorted 1..10: p50 -> index 9 - int(5.0) = 4 -> 5; p90 -> 9 - int(1.0) = 8 -> 9;
    # p95 -> 9 - int(0.5) = 9 -> 10; p99 -> 10; p100 -> 10.
    timings = [7, 3, 10, 1, 5, 9, 2, 8, 4, 6]
    assert percentile(timings, 50) == 5
    assert percentile(timings, 90) == 9
    assert percentile(timings, 95) == 10
    assert percentile(timings, 99) == 10
    assert percentile(timings, 100) == 10
    # N = 4, sorted 10, 20, 30, 40: p50 -> 3 - int(2.0) = 1 -> 20; p75 -> 3 - int(1.0) = 2 -> 30.
    assert percentile([40, 10, 30, 20], 50) == 20
    assert percentile([40, 10, 30, 20], 75) == 30
    # N = 3: p50 -> 2 - int(1.5) = 1 -> middle; p10 -> 2 - int(2.7) = 0 -> smallest.
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0], 10) == 1.0
    # N = 1: every percentile is the one value.
    assert percentile([0.25], 1) == percentile([0.25], 99) == 0.25


def test_percentile_is_a_measured_value_not_an_interpolation() -> None:
    timings = np.random.default_rng(0).exponential(size=101)
    for p in (50, 90, 95, 99):
        assert percentile(timings, p) in timings
    # N = 100: p99 -> 99 - int(1.0) = 98, the second largest.
    ordered = np.sort(timings[:100])
    assert percentile(timings[:100], 99) == ordered[98]


@pytest.mark.parametrize("p", [0, -5, 100.5])
def test_percentile_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0, 2.0], p)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [-1.0], [[1.0, 2.0]]])
def test_bad_timings_rejected(bad: list) -> None:
    with pytest.raises(ValueError, match="timings"):
        LatencySummary.from_seconds(bad)


def test_summary_in_milliseconds() -> None:
    seconds = [0.001 * v for v in (7, 3, 10, 1, 5, 9, 2, 8, 4, 6)]
    s = LatencySummary.from_seconds(seconds)
    assert s.n == 10
    assert (s.min, s.p50, s.p90, s.p95, s.p99, s.max) == pytest.approx((1, 5, 9, 10, 10, 10))
    assert s.mean == pytest.approx(5.5)
    assert set(s.to_dict()) == {"n", "min", "mean", "p50", "p90", "p95", "p99", "max"}


def test_throughput_arithmetic() -> None:
    # 4 calls of 32 patches in 0.5 s total -> 256 patches/s.
    assert throughput(32, [0.1, 0.1, 0.2, 0.1]) == pytest.approx(256.0)
    assert throughput(1, [0.001] * 10) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="batch_size"):
        throughput(0, [0.1])


def test_run_medians_split_in_time_order() -> None:
    timings = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert run_medians(timings, 5).tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="at least 5"):
        run_medians([1.0, 2.0], 5)


def test_variation_warning_threshold() -> None:
    steady = [1.0] * 50
    assert run_variation(steady) == 0.0 and not is_unstable(run_variation(steady))
    # One slow outlier does not move any slice median: still stable.
    spiky = [1.0] * 49 + [100.0]
    assert run_variation(spiky) == 0.0
    # A drift of 2 % between the first and last slices is under 2.5 %; 3 % is over.
    drift_2 = np.repeat([1.00, 1.005, 1.01, 1.015, 1.02], 10)
    drift_3 = np.repeat([1.00, 1.0075, 1.015, 1.0225, 1.03], 10)
    assert run_variation(drift_2) == pytest.approx(0.02 / 1.01)
    assert not is_unstable(run_variation(drift_2))
    assert run_variation(drift_3) == pytest.approx(0.03 / 1.015)
    assert is_unstable(run_variation(drift_3))
