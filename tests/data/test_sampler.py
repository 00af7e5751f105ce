"""PairSampler invariants: distinct points per batch, distinct patches per pair, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hardnet_export.data.sampler import PAPER_PAIRS_PER_EPOCH, PairSampler


def _labels() -> np.ndarray:
    # Unsorted labels with gaps in the ids: 40 points of 2..5 patches, plus two singletons.
    rng = np.random.default_rng(3)
    counts = {3 * i: 2 + i % 4 for i in range(40)}
    counts.update({1000: 1, 1001: 1})
    labels = np.concatenate([np.full(n, p) for p, n in counts.items()]).astype(np.int64)
    return rng.permutation(labels)


def test_batches_hold_distinct_points_and_distinct_patches() -> None:
    labels = _labels()
    sampler = PairSampler(labels, batch_size=16, seed=5, pairs_per_epoch=16 * 50)
    singletons = {p for p, n in zip(*np.unique(labels, return_counts=True), strict=True) if n < 2}
    assert sampler.num_points == len(np.unique(labels)) - len(singletons)
    seen_points = set()
    for anchors, positives in sampler:
        assert anchors.shape == positives.shape == (16,)
        assert anchors.dtype == positives.dtype == np.int64
        assert len(np.unique(labels[anchors])) == 16
        assert (labels[anchors] == labels[positives]).all()
        assert (anchors != positives).all()
        assert not singletons & set(labels[anchors].tolist())
        seen_points |= set(labels[anchors].tolist())
    assert len(seen_points) == sampler.num_points  # every usable point gets drawn


def test_every_ordered_pair_of_a_point_is_reachable() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2], np.int64)
    sampler = PairSampler(labels, batch_size=3)
    pairs = set()
    for k in range(200):
        anchors, positives = sampler.batch(k)
        pairs |= {(a, p) for a, p in zip(anchors.tolist(), positives.tolist(), strict=True)}
    expected = {(a, p) for a, p in itertools.permutations(range(7), 2) if labels[a] == labels[p]}
    assert pairs == expected


def test_determinism_and_random_access() -> None:
    labels = _labels()
    a = PairSampler(labels, batch_size=8, seed=1, pairs_per_epoch=8 * 6)
    b = PairSampler(labels, batch_size=8, seed=1, pairs_per_epoch=8 * 6)
    c = PairSampler(labels, batch_size=8, seed=2, pairs_per_epoch=8 * 6)
    assert len(a) == 6
    batches = list(a)
    for k, (anchors, positives) in enumerate(batches):
        np.testing.assert_array_equal(anchors, a.batch(k)[0])
        np.testing.assert_array_equal(positives, a.batch(k)[1])
        np.testing.assert_array_equal(anchors, b.batch(k)[0])
    assert any((x[0] != y[0]).any() for x, y in zip(batches, c, strict=True))
    # Epoch 1 continues the global batch count, and resuming mid-epoch replays the same batches.
    second = list(a.epoch(1))
    np.testing.assert_array_equal(second[0][0], a.batch(6)[0])
    assert any((x[0] != y[0]).any() for x, y in zip(batches, second, strict=True))
    resumed = list(a.epoch(1, start=4))
    assert len(resumed) == 2
    np.testing.assert_array_equal(resumed[0][1], second[4][1])


def test_epoch_length() -> None:
    labels = _labels()
    assert len(PairSampler(labels, batch_size=10)) == PAPER_PAIRS_PER_EPOCH // 10
    assert len(PairSampler(labels, batch_size=10, pairs_per_epoch=95)) == 9
    assert len(PairSampler(labels, batch_size=10, pairs_per_epoch=3)) == 1


def test_brown_size_labels() -> None:
    # liberty's patch count; the setup is vectorised, so this stays fast.
    labels = np.random.default_rng(0).integers(0, 100_000, 450_092)
    sampler = PairSampler(labels, batch_size=1024)
    anchors, positives = sampler.batch(12345)
    assert len(np.unique(labels[anchors])) == 1024
    assert (labels[anchors] == labels[positives]).all() and (anchors != positives).all()


def test_bad_arguments() -> None:
    labels = _labels()  # 40 usable points
    with pytest.raises(ValueError, match="at least 2"):
        PairSampler(labels, batch_size=1)
    with pytest.raises(ValueError, match="batch_size 41 exceeds the 40 points"):
        PairSampler(labels, batch_size=41)
    PairSampler(labels, batch_size=40).batch(0)
    with pytest.raises(ValueError, match="exceeds the 0 points"):
        PairSampler(np.arange(10), batch_size=2)
    with pytest.raises(TypeError, match="1-D integer"):
        PairSampler(labels.astype(np.float32), batch_size=2)
    with pytest.raises(TypeError, match="1-D integer"):
        PairSampler(labels.reshape(2, -1), batch_size=2)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        PairSampler(labels, batch_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        PairSampler(labels, batch_size=2, seed=-1)
    with pytest.raises(ValueError, match="pairs_per_epoch"):
        PairSampler(labels, batch_size=2, pairs_per_epoch=0)
    sampler = PairSampler(labels, batch_size=2, pairs_per_epoch=10)
    with pytest.raises(ValueError, match="non-negative"):
        sampler.batch(-1)
    with pytest.raises(ValueError, match="start"):
        list(sampler.epoch(0, start=6))
