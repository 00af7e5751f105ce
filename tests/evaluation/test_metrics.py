from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.evaluation import fpr95


def test_small_hand_checked_example() -> None:
    # 3 matches: 95 % recall needs all 3, reached at index 4; negatives before it: 2 of 3.
    distances = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    labels = np.array([1, 0, 1, 0, 1, 0])
    assert fpr95(distances, labels) == pytest.approx(2 / 3)


def test_ninety_five_percent_rule() -> None:
    # 20 matches: the 19th is reached at index 19 with one negative before it; 8 negatives.
    labels = np.array([1] * 18 + [0, 1, 0, 0, 1] + [0] * 5)
    distances = np.arange(len(labels), dtype=float)
    assert fpr95(distances, labels) == pytest.approx(1 / 8)
    # Order of the input does not matter, only the distances.
    perm = np.random.default_rng(0).permutation(len(labels))
    assert fpr95(distances[perm], labels[perm].astype(bool)) == pytest.approx(1 / 8)


def test_ties_count_against_the_descriptor() -> None:
    # Collapsed descriptors: every distance equal. Nothing is separated, so FPR95 is 1.
    assert fpr95(np.zeros(6), np.array([1, 1, 1, 0, 0, 0])) == 1.0
    # A tie at the 95 % point: the tied non-match counts as a false positive.
    assert fpr95(np.array([0.1, 0.5, 0.5, 0.9]), np.array([1, 1, 0, 0])) == 0.5


def test_perfect_separation_is_zero() -> None:
    assert fpr95(np.array([0.1, 0.2, 0.9, 1.0]), np.array([1, 1, 0, 0])) == 0.0


@pytest.mark.parametrize(
    ("distances", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "matching and non-matching"),
        ([0.1, np.nan], [1, 0], "NaN"),
        ([0.1, 0.2], [1, 0, 1], "equal length"),
        ([0.1, 0.2], [1, 2], "0/1"),
    ],
)
def test_bad_input(distances, labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        fpr95(np.array(distances), np.array(labels))


def test_average_precision_hand_checked() -> None:
    from hardnet_export.evaluation.metrics import average_precision

    # Ranked 1, 0, 1: recall 0, .5, .5, 1 with precision 1, 1, .5, 2/3 -> trapezoids.
    ap = average_precision(np.array([3.0, 2.0, 1.0]), np.array([1, 0, 1]))
    assert ap == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert average_precision(np.array([2.0, 1.0, 0.0]), np.array([1, 1, 0])) == 1.0
    # A positive never retrieved (numpos) caps recall at 1/2.
    assert average_precision(np.array([2.0, 1.0]), np.array([1, 0]), numpos=2) == 0.5
    with pytest.raises(ValueError, match="numpos"):
        average_precision(np.array([1.0, 2.0]), np.array([1, 1]), numpos=1)
    with pytest.raises(ValueError, match="positive"):
        average_precision(np.array([1.0]), np.array([0]))
