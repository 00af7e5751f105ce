from __future__ import annotations

import time

import pytest

from hardnet_export.benchmark.timing import time_step


def test_at_least_min_iterations_when_duration_is_tiny() -> None:
    calls = []
    timings = time_step(lambda: calls.append(1), warmup_s=0.0, duration_s=0.0)
    assert len(timings.host) == 10
    assert timings.warmup_iterations == 1
    assert len(calls) == 11
    assert timings.device is None


def test_runs_for_at_least_the_duration() -> None:
    start = time.perf_counter()
    timings = time_step(lambda: time.sleep(0.002), warmup_s=0.01, duration_s=0.06)
    elapsed = time.perf_counter() - start
    assert timings.host.sum() >= 0.06 * 0.9
    assert elapsed >= 0.07
    assert len(timings.host) >= 10
    assert timings.warmup_iterations >= 1
    assert (timings.host >= 0.002).all()


def test_device_times_are_kept_when_every_step_reports_one() -> None:
    timings = time_step(lambda: 0.5e-3, warmup_s=0.0, duration_s=0.0, min_iterations=12)
    assert timings.device is not None and timings.device.tolist() == [0.5e-3] * 12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup_s": -1}, "warmup_s"),
        ({"duration_s": -0.1}, "duration_s"),
        ({"min_iterations": 0}, "min_iterations"),
    ],
)
def test_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        time_step(lambda: None, **kwargs)
