"""The INT8 accuracy gate: a quantised graph must match FP32 on held-out pairs.

INT8 engines that lose accuracy silently are a common failure of deployment tools; here the
loss is measured on matching pairs cut from photos that never entered training or
calibration (FPR95 and NN accuracy as :mod:`hardnet_export.evaluation.pairs` computes them),
and a graph that loses more than the limits (1 FPR95 percentage point, 2 points of NN
accuracy, a worst-patch cosine to FP32 under 0.98) is refused unless forced. The figures go
into the graph's metadata either way, with the semantics they were computed in (exact Q/DQ
or this host's kernels) and the host.

The worst-patch cosine is taken over patches a keypoint detector would describe
(:func:`textured`): a near-flat patch (sky, a saturated wall, a smooth gradient) carries
little signal; the in-graph standardisation amplifies its few grey levels of variation (or
its rounding noise) to unit variance, so any change of arithmetic moves its descriptor most,
and no keypoint detector fires there. Measured: of the 17,617 patches at OpenCV SIFT
keypoints in all 20 built-in photos (2000 per photo at most, the default support region),
the least textured has a standard deviation of 3.5 grey levels (on the moon; every other
photo's least is 4.2 or more), so patches under :data:`FLAT_PATCH_STD` = 3.5 are left out
of the worst cosine (``tests/calibration/test_gate.py`` measures it again). They bite: the
shipped model's FP32 graph in OpenVINO's bf16 has its worst held-out cosine, 0.972, on a
patch of std 2.95, and its next worst below 0.99 on one of 2.73, while its worst over
textured patches is 0.994. Their cosine is still recorded (``min_cosine_all``), as is the
count of flat patches.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from hardnet_export.artifacts.describe import DescribeFn, describe_in_batches
from hardnet_export.artifacts.quantisation import (
    DEFAULT_MAX_FPR95_LOSS,
    DEFAULT_MAX_NN_ACCURACY_LOSS,
    SEMANTICS,
    SEMANTICS_HOST,
    GateResult,
)
from hardnet_export.errors import InputError, Remedy, parameters
from hardnet_export.evaluation.metrics import compare_descriptors
from hardnet_export.evaluation.pairs import pair_metrics

if TYPE_CHECKING:
    from hardnet_export.data.types import MatchedPairs

# GateResult lives in the floor (the runtime and check read it); it is this module's result.
__all__ = ["GateResult", "Int8GateError", "evaluate_gate", "textured", "worst_cosine"]

GATE_BATCH = 256
#: A patch whose grey levels vary by less than this standard deviation counts as flat: no
#: patch at an OpenCV SIFT keypoint of the built-in photos varies less (see the docstring).
FLAT_PATCH_STD = 3.5


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


#: The ways past a refusal, as :class:`~hardnet_export.export.int8.Int8Options` fields.
GATE_REMEDIES = {
    "keep_float": Remedy({"keep_float": ("conv0", "conv1")}),
    "float_budget": Remedy({"float_budget": 0.5}),
    "sensitivity": Remedy({"sensitivity": True}),
    **parameters("max_fpr95_loss", "max_nn_accuracy_loss", "min_cosine"),
    "force": Remedy({"force": True}),
}


class Int8GateError(InputError):
    """The quantised graph lost more accuracy than the gate allows."""


def evaluate_gate(
    reference: DescribeFn,
    candidate: DescribeFn,
    pairs: MatchedPairs,
    *,
    max_fpr95_loss: float = DEFAULT_MAX_FPR95_LOSS,
    max_nn_accuracy_loss: float = DEFAULT_MAX_NN_ACCURACY_LOSS,
    min_cosine: float = -1.0,
    force: bool = False,
    label: str = "INT8",
    semantics: str = SEMANTICS_HOST,
) -> GateResult:
    """Compare ``candidate`` with ``reference`` on ``pairs``.

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
            f"{result.summary()}. Keep more layers float ({{keep_float}} or {{float_budget}}; "
            "see {sensitivity}), try another calibration method or a larger calibration set, "
            "relax the limits ({max_fpr95_loss}, {max_nn_accuracy_loss}, {min_cosine}), or "
            "write it anyway with {force}.",
            remedies=GATE_REMEDIES,
        )
    return result
