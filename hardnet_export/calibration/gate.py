"""The INT8 accuracy gate: a quantised graph must match FP32 on held-out pairs.

INT8 engines that lose accuracy silently are a common failure of deployment tools; here the
loss is measured on matching pairs cut from photos that never entered training or
calibration (FPR95 and NN accuracy as :mod:`hardnet_export.evaluation.pairs` computes them),
and a graph that loses more than the limits (1 FPR95 percentage point, 2 points of NN
accuracy, a worst-patch cosine to FP32 under 0.98) is refused unless forced. The figures go
into the graph's metadata either way, with the semantics they were computed in (exact Q/DQ
or this host's kernels) and the host.

The worst-patch cosine is taken over patches with texture (:func:`textured`): a flat patch
(under one grey level of standard deviation: sky, a saturated wall) carries no signal; the
in-graph standardisation turns it into amplified rounding noise or all zeros, whose descriptor
in any precision matches nothing, and no keypoint detector fires there. Measured on the
shipped model: the only held-out patch below 0.98 in either INT8 flavour is a constant one
(std 0). Its cosine is still recorded (``min_cosine_all``), as is the count of flat patches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export.artifacts.describe import DescribeFn, describe_in_batches
from hardnet_export.artifacts.metadata import SEMANTICS, SEMANTICS_HOST
from hardnet_export.errors import InputError
from hardnet_export.evaluation.metrics import compare_descriptors
from hardnet_export.evaluation.pairs import pair_metrics

if TYPE_CHECKING:
    from hardnet_export.data.types import MatchedPairs

GATE_BATCH = 256
#: A patch whose grey levels vary by less than this standard deviation counts as flat.
FLAT_PATCH_STD = 1.0


def textured(patches: np.ndarray) -> np.ndarray:
    """Which patches have texture: a standard deviation of at least :data:`FLAT_PATCH_STD`
    grey levels (0..255 scale).

    Shape:
        - patches: (N, ...) any numeric dtype, one patch per row.
        - output: (N,) bool.
    """
    flat = np.asarray(patches).reshape(len(patches), -1).astype(np.float64)
    return np.asarray(flat.std(axis=1) >= FLAT_PATCH_STD)


def worst_cosine(reference: np.ndarray, candidate: np.ndarray, patches: np.ndarray) -> float:
    """The lowest cosine between ``reference`` and ``candidate`` descriptors over the
    textured ``patches`` (all of them when none is textured).

    Shape:
        - reference, candidate: (N, D) float.
        - patches: (N, ...) the patches they describe.
    """
    keep = textured(patches)
    if not keep.any():
        keep[:] = True
    ref, cand = np.asarray(reference, np.float64)[keep], np.asarray(candidate, np.float64)[keep]
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    return float(((ref * cand).sum(axis=1) / np.maximum(norms, 1e-12)).min())


class Int8GateError(InputError):
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
    max_nn_accuracy_loss_pp: float
    passed: bool
    forced: bool
    min_cosine_limit: float = -1.0
    nn_agreement: float = float("nan")
    semantics: str = SEMANTICS_HOST
    #: Over every patch, flat ones included (``min_cosine`` is over textured patches).
    min_cosine_all: float = float("nan")
    flat_patches: int = 0
    host: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failures(self) -> list[str]:
        """The limits this result exceeds, one phrase each (empty when it passed)."""
        found = []
        if self.fpr95_loss_pp > self.max_fpr95_loss_pp:
            found.append(
                f"FPR95 rose by {self.fpr95_loss_pp:.2f} pp (limit {self.max_fpr95_loss_pp:g})"
            )
        if self.nn_accuracy_loss_pp > self.max_nn_accuracy_loss_pp:
            found.append(
                f"NN accuracy fell by {self.nn_accuracy_loss_pp:.2f} points "
                f"(limit {self.max_nn_accuracy_loss_pp:g})"
            )
        if not self.min_cosine >= self.min_cosine_limit:
            found.append(
                f"the worst patch's cosine to FP32 is {self.min_cosine:.4f} "
                f"(limit {self.min_cosine_limit:g})"
            )
        return found

    def summary(self) -> str:
        verdict = "passed" if self.passed else ("FAILED (forced)" if self.forced else "FAILED")
        return (
            f"INT8 gate {verdict} ({self.semantics}) on {self.pairs} held-out pairs: FPR95 "
            f"{self.fpr95_reference:.2f}% -> {self.fpr95_candidate:.2f}% "
            f"({self.fpr95_loss_pp:+.2f} pp, limit {self.max_fpr95_loss_pp:g}), NN accuracy "
            f"{self.nn_accuracy_reference:.2f}% -> {self.nn_accuracy_candidate:.2f}% "
            f"({-self.nn_accuracy_loss_pp:+.2f} pp, limit {self.max_nn_accuracy_loss_pp:g}), "
            f"cosine min {self.min_cosine:.4f} mean {self.mean_cosine:.4f}{self._flat_note()}"
        )

    def _flat_note(self) -> str:
        if not self.flat_patches:
            return ""
        return (
            f" (min over textured patches; {self.flat_patches} flat, min over all "
            f"{self.min_cosine_all:.4f})"
        )


def evaluate_gate(
    reference: DescribeFn,
    candidate: DescribeFn,
    pairs: MatchedPairs,
    *,
    max_fpr95_loss: float = 1.0,
    max_nn_accuracy_loss: float = 2.0,
    min_cosine: float = -1.0,
    force: bool = False,
    label: str = "INT8",
    semantics: str = SEMANTICS_HOST,
) -> dict[str, Any]:
    """Compare ``candidate`` with ``reference`` on ``pairs``; the result as a JSON-ready dict.

    ``semantics`` says how ``candidate`` computes (``exact-qdq`` or ``host-kernels``); it is
    recorded with this host's CPU and int8 kernel kind.

    Raises:
        Int8GateError: FPR95 rises by more than ``max_fpr95_loss`` percentage points, NN
            accuracy falls by more than ``max_nn_accuracy_loss`` points, or the worst
            patch's cosine to the reference is below ``min_cosine``, and ``force`` is False;
            the message gives the figures and how to proceed. NN accuracy guards against
            collapsed descriptors: equal distances everywhere tie, and a tie-blind FPR95 can
            then read as perfect.
    """
    from hardnet_export.host import host_record

    if semantics not in SEMANTICS:
        raise InputError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
    patches = np.concatenate([pairs.anchors, pairs.positives])[:, None]
    n = len(pairs)
    ref = describe_in_batches(reference, patches, GATE_BATCH)
    cand = describe_in_batches(candidate, patches, GATE_BATCH)
    if not np.isfinite(cand).all():
        cand = np.nan_to_num(cand, nan=0.0, posinf=0.0, neginf=0.0)
    # The evaluation stage's protocol, so gate and `hardnet-export eval` figures agree.
    reference_metrics = pair_metrics(ref[:n], ref[n:])
    candidate_metrics = pair_metrics(cand[:n], cand[n:])
    fpr_ref, nn_ref = 100 * reference_metrics["fpr95"], 100 * reference_metrics["nn_accuracy"]
    fpr_cand, nn_cand = 100 * candidate_metrics["fpr95"], 100 * candidate_metrics["nn_accuracy"]
    agreement = compare_descriptors(ref, cand)
    result = GateResult(
        pairs=n,
        source=pairs.name,
        fpr95_reference=fpr_ref,
        fpr95_candidate=fpr_cand,
        fpr95_loss_pp=fpr_cand - fpr_ref,
        nn_accuracy_reference=nn_ref,
        nn_accuracy_candidate=nn_cand,
        nn_accuracy_loss_pp=nn_ref - nn_cand,
        min_cosine=worst_cosine(ref, cand, patches),
        mean_cosine=agreement["mean_cosine"],
        max_fpr95_loss_pp=max_fpr95_loss,
        max_nn_accuracy_loss_pp=max_nn_accuracy_loss,
        passed=False,
        forced=False,
        min_cosine_limit=min_cosine,
        nn_agreement=agreement["nn_agreement"],
        semantics=semantics,
        host=host_record(),
        min_cosine_all=agreement["min_cosine"],
        flat_patches=int((~textured(patches)).sum()),
    )
    passed = not result.failures()
    result = replace(result, passed=passed, forced=force and not passed)
    if not passed and not force:
        raise Int8GateError(
            f"{label} refused by the accuracy gate: {'; '.join(result.failures())}. "
            f"{result.summary()}. Keep more layers float (--keep-float conv0,conv1 or "
            "--float-budget 0.5; see --sensitivity), try another calibration method or a "
            "larger calibration set, relax the limits (--max-fpr95-loss, --max-nn-loss, "
            "--min-cosine), or write it anyway with --force."
        )
    return result.to_dict()
