"""HardNet's training pair sampler: every batch holds one matching pair from each of B distinct
3D points, the two patches of a pair distinct, points with fewer than two patches skipped."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from hardnet_export.errors import InputError, InputTypeError

PAPER_PAIRS_PER_EPOCH = 5_000_000


class PairSampler:
    """Draws batches of (anchor, positive) patch indices, reproducibly and with random access.

    Batch ``k`` depends only on ``(seed, k)``, so a resumed run asks for ``batch(k)`` and gets
    exactly what an uninterrupted run got; epochs differ because they cover different ``k``.

    Args:
        labels: 3D point id of every patch; equal ids correspond.
        batch_size: pairs per batch, at least 2 and at most the number of usable points.
        seed: non-negative seed.
        pairs_per_epoch: pairs an epoch holds (the paper regenerates 5M each epoch); an epoch is
            ``pairs_per_epoch // batch_size`` full batches, at least one.

    Shape:
        - labels: (N,) integer.
        - each batch: anchors (B,) int64 and positives (B,) int64, indices into ``labels``.

    Example:
        >>> labels = np.array([7, 7, 3, 3, 3, 5])  # point 5 has one patch: never drawn
        >>> anchors, positives = PairSampler(labels, batch_size=2).batch(0)
        >>> sorted(labels[anchors].tolist()), bool((labels[anchors] == labels[positives]).all())
        ([3, 7], True)
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        seed: int = 0,
        pairs_per_epoch: int = PAPER_PAIRS_PER_EPOCH,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise InputTypeError(
                f"labels must be a 1-D integer array, got shape {labels.shape} {labels.dtype}"
            )
        for name, value in (("batch_size", batch_size), ("seed", seed)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise InputTypeError(f"{name} must be an int, got {type(value).__name__}")
        if seed < 0:
            raise InputError(f"seed must be non-negative, got {seed}")
        # Group patch indices by point: order lists them point by point, starts/counts slice it.
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable").astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        usable = counts >= 2
        self._order = order
        self._starts = starts[usable]
        self._counts = counts[usable].astype(np.int64)
        if batch_size < 2:
            raise InputError(
                f"batch_size must be at least 2 (the loss needs negatives), got {batch_size}"
            )
        if batch_size > self.num_points:
            raise InputError(
                f"batch_size {batch_size} exceeds the {self.num_points} points that have at least "
                f"two patches (of {len(counts)} points, {len(labels)} patches): every pair in a "
                "batch needs its own point"
            )
        if not isinstance(pairs_per_epoch, (int, np.integer)) or pairs_per_epoch < 1:
            raise InputError(f"pairs_per_epoch must be a positive int, got {pairs_per_epoch!r}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.pairs_per_epoch = int(pairs_per_epoch)

    @property
    def num_points(self) -> int:
        """Points with at least two patches, the ones pairs are drawn from."""
        return len(self._counts)

    def __len__(self) -> int:
        """Batches per epoch."""
        return max(1, self.pairs_per_epoch // self.batch_size)

    def batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch number ``k`` counted from the start of training (epoch e starts at e * len).

        Shape:
            - output: anchors (B,) int64, positives (B,) int64.
        """
        if k < 0:
            raise InputError(f"batch index must be non-negative, got {k}")
        rng = np.random.default_rng([self.seed, int(k)])
        points = rng.choice(self.num_points, size=self.batch_size, replace=False)
        counts = self._counts[points]
        # Two distinct members per point: draw i from n, j from the n - 1 others.
        first = rng.integers(0, counts)
        second = rng.integers(0, counts - 1)
        second += second >= first
        base = self._starts[points]
        return self._order[base + first], self._order[base + second]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of one epoch, from batch ``start`` within it (to resume mid-epoch)."""
        if epoch < 0 or not 0 <= start <= len(self):
            raise InputError(f"need epoch >= 0 and 0 <= start <= {len(self)}, got {epoch}, {start}")
        first = epoch * len(self)
        for i in range(start, len(self)):
            yield self.batch(first + i)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.epoch(0)
