from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.export.parity import compare_descriptors, format_parity, parity_report


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_identical_descriptors() -> None:
    d = _unit(np.random.default_rng(0).normal(size=(50, 128)))
    figures = compare_descriptors(d, d)
    assert figures["max_abs_error"] == 0 and figures["nn_agreement"] == 1.0
    assert figures["min_cosine"] == pytest.approx(1.0)


def test_shuffled_descriptors_disagree() -> None:
    d = _unit(np.random.default_rng(0).normal(size=(50, 128)))
    figures = compare_descriptors(d, d[::-1])
    assert figures["nn_agreement"] < 0.2 and figures["mean_cosine"] < 0.5


def test_report_runs_each_batch_size_and_catches_batch_dependence() -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (20, 32, 32), dtype=np.uint8)
    projection = rng.normal(size=(32 * 32, 128))
    seen_sizes: list[int] = []

    def reference(batch: np.ndarray) -> np.ndarray:
        return _unit(batch.reshape(len(batch), -1).astype(np.float64) @ projection)

    def candidate(batch: np.ndarray) -> np.ndarray:
        seen_sizes.append(len(batch))
        out = reference(batch)
        return out if len(batch) > 1 else -out  # wrong only at batch 1

    report = parity_report(reference, candidate, patches, batch_sizes=(1, 7, 300), source="x")
    assert sorted(set(seen_sizes)) == [1, 6, 7, 20]
    assert report["batches"]["7"]["min_cosine"] == pytest.approx(1.0)
    assert report["batches"]["1"]["min_cosine"] == pytest.approx(-1.0)
    assert report["worst"]["min_cosine"] == pytest.approx(-1.0)
    assert "batch" in format_parity(report)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        compare_descriptors(np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, 1, 32, 32\)"):
        parity_report(lambda b: b, lambda b: b, np.zeros((5, 16, 16), np.uint8))
