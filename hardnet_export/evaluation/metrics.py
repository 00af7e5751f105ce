"""Patch-verification metrics, and the agreement of two descriptor sets."""

from __future__ import annotations

import numpy as np

from hardnet_export.errors import InputError


def fpr95(distances: np.ndarray, labels: np.ndarray) -> float:
    """False positive rate at 95 % recall (Brown's FPR95), as a fraction in [0, 1].

    Pairs are sorted by distance; at the first index where 95 % of the matching pairs are
    recalled, FPR95 is the number of non-matching pairs before that index over all
    non-matching pairs. Ties are broken against the descriptor: a non-matching pair at the
    same distance as a matching one is ranked first, so collapsed descriptors (all distances
    equal) score 1.0, not 0.0.

    Shape:
        - distances: (M,) descriptor distances (smaller = more similar).
        - labels: (M,) 1/True for a matching pair, 0/False otherwise.
    """
    distances = np.asarray(distances, dtype=np.float64)
    labels = np.asarray(labels)
    if distances.ndim != 1 or labels.shape != distances.shape:
        raise InputError(
            f"distances and labels must be 1-D of equal length, got {distances.shape} and "
            f"{labels.shape}"
        )
    if not np.all(np.isfinite(distances)):
        raise InputError("distances contain NaN or inf")
    if not np.isin(labels, (0, 1)).all():
        raise InputError("labels must be 0/1 or boolean")
    is_match = labels.astype(bool)
    n_pos, n_neg = int(is_match.sum()), int((~is_match).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"FPR95 needs matching and non-matching pairs, got {n_pos} and {n_neg}")
    sorted_match = is_match[np.lexsort((is_match, distances))]
    threshold_index = int(np.argmax(np.cumsum(sorted_match) >= 0.95 * n_pos))
    false_positives = int((~sorted_match[:threshold_index]).sum())
    return false_positives / n_neg


def average_precision(scores: np.ndarray, labels: np.ndarray, numpos: int | None = None) -> float:
    """Area under the precision-recall curve as hpatches-benchmark computes it.

    Items are ranked by descending score; precision and recall are taken after every item,
    starting from (recall 0, precision 1), and integrated with the trapezoidal rule.
    ``numpos`` counts positives that were never retrieved (HPatches matching counts every
    reference patch), so recall is over ``numpos`` rather than the positives in ``labels``.

    Shape:
        - scores: (M,) higher = more confident.
        - labels: (M,) 1/True for a positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise InputError(
            f"scores and labels must be 1-D of equal length, got {scores.shape}, {labels.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise InputError("scores contain NaN or inf")
    positives = int(labels.sum()) if numpos is None else int(numpos)
    if positives < labels.sum():
        raise InputError(f"numpos {numpos} is below the {int(labels.sum())} positives given")
    if positives == 0:
        raise InputError("average precision needs at least one positive")
    ranked = labels[np.argsort(-scores, kind="mergesort")]
    tp = np.concatenate([[0], np.cumsum(ranked)])
    fp = np.concatenate([[0], np.cumsum(~ranked)])
    recall = tp / positives
    precision = np.maximum(tp, 1e-10) / np.maximum(tp + fp, 1e-10)
    # Trapezoids over the recall steps (np.trapz is gone from numpy 2.x as trapezoid).
    return float(np.sum((recall[1:] - recall[:-1]) * (precision[1:] + precision[:-1]) / 2.0))


def compare_descriptors(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs error, min/mean cosine and nearest-neighbour agreement of two descriptor sets.

    Nearest-neighbour agreement is the fraction of descriptors whose nearest other descriptor
    (by L2 distance) is the same index under both sets; it needs at least 2 descriptors.

    Shape:
        - reference: (N, D) float.
        - candidate: (N, D) float.
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.ndim != 2 or reference.shape != candidate.shape or len(reference) < 2:
        raise InputError(
            "compare_descriptors needs two (N, D) arrays of equal shape with N >= 2, got "
            f"{reference.shape} and {candidate.shape}"
        )
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = (reference * candidate).sum(axis=1) / np.maximum(norms, 1e-12)
    return {
        "max_abs_error": float(np.abs(reference - candidate).max()),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
        "nn_agreement": float(np.mean(_nearest_other(reference) == _nearest_other(candidate))),
    }


def _nearest_other(descriptors: np.ndarray) -> np.ndarray:
    squared = (descriptors * descriptors).sum(axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * descriptors @ descriptors.T
    np.fill_diagonal(distances, np.inf)
    return distances.argmin(axis=1)
