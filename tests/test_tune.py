"""The host-tuned runtime: ``tune`` measures gated candidates, the cache keeps the choice,
``runtime.load`` takes it, and what the caller names wins.

What holds on every CPU kind is asserted (which candidate wins depends on the CPU and on a
shared machine's load; that it passed its gate and was the fastest measured does not).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.backends import Backend, register_backend, unregister_backend
from hardnet_export.artifacts.metadata import GraphMetadata
from hardnet_export.artifacts.quantisation import GateResult
from hardnet_export.artifacts.tuning import Choice, cache_file, read_choice, tuning_key
from hardnet_export.runtime.onnxruntime_backend import OnnxRuntimeDescriber
from hardnet_export.tune import SAME_SPEED, Candidate, tune_artifact

pytest.importorskip("onnxruntime")


class CoarseDescriber(OnnxRuntimeDescriber):
    """ONNX Runtime, with descriptors cut to their signs when ``coarse`` is set: a candidate
    that is as fast as any and wrong, which the gate must keep out."""

    backend = "coarse"

    def __init__(self, *args: Any, coarse: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.coarse = coarse

    @classmethod
    def open(cls, path: Path | None, **options: Any) -> Any:
        coarse = bool(options.pop("coarse", False))
        describer = OnnxRuntimeDescriber.open.__func__(cls, path, **options)  # type: ignore[attr-defined]
        describer.coarse = coarse
        return describer

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        out = super()._infer(batch)
        if not self.coarse:
            return out
        signs = np.sign(out).astype(np.float32)
        return signs / np.linalg.norm(signs, axis=1, keepdims=True)


def coarse_candidates(metadata: GraphMetadata, flags: frozenset[str]) -> list[dict[str, Any]]:
    return [{"coarse": True}]


@contextmanager
def onnxruntime_variant(name: str, summary: str, describer: str, tuning: str) -> Iterator[Backend]:
    """A backend record over a describer class of this module (ONNX Runtime underneath),
    registered while the block runs."""
    record = register_backend(
        Backend(
            name=name,
            summary=summary,
            kinds={"patches": f"{__name__}:{describer}"},
            suffixes=(".onnx",),
            devices=("cpu",),
            module="onnxruntime",
            provenance="hardnet_export.artifacts.provenance:graph_provenance",
            tuning=f"{__name__}:{tuning}",
        )
    )
    try:
        yield record
    finally:
        unregister_backend(name)


@pytest.fixture
def coarse_backend() -> Iterator[Backend]:
    summary = "ONNX Runtime with sign-only descriptors (a wrong candidate)"
    with onnxruntime_variant("coarse", summary, "CoarseDescriber", "coarse_candidates") as record:
        yield record


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random HardNet at width 0.25 (a fifteenth of the full model's work: tuning times
    every candidate several times over)."""
    import torch

    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.model import HardNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tune")
    graph = folder / "small.fp32.onnx"
    return export_onnx(HardNet(width=0.25).eval(), graph, parity=False, gate_inference=False)


@pytest.fixture
def graph(small_graph: Path, tmp_path: Path) -> Path:
    # A copy of its own: the cache is keyed by the file's bytes, so other tests' loads of
    # the same graph are not touched by this test's choice.
    own = tmp_path / "tuned.fp32.onnx"
    shutil.copyfile(small_graph, own)
    return own


def test_tune_gates_every_candidate_and_loads_take_the_choice(
    graph: Path, tmp_path: Path, coarse_backend: Backend
) -> None:
    report = tune_artifact(graph, pairs=64, duration_s=0.05, cache_dir=tmp_path / "cache")
    rows = {row.candidate.label: row for row in report.rows}
    # Every installed CPU backend's candidates were measured, the wrong one among them.
    assert "onnxruntime (defaults)" in rows and "coarse (coarse=True)" in rows
    assert not rows["coarse (coarse=True)"].passed
    assert rows["coarse (coarse=True)"].gate is not None
    assert rows["coarse (coarse=True)"].gate.min_cosine < 0.98
    assert rows["onnxruntime (defaults)"].passed
    choice = report.choice
    assert choice.source == "tuned" and choice.backend != "coarse"
    winner = next(
        r for r in report.rows if r.candidate == Candidate.of(choice.backend, choice.options)
    )
    fastest = max(r.patches_per_s for r in report.rows if r.passed and r.patches_per_s)
    # The fastest, or one as fast within noise that is closer to the reference.
    assert winner.passed and winner.patches_per_s >= fastest * (1 - SAME_SPEED)
    assert choice.max_batch in report.chunks
    assert choice.gate is not None and choice.gate.passed
    # The cache holds it, keyed by this file, this CPU and these libraries.
    assert report.cache_file is not None and Path(report.cache_file).is_file()
    stored = json.loads(Path(report.cache_file).read_text())
    assert stored["key"]["isa"] == tuning_key("x")["isa"]
    assert read_choice(graph, tmp_path / "cache") == choice
    text = report.format()
    assert "coarse (coarse=True)" in text and "FAILED" in text and "chosen" in text


def test_check_tune_tunes_then_checks_the_path_it_keeps(
    graph: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from hardnet_export.cli import app

    monkeypatch.setenv("HARDNET_EXPORT_CACHE", str(tmp_path / "cache"))
    args = ["check", str(graph), "--reference", str(graph), "--tune", "--pairs", "64"]
    args += ["--duration-s", "0.05"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    choice = read_choice(graph, tmp_path / "cache")
    assert choice is not None and choice.source == "tuned"
    # The tune table, then the check of the kept path.
    assert "chosen" in result.output
    assert f"path       {choice.summary()}" in result.output
    refused = CliRunner().invoke(app, [*args, "--device", "cuda"])
    assert refused.exit_code != 0
    assert "--tune measures the paths on this CPU, got --device cuda" in str(refused.output) + str(
        refused.exception
    )


def test_load_takes_the_cached_choice_and_the_caller_wins(
    graph: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HARDNET_EXPORT_CACHE", str(tmp_path / "cache"))
    before = runtime.load(graph, device="cpu")
    assert before.choice is not None and before.choice.source == "rule"
    report = tune_artifact(graph, pairs=64, duration_s=0.05)
    loaded = runtime.load(graph, device="cpu")
    assert loaded.choice is not None and loaded.backend == report.choice.backend
    assert replace(loaded.choice, small_batches=None) == report.choice
    # Calls of a few patches of this FP32 graph take ONNX Runtime where tuning chose another
    # backend (the policy's small-batch rule), and the describer routes them there.
    small = loaded.choice.small_batches
    assert (small is not None) == (loaded.backend != "onnxruntime"), loaded.choice
    assert (loaded.small is None) == (small is None)
    assert loaded.max_batch == report.choice.max_batch
    patches = np.random.default_rng(0).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    assert loaded.describe(patches).shape == (5, 128)
    # What the caller names always wins over the cache.
    given = runtime.load(graph, backend="onnxruntime", device="cpu", max_batch=7)
    assert given.choice is not None and given.choice.source == "explicit"
    assert (given.backend, given.max_batch) == ("onnxruntime", 7)
    # The cache is per file content: another graph's bytes find nothing.
    other = tmp_path / "other.onnx"
    other.write_bytes(graph.read_bytes() + b"\0")
    assert read_choice(other) is None


def test_a_broken_cache_entry_never_stops_a_load(
    graph: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HARDNET_EXPORT_CACHE", str(tmp_path / "cache"))
    from hardnet_export.artifacts.tuning import artifact_digest

    file = cache_file(tuning_key(artifact_digest(graph)))
    file.parent.mkdir(parents=True)
    file.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="unreadable tuning cache entry"):
        loaded = runtime.load(graph, device="cpu")
    assert loaded.choice is not None and loaded.choice.source == "rule"


def test_choice_round_trips_and_says_what_it_is() -> None:
    choice = Choice("openvino", {"inference_precision": "bf16"}, max_batch=128, source="rule")
    assert Choice.from_dict(json.loads(json.dumps(choice.to_dict()))) == choice
    assert choice.inference_precision == "bf16"
    assert Choice("onnxruntime").inference_precision == "graph"
    assert choice.summary().startswith("rule: openvino (inference_precision=bf16)")


def test_tune_refuses_what_it_cannot_tune(tmp_path: Path, image_graph: Path) -> None:
    with pytest.raises(ValueError, match="image graph"):
        tune_artifact(image_graph, pairs=32, duration_s=0.01, write=False)
    with pytest.raises(FileNotFoundError):
        tune_artifact(tmp_path / "missing.onnx", write=False)
    with pytest.raises(ValueError, match="pairs"):
        tune_artifact(tmp_path / "missing.onnx", pairs=1, write=False)


def test_within_noise_the_more_faithful_candidate_wins() -> None:
    from dataclasses import replace

    from hardnet_export.tune import Row, fastest_faithful

    base = GateResult(
        pairs=100, source="test", fpr95_reference=1.0, fpr95_candidate=1.0, fpr95_loss_pp=0.0,
        nn_accuracy_reference=90.0, nn_accuracy_candidate=90.0, nn_accuracy_loss_pp=0.0,
        min_cosine=1.0, mean_cosine=1.0, max_fpr95_loss_pp=1.0, max_nn_accuracy_loss_pp=2.0,
        passed=True, forced=False,
    )  # fmt: skip
    exact = Row(Candidate.of("a"), gate=replace(base, min_cosine=1.0), patches_per_s=1000.0)
    rough = Row(Candidate.of("b"), gate=replace(base, min_cosine=0.99), patches_per_s=1010.0)
    much = Row(Candidate.of("c"), gate=replace(base, min_cosine=0.99), patches_per_s=1200.0)
    assert fastest_faithful([exact, rough]) is exact
    assert fastest_faithful([exact, rough, much]) is much


class RecordingDescriber(OnnxRuntimeDescriber):
    """ONNX Runtime, recording each inference call's size and the chunk size it ran under."""

    backend = "recording"
    calls: list[tuple[int, int | None]] = []

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        RecordingDescriber.calls.append((len(batch), self.max_batch))
        return super()._infer(batch)


def test_candidates_are_gated_and_timed_in_full_chunks_of_the_tuning_batch(graph: Path) -> None:
    # A backend may run full chunks on other kernels than smaller calls (OpenVINO: a graph
    # compiled for the chunk's batch); tuning measures the chunks the runtime will run.
    from hardnet_export.tune import TUNE_BATCH

    RecordingDescriber.calls.clear()
    summary = "ONNX Runtime recording its calls"
    with onnxruntime_variant("recording", summary, "RecordingDescriber", "plain_candidates"):
        tune_artifact(graph, pairs=128, duration_s=0.05, write=False)
    full = [chunk for n, chunk in RecordingDescriber.calls if n == TUNE_BATCH]
    assert full and set(full) == {TUNE_BATCH}  # the gate's and the timing's 256-patch calls


def plain_candidates(metadata: GraphMetadata, flags: frozenset[str]) -> list[dict[str, Any]]:
    return [{}]


def test_int8_graphs_bf16_candidates_are_held_to_the_rule_tables_bar() -> None:
    """Tuning judges an INT8 graph's bf16 float parts by the 0.99 the rule table asks of them
    (CpuRule.min_cosine), other candidates by the graph's own limits."""
    from hardnet_export.artifacts.metadata import GraphMetadata
    from hardnet_export.artifacts.quantisation import INT8_TARGET_COSINE
    from hardnet_export.tune import Candidate, candidate_limits

    limits = {"max_fpr95_loss": 1.0, "max_nn_accuracy_loss": 2.0, "min_cosine": 0.98}
    bf16 = Candidate.of("openvino", {"inference_precision": "bf16"})
    f32 = Candidate.of("openvino", {"inference_precision": "f32"})
    int8, fp32 = GraphMetadata(precision="int8"), GraphMetadata(precision="fp32")
    assert candidate_limits(int8, bf16, limits)["min_cosine"] == INT8_TARGET_COSINE == 0.99
    assert candidate_limits(int8, bf16, limits)["max_fpr95_loss"] == 1.0
    assert candidate_limits(int8, f32, limits) == limits
    assert candidate_limits(fp32, bf16, limits) == limits
    assert candidate_limits(int8, Candidate.of("onnxruntime"), limits) == limits


def test_tuning_a_name_tunes_each_graph_it_may_run_and_loads_follow(tmp_path: Path) -> None:
    from hardnet_export import get_model
    from hardnet_export.runtime.policy import registered_graph
    from hardnet_export.tune import tune_model

    entry = get_model("hardnet-fast")
    cache = tmp_path / "cache"
    report = tune_model(entry.name, pairs=32, duration_s=0.02, cache_dir=cache)
    assert [Path(r.artifact) for r in report.reports] == [entry.onnx, entry.graph("int8-cpu")]
    # The INT8 graph's reference is the model it was fine-tuned from, not itself.
    assert report.reports[1].reference != report.reports[1].artifact
    speeds = {Path(r.artifact).name: r.choice.patches_per_s for r in report.reports}
    assert report.runs == max(speeds, key=lambda name: speeds[name])
    pick = registered_graph(entry, cache_dir=cache)
    assert pick.source == "tuned" and pick.graph.name == report.runs
    text = report.format()
    assert f"hardnet-fast runs {report.runs}" in text and text.count("chosen") == 2
    assert [g["artifact"] for g in report.to_dict()["graphs"]] == [str(entry.onnx),
        str(entry.graph("int8-cpu"))]  # fmt: skip
    # A model that ships no other graph: its FP32 graph alone.
    only = tune_model("hardnet-eighth", pairs=32, duration_s=0.02, write=False)
    assert len(only.reports) == 1 and only.runs == get_model("hardnet-eighth").onnx.name
