"""The INT8 accuracy gate: a quantised graph must match FP32 on held-out pairs.

INT8 engines that lose accuracy silently are a common failure of deployment tools; here the
loss is measured on matching pairs cut from photos that never entered training or
calibration, and a graph that loses more than the limit (default 1 FPR95 percentage point)
is refused unless forced. The figures go into the graph's metadata either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export.evaluation.metrics import fpr95
from hardnet_export.export.parity import DescribeFn, compare_descriptors, describe_in_batches

if TYPE_CHECKING:
    from hardnet_export.data.types import MatchedPairs

GATE_BATCH = 256


class Int8GateError(ValueError):
    """The quantised graph lost more accuracy than the gate allows."""


@dataclass(frozen=True)
class GateResult:
    """FP32 (reference) vs INT8 (candidate) on the same held-out pairs; rates in percent."""

    pairs: int
    source: str
    fpr95_reference: float
    fpr95_candidate: float
    fpr95_loss_pp: float
    nn_accuracy_reference: float
    nn_accuracy_candidate: float
    nn_accuracy_loss_pp: float
    min_cosine: float
    mean_cosine: float
    max_fpr95_loss_pp: float
    passed: bool
    forced: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verdict = "passed" if self.passed else ("FAILED (forced)" if self.forced else "FAILED")
        return (
            f"INT8 gate {verdict} on {self.pairs} held-out pairs: FPR95 "
            f"{self.fpr95_reference:.2f}% -> {self.fpr95_candidate:.2f}% "
            f"({self.fpr95_loss_pp:+.2f} pp, limit {self.max_fpr95_loss_pp:g}), NN accuracy "
            f"{self.nn_accuracy_reference:.2f}% -> {self.nn_accuracy_candidate:.2f}%, cosine "
            f"min {self.min_cosine:.4f} mean {self.mean_cosine:.4f}"
        )


def pair_metrics(anchors: np.ndarray, positives: np.ndarray) -> tuple[float, float]:
    """FPR95 and nearest-neighbour accuracy (both in percent) of matched descriptor pairs.

    ``anchors[i]`` and ``positives[i]`` match and every ``(i, j != i)`` is a non-match, so
    FPR95 uses all N matching and N * (N - 1) non-matching L2 distances, and NN accuracy is
    the fraction of anchors whose nearest positive is their own.

    Shape:
        - anchors: (N, D) float, N >= 2.
        - positives: (N, D) float.
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    positives = np.asarray(positives, dtype=np.float64)
    if anchors.ndim != 2 or anchors.shape != positives.shape or len(anchors) < 2:
        raise ValueError(
            f"pair_metrics needs two (N, D) arrays with N >= 2, got {anchors.shape} and "
            f"{positives.shape}"
        )
    squared = (
        (anchors**2).sum(1)[:, None] + (positives**2).sum(1)[None, :] - 2 * anchors @ positives.T
    )
    distances = np.sqrt(np.maximum(squared, 0.0))
    labels = np.eye(len(anchors), dtype=bool)
    nn_accuracy = float(np.mean(distances.argmin(axis=1) == np.arange(len(anchors))))
    return 100.0 * fpr95(distances.ravel(), labels.ravel()), 100.0 * nn_accuracy


def evaluate_gate(
    reference: DescribeFn,
    candidate: DescribeFn,
    pairs: MatchedPairs,
    *,
    max_fpr95_loss: float = 1.0,
    force: bool = False,
    label: str = "INT8",
) -> dict[str, Any]:
    """Compare ``candidate`` with ``reference`` on ``pairs``; the result as a JSON-ready dict.

    Raises:
        Int8GateError: FPR95 rises by more than ``max_fpr95_loss`` percentage points and
            ``force`` is False; the message gives the figures and how to proceed.
    """
    patches = np.concatenate([pairs.anchors, pairs.positives])[:, None]
    n = len(pairs)
    ref = describe_in_batches(reference, patches, GATE_BATCH)
    cand = describe_in_batches(candidate, patches, GATE_BATCH)
    if not np.isfinite(cand).all():
        cand = np.nan_to_num(cand, nan=0.0, posinf=0.0, neginf=0.0)
    fpr_ref, nn_ref = pair_metrics(ref[:n], ref[n:])
    fpr_cand, nn_cand = pair_metrics(cand[:n], cand[n:])
    agreement = compare_descriptors(ref, cand)
    loss = fpr_cand - fpr_ref
    passed = loss <= max_fpr95_loss
    result = GateResult(
        pairs=n,
        source=pairs.name,
        fpr95_reference=fpr_ref,
        fpr95_candidate=fpr_cand,
        fpr95_loss_pp=loss,
        nn_accuracy_reference=nn_ref,
        nn_accuracy_candidate=nn_cand,
        nn_accuracy_loss_pp=nn_ref - nn_cand,
        min_cosine=agreement["min_cosine"],
        mean_cosine=agreement["mean_cosine"],
        max_fpr95_loss_pp=max_fpr95_loss,
        passed=passed,
        forced=force and not passed,
    )
    if not passed and not force:
        raise Int8GateError(
            f"{label} refused by the accuracy gate: {result.summary()}. Try another "
            "calibration method or a larger calibration set, raise the limit with "
            "--max-fpr95-loss, or write it anyway with --force."
        )
    return result.to_dict()
