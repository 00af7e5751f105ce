from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.data.types import MatchedPairs
from hardnet_export.evaluation.pairs import (
    evaluate_matched_pairs,
    nonmatching_partners,
    pair_metrics,
)
from hardnet_export.evaluation.sift import sift_describer


def test_nonmatching_partners_are_other_points_and_fixed() -> None:
    j = nonmatching_partners(500, seed=3)
    assert (j != np.arange(500)).all() and ((j >= 0) & (j < 500)).all()
    assert np.array_equal(j, nonmatching_partners(500, seed=3))
    assert not np.array_equal(j, nonmatching_partners(500, seed=4))
    with pytest.raises(ValueError, match="at least 2"):
        nonmatching_partners(1)


def test_pair_metrics_on_known_descriptors() -> None:
    eye = np.eye(8, dtype=np.float32)
    perfect = pair_metrics(eye, eye)
    assert perfect["fpr95"] == 0.0 and perfect["nn_accuracy"] == 1.0
    # Positives shifted by one row: every anchor's nearest positive is someone else's.
    shifted = pair_metrics(eye, np.roll(eye, 1, axis=0))
    assert shifted["nn_accuracy"] == 0.0


def test_sift_on_matched_pairs_beats_chance() -> None:
    rng = np.random.default_rng(0)
    anchors = rng.integers(0, 256, (30, 32, 32), dtype=np.uint8)
    noisy = np.clip(anchors + rng.normal(0, 8, anchors.shape), 0, 255).astype(np.uint8)
    result = evaluate_matched_pairs(sift_describer(), MatchedPairs(anchors, noisy))
    assert result["nn_accuracy"] > 0.9 and result["pairs"] == 30
