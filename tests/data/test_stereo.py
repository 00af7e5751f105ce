"""Motorcycle stereo pairs: ground-truth correspondences, occlusions, jitter, errors."""

from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.data.stereo import (
    HARD_JITTER,
    _blurred_view,
    load_motorcycle,
    occlusion_mask,
    stereo_pairs,
    stereo_points,
    visible_mask,
)
from hardnet_export.data.types import MatchedPairs
from hardnet_export.geometry import antialias_sigma, blur_level, patch_frame, render_patches


def _centre_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a[:, 8:24, 8:24].reshape(len(a), -1).astype(np.float64)
    b = b[:, 8:24, 8:24].reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-9)


def test_motorcycle_loads_as_grayscale_with_disparity() -> None:
    left, right, disparity = load_motorcycle()
    assert left.shape == right.shape == disparity.shape == (500, 741)
    assert left.dtype == right.dtype == np.uint8 and disparity.dtype == np.float32
    assert np.isinf(disparity).any()


def test_occlusion_mask_on_a_hand_made_row() -> None:
    inf = np.inf
    # x=5 (d=3) and x=6 (d=1) both land on column 2..5: x=5 -> 2, x=6 -> 5; x=4 (d=2) -> 2
    # collides with x=5, which is nearer by 1 exactly (kept: not below max - 1); x=3 (d=0.5)
    # -> 2 (round half to even) is 2.5 behind x=5 and hidden.
    d = np.array([[inf, inf, inf, 0.5, 2.0, 3.0, 1.0, inf]], np.float32)
    occ = occlusion_mask(d)
    np.testing.assert_array_equal(occ[0], [0, 0, 0, 1, 0, 0, 0, 0])
    vis = visible_mask(d)
    np.testing.assert_array_equal(vis[0], [0, 0, 0, 0, 1, 1, 1, 0])


def test_occlusion_removes_a_few_percent_of_valid_pixels() -> None:
    disparity = load_motorcycle()[2]
    occ = occlusion_mask(disparity)
    assert not occ[~np.isfinite(disparity)].any()
    frac = occ.sum() / np.isfinite(disparity).sum()
    assert 0.03 < frac < 0.10


def test_points_follow_the_disparity_and_are_apart() -> None:
    disparity = load_motorcycle()[2]
    left, right = stereo_points(300, seed=0)
    x, y = left[:, 0].astype(int), left[:, 1].astype(int)
    np.testing.assert_array_equal(left, np.rint(left))
    np.testing.assert_allclose(right[:, 0], left[:, 0] - disparity[y, x])
    np.testing.assert_array_equal(right[:, 1], left[:, 1])
    assert visible_mask(disparity)[y, x].all()
    for pts in (left, right):
        dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 1e9
        assert dist.min() > 8.0
        assert (pts >= 32).all() and (pts[:, 0] <= 740 - 32).all() and (pts[:, 1] <= 499 - 32).all()
    again, _ = stereo_points(300, seed=0)
    other, _ = stereo_points(300, seed=1)
    np.testing.assert_array_equal(again, left)
    assert not np.array_equal(other, left)


def test_pairs_show_the_same_place_and_a_shifted_cut_does_not() -> None:
    mp = stereo_pairs(200, seed=0)
    assert isinstance(mp, MatchedPairs) and len(mp) == 200
    matched = _centre_corr(mp.anchors, mp.positives)
    # The same right-image cut, 6 px off the true match along the row.
    _, right = stereo_points(200, seed=0)
    mats = patch_frame(right + [6.0, 0.0], 64.0)
    levels = blur_level(antialias_sigma(mats))
    assert (levels == levels[0]).all()
    shifted = render_patches([_blurred_view(1, int(levels[0]))], np.zeros(200, int), mats)
    off = _centre_corr(mp.anchors, shifted)
    assert np.median(matched) > 0.8
    assert np.median(matched) > np.median(off) + 0.3
    assert np.median(_centre_corr(mp.anchors, np.roll(mp.positives, 1, 0))) < 0.2


def test_jitter_is_harder_but_still_matching_and_deterministic() -> None:
    easy = stereo_pairs(200, seed=0)
    hard = stereo_pairs(200, seed=0, jitter=HARD_JITTER)
    assert "jitter" in hard.name
    h = np.median(_centre_corr(hard.anchors, hard.positives))
    assert 0.3 < h < np.median(_centre_corr(easy.anchors, easy.positives))
    np.testing.assert_array_equal(
        hard.positives, stereo_pairs(200, seed=0, jitter=HARD_JITTER).positives
    )


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="n must be"):
        stereo_pairs(0)
    with pytest.raises(ValueError, match="jitter"):
        stereo_pairs(10, jitter=(10.0, 0.5))
    with pytest.raises(ValueError, match="support"):
        stereo_pairs(10, support=0.0)
    with pytest.raises(ValueError, match="holds only"):
        stereo_points(1000, margin=240.0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        occlusion_mask(np.zeros(5, np.float32))
    with pytest.raises(TypeError, match="floating"):
        occlusion_mask(np.zeros((5, 5), np.int32))
