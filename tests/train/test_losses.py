from __future__ import annotations

import math

import pytest
import torch

from hardnet_export.train.losses import distance_matrix, hardnet_loss

# 1-D descriptors keep the hand computation readable: D[i, j] = |a_i - p_j|.
#   D = [[1, 3, 6], [2, 0, 3], [9, 7, 4]], positives on the diagonal: [1, 0, 4].
A = torch.tensor([[0.0], [3.0], [10.0]], dtype=torch.float64)
P = torch.tensor([[1.0], [3.0], [6.0]], dtype=torch.float64)
POS1 = math.sqrt(1e-6) + 1e-8  # D[1, 1]: the epsilon inside the square root


def loss(**kwargs) -> float:
    return hardnet_loss(A, P, **kwargs).item()


def test_distance_matrix_with_epsilons() -> None:
    d = distance_matrix(A, P)
    expected = torch.tensor([[1, 3, 6], [2, 0, 3], [9, 7, 4]], dtype=torch.float64)
    expected = torch.sqrt(expected**2 + 1e-6) + 1e-8
    torch.testing.assert_close(d, expected)


def test_hardest_in_batch_triplet() -> None:
    # Row minima [3, 2, 7]; with anchor swap, column minima [2, 3, 3] -> negatives [2, 2, 3].
    assert loss(margin=1.0) == pytest.approx(2 / 3, abs=1e-5)
    assert loss(margin=3.0) == pytest.approx((2 + (1 + POS1) + 4) / 3, abs=1e-5)
    assert loss(margin=3.0, anchor_swap=False) == pytest.approx((1 + (1 + POS1) + 0) / 3, abs=1e-5)


def test_softmax_variant() -> None:
    # -log(e^(2-pos) / (e^(2-pos) + e^(2-neg))) = log(1 + e^(pos - neg)).
    expected = (math.log1p(math.exp(-1)) + math.log1p(math.exp(POS1 - 2)) + math.log1p(math.e)) / 3
    assert loss(loss_type="softmax") == pytest.approx(expected, abs=1e-5)


def test_contrastive_variant() -> None:
    # max(0, margin - neg) + pos with negatives [2, 2, 3].
    assert loss(loss_type="contrastive", margin=3.0) == pytest.approx(
        (2 + 1 + POS1 + 4) / 3, abs=1e-5
    )


def test_average_variant() -> None:
    # All 9 entries of min(D + 10 I, (D + 10 I)^T) are negatives of their row's positive:
    # row 0 (pos 1) [11, 2, 6]; row 1 (pos ~0) [2, 10, 3]; row 2 (pos 4) [6, 3, 14].
    expected = (2 + (1 + POS1) + POS1 + (1 + 4)) / 9
    assert loss(batch_reduce="average", margin=3.0) == pytest.approx(expected, abs=1e-5)


def test_random_variant_uses_one_column_per_row() -> None:
    perm = torch.randperm(3, generator=torch.Generator().manual_seed(5))
    masked = distance_matrix(A, P) + 10 * torch.eye(3, dtype=torch.float64)
    rows = torch.arange(3)
    neg = torch.minimum(masked[rows, perm], masked[perm, rows])
    expected = torch.clamp(3.0 + torch.diagonal(masked) - 10 - neg, min=0).mean().item()
    got = hardnet_loss(
        A, P, margin=3.0, batch_reduce="random", generator=torch.Generator().manual_seed(5)
    )
    assert got.item() == pytest.approx(expected, abs=1e-9)


def test_near_duplicates_are_never_negatives() -> None:
    # p1 lies 0.005 from a0: without the 0.008 mask it would be a0's hardest negative.
    a = torch.tensor([[0.0], [5.0]], dtype=torch.float64)
    p = torch.tensor([[0.5], [0.005]], dtype=torch.float64)
    # Row 0 then only has masked entries (>= 10), so its loss is 0; row 1: 1 + 4.995 - 4.5.
    got = hardnet_loss(a, p, anchor_swap=False).item()
    assert got == pytest.approx(1.495 / 2, abs=1e-5)


def test_gradient_is_correct_and_flows() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    p = torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    for loss_type in ("triplet_margin", "softmax", "contrastive"):
        assert torch.autograd.gradcheck(
            lambda x, y, t=loss_type: hardnet_loss(x, y, margin=3.0, loss_type=t), (a, p)
        )
    hardnet_loss(a, p, margin=3.0).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0 and torch.isfinite(a.grad).all()


def test_identical_descriptors_give_finite_gradient() -> None:
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=1).requires_grad_()
    hardnet_loss(a, a.detach().clone()).backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_reduce": "max"}, "batch_reduce must be one of"),
        ({"loss_type": "hinge"}, "loss_type must be one of"),
    ],
)
def test_unknown_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hardnet_loss(A, P, **kwargs)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="at least 2 pairs"):
        hardnet_loss(A[:1], P[:1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        hardnet_loss(A, P[:2])


@pytest.mark.gpu
def test_runs_on_cuda() -> None:
    got = hardnet_loss(A.cuda(), P.cuda(), margin=3.0)
    assert got.device.type == "cuda"
    assert got.item() == pytest.approx(loss(margin=3.0), abs=1e-6)
