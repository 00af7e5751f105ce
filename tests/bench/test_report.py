"""Ratios and the rendered tables on a hand-built result (no timing involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardnet_export.benchmark.report import rows, to_markdown, write_json
from hardnet_export.benchmark.results import BenchmarkResult, CaseResult, TargetResult
from hardnet_export.benchmark.run import add_ratios
from hardnet_export.benchmark.stats import LatencySummary


def _case(batch: int, ms: float) -> CaseResult:
    rate = batch * 1e3 / ms
    lat = LatencySummary(10, ms, ms, ms, ms, ms, ms, ms)
    return CaseResult(batch, 10, 1, lat, None, rate, 1e3 / rate, rate / 1e3, 0.0, False)


def _result() -> BenchmarkResult:
    machine = {"cpu": {"model": "Test CPU", "usable_cpus": 2}, "gpus": [], "libraries": {}}
    settings = {"batch_sizes": [1, 32], "device": "cpu", "threads": 2, "warmup_s": 0.2,
                "duration_s": 3.0, "min_iterations": 10}  # fmt: skip
    result = BenchmarkResult("2026-01-01T00:00:00+00:00", "cmd", settings, machine, "test")
    # Baseline: 1 patch in 2 ms (500/s) and 32 in 32 ms (1000/s).
    base = TargetResult("torch", None, "torch", "fp32", "cpu", {}, 0.1, None, is_baseline=True)
    base.cases += [_case(1, 2.0), _case(32, 32.0)]
    # Faster: 1 patch in 0.25 ms (4000/s, 8x) and 32 in 4 ms (8000/s, 8x).
    fast = TargetResult("int8", "m.onnx", "onnxruntime", "int8", "cpu", {}, 0.1, None)
    fast.cases += [_case(1, 0.25), _case(32, 4.0)]
    result.targets += [base, fast]
    return result


def test_ratios_against_the_baseline_at_the_same_batch_size() -> None:
    result = _result()
    add_ratios(result)
    base, fast = result.targets
    assert [c.vs_baseline for c in base.cases] == [1.0, 1.0]
    assert [c.vs_baseline for c in fast.cases] == pytest.approx([8.0, 8.0])
    # 4000 patches/s = 4 patches per paper millisecond, 0.25 ms each.
    assert fast.cases[0].patches_per_ms == pytest.approx(4.0)
    assert fast.cases[0].per_patch_ms == pytest.approx(0.25)


def test_no_baseline_leaves_ratios_empty() -> None:
    result = _result()
    result.targets[0].is_baseline = False
    add_ratios(result)
    assert all(c.vs_baseline is None for t in result.targets for c in t.cases)


def test_tables_show_every_case(tmp_path: Path) -> None:
    result = _result()
    add_ratios(result)
    table = rows(result)
    assert len(table) == 4 and table[2][:2] == ["int8", "1"]
    assert "8.00x" in table[2] and "4,000" in table[2]
    markdown = to_markdown(result)
    assert "| int8 | 1 | 0.25 |" in markdown and "GPU p50 ms |" not in markdown
    path = write_json(result, tmp_path / "r.json")
    assert BenchmarkResult.load(path).to_dict() == result.to_dict()
    with pytest.raises(ValueError, match="format"):
        BenchmarkResult.from_dict({"format": "other"})
