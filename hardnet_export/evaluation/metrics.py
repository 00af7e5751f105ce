"""Patch-verification metrics."""

from __future__ import annotations

import numpy as np


def fpr95(distances: np.ndarray, labels: np.ndarray) -> float:
    """False positive rate at 95 % recall (Brown's FPR95), as a fraction in [0, 1].

    Pairs are sorted by distance; at the first index where 95 % of the matching pairs are
    recalled, FPR95 is the number of non-matching pairs before that index over all
    non-matching pairs.

    Shape:
        - distances: (M,) descriptor distances (smaller = more similar).
        - labels: (M,) 1/True for a matching pair, 0/False otherwise.
    """
    distances = np.asarray(distances, dtype=np.float64)
    labels = np.asarray(labels)
    if distances.ndim != 1 or labels.shape != distances.shape:
        raise ValueError(
            f"distances and labels must be 1-D of equal length, got {distances.shape} and "
            f"{labels.shape}"
        )
    if not np.all(np.isfinite(distances)):
        raise ValueError("distances contain NaN or inf")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 or boolean")
    is_match = labels.astype(bool)
    n_pos, n_neg = int(is_match.sum()), int((~is_match).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"FPR95 needs matching and non-matching pairs, got {n_pos} and {n_neg}")
    sorted_match = is_match[np.argsort(distances, kind="stable")]
    threshold_index = int(np.argmax(np.cumsum(sorted_match) >= 0.95 * n_pos))
    false_positives = int((~sorted_match[:threshold_index]).sum())
    return false_positives / n_neg
