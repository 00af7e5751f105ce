"""Ours against the peers: peer records become targets, the interleaved rounds give finite
ratios, and a short in-process run reports them in every output. Nothing here asserts
which is faster (that differs by CPU kind)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hardnet_export.benchmark import peers, report, run, targets
from hardnet_export.benchmark.results import BenchmarkResult
from hardnet_export.benchmark.targets import BenchContext, Target
from hardnet_export.benchmark.versus import interleaved_times, versus
from hardnet_export.shipped import SHIPPED_ONNX, SHIPPED_WEIGHTS


class _Shipped(BenchContext):
    def graph(self, variant: object) -> Path:
        return SHIPPED_ONNX  # labels and loaders are tested, not an export


def test_every_installed_peer_is_one_target_labelled_peer(tmp_path: Path) -> None:
    context = _Shipped(tmp_path, 64, SHIPPED_WEIGHTS)
    found = targets.peer_targets("cpu", context)
    assert [t.label for t in found] == [p.label for p in peers.peers()]
    for target, peer in zip(found, peers.peers(), strict=True):
        assert target.label.startswith("peer: ") and target.role == "peer"
        assert target.loader == peer.load and callable(run.resolve_loader(target))
        assert target.artifact == (SHIPPED_WEIGHTS if peer.source == "weights" else SHIPPED_ONNX)
    ours = targets.ours_targets("cpu", context)
    # Each variant's export, and for the shipped weights runtime.load() itself (no path).
    assert [t.role for t in ours] == ["ours"] * (len(peers.OURS_VARIANTS) + 1)
    assert all(t.backend is None and not t.options and t.loader is None for t in ours)
    assert ours[-1].label == targets.DEFAULT_MODEL_LABEL and ours[-1].artifact is None
    other = _Shipped(tmp_path, 64, tmp_path / "other.pth")
    assert len(targets.ours_targets("cpu", other)) == len(peers.OURS_VARIANTS)
    assert targets.peer_targets("cuda", context) == [] == targets.ours_targets("cuda", context)


def test_openvino_peer_runs_batches_as_given(tmp_path: Path) -> None:
    """The peer is OpenVINO as a user compiles it: no padding, and its standardisation in
    the inference precision OpenVINO picks (``OpenVINODescriber.open`` keeps ours in f32)."""
    pytest.importorskip("openvino")
    peer = next(t for t in targets.peer_targets("cpu", _Shipped(tmp_path, 64, SHIPPED_WEIGHTS))
                if t.loader is not None and t.loader.endswith("load_openvino_default"))  # fmt: skip
    describer = run.resolve_loader(peer)(peer, 256, 0)
    assert describer.multiple == 1 and len(describer.compiled.outputs) == 1  # no probe
    batch = np.zeros((3, 1, 32, 32), np.uint8)
    assert describer.describe(batch).shape == (3, 128)


def test_versus_is_the_median_of_ratios_within_rounds() -> None:
    times = {
        "ours": np.array([1.0, 2.0, 1.0]),
        "slow": np.array([3.0, 6.0, 3.0]),
        "fast": np.array([2.0, 2.0, 1.5]),
    }
    (record,) = versus(times, ["ours"], ["slow", "fast"], unit="patches", size=256, goal=1.5)
    assert record.peers == {"slow": 3.0, "fast": 1.5} and record.best_peer == "fast"
    assert record.ratio == 1.5 and record.meets_goal is True and record.rounds == 3
    assert record.ours_ms == 1.0 and record.peers_ms["fast"] == 2.0
    sift = {**times, "sift": np.array([4.0, 4.0, 4.0])}
    (frame,) = versus(sift, ["ours"], ["fast"], unit="keypoints", size=2000, sift="sift", goal=0.5)
    assert frame.vs_sift == 0.25 and frame.meets_goal is True
    assert versus(times, ["ours"], [], unit="patches", size=1) == []


def test_interleaved_times_runs_every_step_every_round() -> None:
    calls = {"a": 0, "b": 0}

    def step(name: str) -> Any:
        return lambda: calls.__setitem__(name, calls[name] + 1)

    times = interleaved_times([("a", step("a")), ("b", step("b"))], rounds=4, slice_s=1e-4)
    assert set(times) == {"a", "b"} and all(len(v) == 4 for v in times.values())
    assert all(np.isfinite(v).all() and (v > 0).all() for v in times.values())
    assert calls["a"] >= 6 and calls["b"] >= 6  # warm-up, calibration and 4 rounds


def test_each_turn_starts_after_the_previous_contenders_threads_went_idle() -> None:
    import time

    from hardnet_export.benchmark.frame import interleaved_compute_times
    from hardnet_export.benchmark.versus import SETTLE_S

    log: list[tuple[str, float, float]] = []

    def step(name: str) -> Any:
        def run() -> None:
            start = time.perf_counter()
            log.append((name, start, time.perf_counter()))

        return run

    interleaved_times([("a", step("a")), ("b", step("b"))], rounds=3, slice_s=1e-4)
    turns = [(n, s, e) for i, (n, s, e) in enumerate(log) if i >= 4]  # past warm-up, sizing
    changes = [
        later[1] - earlier[2]
        for earlier, later in zip(turns, turns[1:], strict=False)
        if earlier[0] != later[0]
    ]
    assert len(changes) == 3 and min(changes) >= SETTLE_S  # a b | b a | a b
    # The per-frame rounds the frontier uses pause the same way (the time of a frame's
    # compute() is measured around it, so the pause shows only in the wall clock).
    frame = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)

    class Counted:
        def __init__(self) -> None:
            self.calls: list[float] = []

        def compute(self, image: np.ndarray, kps: Any) -> Any:
            self.calls.append(time.perf_counter())
            return kps, np.zeros((len(kps), 128), np.float32)

    counted = Counted()
    interleaved_compute_times(frame, [("counted", counted)], 20, rounds=3)  # type: ignore[list-item]
    assert len(counted.calls) == 4 and (np.diff(counted.calls[1:]) >= SETTLE_S).all()


@pytest.mark.slow  # loads torch, ONNX Runtime and three describers: about 7 s on 2 cores
def test_short_run_reports_ours_against_the_peers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")

    def refuse(target: Target, max_batch: int, threads: int) -> Any:
        raise peers.PeerUnavailable("not here (test)")

    monkeypatch.setattr(peers, "_refuse", refuse, raising=False)
    here = "hardnet_export.benchmark.peers"
    chosen = [
        Target("ours: fp32", SHIPPED_ONNX, None, "cpu", role="ours"),
        Target("peer: eager", SHIPPED_WEIGHTS, None, "cpu", role="peer",
               loader=f"{here}:load_torch_eager", chunks=(4, 8)),
        Target("peer: ort", SHIPPED_ONNX, None, "cpu", role="peer",
               loader=f"{here}:load_onnxruntime_default"),
        Target("peer: refused", SHIPPED_ONNX, None, "cpu", role="peer", loader=f"{here}:_refuse"),
    ]  # fmt: skip
    monkeypatch.setattr(run, "default_targets", lambda *a, **k: list(chosen))
    result = run.run_benchmark(
        batch_sizes=[1, 16], duration_s=0.01, warmup_s=0.0, min_iterations=5,
        accuracy_pairs=0, threads=1, rounds=3, versus_batch_sizes=(1, 16), progress=False,
    )  # fmt: skip
    assert [t.label for t in result.targets] == ["ours: fp32", "peer: eager", "peer: ort"]
    assert any("peer: refused skipped: not here (test)" in w for w in result.warnings)
    eager = result.targets[1]
    assert eager.cases[0].chunk is None and eager.cases[1].chunk in (4, 8, None)
    assert [(v.size, v.ours) for v in result.versus] == [(1, "ours: fp32"), (16, "ours: fp32")]
    for record in result.versus:
        assert set(record.peers) == {"peer: eager", "peer: ort"} and record.rounds == 3
        assert all(math.isfinite(r) and r > 0 for r in record.peers.values())
        assert record.ratio == record.peers[record.best_peer] == min(record.peers.values())
        assert record.goal == peers.GOALS.get(record.size)
    # Ours says what the runtime chose on this CPU (ONNX Runtime or OpenVINO's bf16, by rule).
    assert "fp32" in result.targets[0].note and "choice: rule: " in result.targets[0].note

    ours_rows = [row for row in report.rows(result) if row[0] == "ours: fp32"]
    assert ours_rows[0][report.columns(result).index("x best peer")].endswith("x")
    markdown = report.to_markdown(result)
    assert "## Ours against the peers" in markdown and "int8 ISA" in markdown
    assert "best peer" in report.versus_summary(result.versus)[0]
    path = report.write_json(result, tmp_path / "r.json")
    assert BenchmarkResult.load(path).to_dict() == result.to_dict()
    assert report.write_plot(result, tmp_path / "r.png").stat().st_size > 10_000


def test_frame_versus_gives_ratios_and_x_sift() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from hardnet_export.benchmark.frame import bench_photo, frame_versus
    from hardnet_export.runtime import load

    frame = bench_photo()
    ours = load(SHIPPED_ONNX, device="cpu")
    peer = load(SHIPPED_ONNX, backend="onnxruntime", device="cpu", max_batch=64)
    (record,) = frame_versus(frame, [("ours", ours)], [("peer", peer)], 100, rounds=3)
    assert record.unit == "keypoints" and record.size == 100 and record.best_peer == "peer"
    assert record.vs_sift is not None and math.isfinite(record.vs_sift) and record.vs_sift > 0
    assert record.goal == peers.FRAME_GOAL_VS_SIFT and record.meets_goal is not None


def test_what_ran_says_the_arithmetic_and_the_small_path() -> None:
    from types import SimpleNamespace

    ours = SimpleNamespace(backend="openvino", precision="fp32", inference_precision="bf16")
    assert peers.describe_what(ours) == "openvino fp32, inference bf16"
    small = SimpleNamespace(backend="onnxruntime", max_batch=1)
    assert peers.describe_what(SimpleNamespace(**vars(ours), small=small)) == (
        "openvino fp32, inference bf16, up to 1 patch on onnxruntime"
    )
    small.max_batch = 3
    assert peers.describe_what(SimpleNamespace(**vars(ours), small=small)).endswith(
        "up to 3 patches on onnxruntime"
    )
    plain = SimpleNamespace(backend="onnxruntime", precision="int8")
    assert peers.describe_what(plain) == "onnxruntime int8"
