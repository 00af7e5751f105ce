"""Evaluation on matched pairs (built-in validation, motorcycle stereo): FPR95 and
nearest-neighbour matching accuracy.

A :class:`~hardnet_export.data.types.MatchedPairs` holds ``n`` pairs, each of a different
point, so ``(anchor i, positive j != i)`` never matches. FPR95 uses the ``n`` matching pairs
plus ``n`` non-matching ones ``(i, j_i)`` with ``j_i = (i + o_i) mod n``, ``o_i`` uniform in
``[1, n)`` from a seeded generator (the same for every describer). Nearest-neighbour accuracy
is the share of anchors whose closest positive (Euclidean) is their own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hardnet_export.artifacts.describe import DescribeFn, describe_in_batches
from hardnet_export.data.types import MatchedPairs
from hardnet_export.errors import InputError
from hardnet_export.evaluation.metrics import fpr95


def nonmatching_partners(n: int, seed: int = 0) -> np.ndarray:
    """For each anchor ``i`` a partner ``j != i``, deterministic in ``(n, seed)``.

    Shape:
        - output: (n,) int64.
    """
    if n < 2:
        raise InputError(f"need at least 2 pairs to form non-matching pairs, got {n}")
    offsets = np.random.default_rng([seed, n]).integers(1, n, n)
    return (np.arange(n) + offsets) % n


def pair_metrics(anchors: np.ndarray, positives: np.ndarray, seed: int = 0) -> dict[str, float]:
    """FPR95 and NN accuracy (both fractions) from descriptors of matched pairs.

    Shape:
        - anchors, positives: (n, D) float, row i of each from the same point.
    """
    if anchors.shape != positives.shape or anchors.ndim != 2:
        raise InputError(
            f"anchors and positives must be equal (n, D), got {anchors.shape}, {positives.shape}"
        )
    a = anchors.astype(np.float64)
    p = positives.astype(np.float64)
    n = len(a)
    # Squared distances via the Gram matrix: n x n without an n x n x D temporary.
    d2 = (a * a).sum(1)[:, None] + (p * p).sum(1)[None, :] - 2.0 * a @ p.T
    dist = np.sqrt(np.maximum(d2, 0.0))
    j = nonmatching_partners(n, seed)
    distances = np.concatenate([np.diag(dist), dist[np.arange(n), j]])
    labels = np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])
    return {
        "fpr95": fpr95(distances, labels),
        "nn_accuracy": float((dist.argmin(1) == np.arange(n)).mean()),
        "pairs": n,
    }


def evaluate_matched_pairs(
    describe: DescribeFn,
    pairs: MatchedPairs,
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
) -> dict[str, float]:
    """Describe both sides of ``pairs`` and return FPR95 and NN accuracy (fractions)."""
    patches = np.concatenate([pairs.anchors, pairs.positives])
    desc = describe_in_batches(describe, patches, progress=progress)
    return pair_metrics(desc[: len(pairs)], desc[len(pairs) :], seed)
