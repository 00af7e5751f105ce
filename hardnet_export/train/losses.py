"""The HardNet loss: hardest-in-batch triplet margin, the paper's ablation variants, and the
distillation term that pulls a (smaller) student towards a teacher."""

from __future__ import annotations

import torch

from hardnet_export.errors import InputError
from hardnet_export.train.config import BATCH_REDUCTIONS, DISTILL_KINDS, LOSS_TYPES


def distance_matrix(anchor: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between all anchors and all positives, as the authors compute them.

    Shape:
        - anchor, positive: (N, D).
        - Output: (N, N), ``out[i, j] = |a_i - p_j|``.
    """
    d_sq = (
        (anchor * anchor).sum(1, keepdim=True)
        + (positive * positive).sum(1)[None, :]
        - 2.0 * anchor @ positive.t()
    )
    # Round-off can push d_sq of near-equal vectors slightly below zero; sqrt would give NaN.
    return torch.sqrt(d_sq.clamp(min=0.0) + 1e-6) + 1e-8


def hardnet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    *,
    margin: float = 1.0,
    anchor_swap: bool = True,
    batch_reduce: str = "min",
    loss_type: str = "triplet_margin",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """HardNet loss of a batch of matching pairs, each pair from a different 3D point.

    Args:
        anchor, positive: descriptors; row i of each shows the same 3D point.
        margin: triplet margin (and the contrastive margin).
        anchor_swap: also consider the anchors as negatives of each positive.
        batch_reduce: ``"min"`` (hardest in batch, HardNet), ``"average"`` (every
            non-matching entry is a negative) or ``"random"`` (one random column per row).
        loss_type: ``"triplet_margin"``, ``"softmax"`` (softmin over the two distances) or
            ``"contrastive"``.
        generator: random source for ``batch_reduce="random"``.

    Shape:
        - anchor, positive: (N, D) with N >= 2.
        - Output: scalar.
    """
    if batch_reduce not in BATCH_REDUCTIONS:
        raise InputError(f"batch_reduce must be one of {BATCH_REDUCTIONS}, got {batch_reduce!r}")
    if loss_type not in LOSS_TYPES:
        raise InputError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if anchor.ndim != 2 or anchor.shape != positive.shape:
        raise InputError(
            "anchor and positive must both be (N, D), got "
            f"{tuple(anchor.shape)} and {tuple(positive.shape)}"
        )
    n = anchor.shape[0]
    if n < 2:
        raise InputError(f"the loss needs at least 2 pairs to find a negative, got {n}")

    dist = distance_matrix(anchor, positive)
    pos = torch.diagonal(dist)
    eye = torch.eye(n, device=dist.device, dtype=dist.dtype)
    # The diagonal holds the positives; near-duplicates (< 0.008) are not negatives either.
    masked = dist + 10.0 * eye
    masked = masked + 10.0 * (masked < 0.008).to(dist.dtype)

    if batch_reduce == "min":
        neg = masked.min(dim=1).values
        if anchor_swap:
            neg = torch.minimum(neg, masked.min(dim=0).values)
    elif batch_reduce == "average":
        neg = torch.minimum(masked, masked.t()) if anchor_swap else masked
        neg = neg.reshape(-1)
        pos = pos.repeat_interleave(n)
    else:
        cols = torch.randperm(n, generator=generator).to(dist.device)
        rows = torch.arange(n, device=dist.device)
        neg = masked[rows, cols]
        if anchor_swap:
            neg = torch.minimum(neg, masked[cols, rows])

    if loss_type == "triplet_margin":
        loss = torch.clamp(margin + pos - neg, min=0.0)
    elif loss_type == "softmax":
        exp_pos = torch.exp(2.0 - pos)
        loss = -torch.log(exp_pos / (exp_pos + torch.exp(2.0 - neg) + 1e-8))
    else:
        loss = torch.clamp(margin - neg, min=0.0) + pos
    return loss.mean()


def distillation_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    teacher_anchor: torch.Tensor,
    teacher_positive: torch.Tensor,
    *,
    kind: str = "descriptors",
) -> torch.Tensor:
    """How far the student's descriptors of a batch are from the teacher's.

    Args:
        anchor, positive: the student's unit descriptors of the batch's pairs.
        teacher_anchor, teacher_positive: the teacher's of the same patches (no gradient
            needed).
        kind: ``"descriptors"``: the mean over all 2N patches of the squared L2 distance
            between the student's and the teacher's descriptor of the patch;
            ``"distances"``: the mean over the N x N entries of the squared difference
            between the student's and the teacher's anchor-positive distance matrices
            (:func:`distance_matrix`), which leaves the student free to rotate the space.

    Shape:
        - anchor, positive, teacher_anchor, teacher_positive: (N, 128), N >= 1 (the
          teacher's descriptor size must equal the student's).
        - Output: scalar.
    """
    if kind not in DISTILL_KINDS:
        raise InputError(f"distill kind must be one of {DISTILL_KINDS}, got {kind!r}")
    shapes = [tuple(t.shape) for t in (anchor, positive, teacher_anchor, teacher_positive)]
    if anchor.ndim != 2 or len(set(shapes)) != 1 or anchor.shape[0] < 1:
        raise InputError(
            "student and teacher descriptors must all be the same (N, D) with N >= 1, got "
            f"{', '.join(map(str, shapes))}"
        )
    if kind == "descriptors":
        student = torch.cat([anchor, positive])
        teacher = torch.cat([teacher_anchor, teacher_positive])
        return ((student - teacher) ** 2).sum(dim=1).mean()
    gap = distance_matrix(anchor, positive) - distance_matrix(teacher_anchor, teacher_positive)
    return (gap * gap).mean()
