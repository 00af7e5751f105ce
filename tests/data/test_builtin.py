"""Built-in pairs: split by photo, determinism by (seed, batch index), geometry, errors."""

from __future__ import annotations

import dataclasses
import pickle

import cv2
import numpy as np
import pytest

from hardnet_export.data.builtin import (
    HELDOUT_PHOTOS,
    PHOTO_NAMES,
    TRAIN_PHOTOS,
    Augment,
    BuiltinPairs,
    drop_close,
    load_photo,
    make_patchset,
    split_photos,
    validation_pairs,
)
from hardnet_export.data.types import MatchedPairs, PatchSet

STILL = Augment(
    scale_range=(1.0, 1.0),
    common_rotation=False,
    rotation_deg=0.0,
    relative_scale=1.0,
    tilt=1.0,
    perspective=0.0,
    shift_px=0.0,
    gain=1.0,
    bias=0.0,
    gamma=1.0,
    blur_prob=0.0,
    noise=0.0,
)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-9)


def test_split_is_by_photo_and_excludes_the_stereo_pair() -> None:
    assert set(TRAIN_PHOTOS) | set(HELDOUT_PHOTOS) == set(PHOTO_NAMES)
    assert not set(TRAIN_PHOTOS) & set(HELDOUT_PHOTOS)
    assert len(HELDOUT_PHOTOS) >= 3
    assert split_photos("train") == TRAIN_PHOTOS
    assert split_photos("val") == HELDOUT_PHOTOS
    assert not [n for n in PHOTO_NAMES if "motorcycle" in n or "stereo" in n]


@pytest.mark.parametrize("name", ["camera", "china", "grace_hopper", "coffee"])
def test_photos_load_as_grayscale_uint8(name: str) -> None:
    photo = load_photo(name)
    assert photo.ndim == 2 and photo.dtype == np.uint8 and min(photo.shape) > 100
    assert load_photo(name) is photo  # cached in-process


def test_batch_shapes_and_labels() -> None:
    anchors, positives, labels = BuiltinPairs("train", seed=0).batch(3, batch_size=64)
    assert anchors.shape == positives.shape == (64, 32, 32)
    assert anchors.dtype == positives.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, 3 * 64 + np.arange(64))


def test_same_seed_same_batch_and_different_seed_differs() -> None:
    a = BuiltinPairs("train", seed=1).batch(0, 32)
    b = BuiltinPairs("train", seed=1).batch(0, 32)
    c = BuiltinPairs("train", seed=2).batch(0, 32)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], BuiltinPairs("train", seed=1).batch(1, 32)[0])


def test_batch_k_does_not_depend_on_earlier_draws() -> None:
    fresh = BuiltinPairs("train", seed=7).batch(5, 16)
    used = BuiltinPairs("train", seed=7)
    for _ in used.batches(start=0, stop=3, batch_size=16):
        pass
    used.sample(10, 123)
    for x, y in zip(fresh, used.batch(5, 16), strict=True):
        np.testing.assert_array_equal(x, y)
    # A worker striding over the stream sees exactly the batches of those indices.
    strided = list(BuiltinPairs("train", seed=7).batches(start=1, stop=7, step=2, batch_size=16))
    assert [int(b[2][0]) // 16 for b in strided] == [1, 3, 5]
    np.testing.assert_array_equal(strided[2][0], fresh[0])


def test_pickled_sampler_gives_the_same_batches() -> None:
    pairs = BuiltinPairs("train", seed=3)
    clone = pickle.loads(pickle.dumps(pairs))
    np.testing.assert_array_equal(clone.batch(2, 8)[1], pairs.batch(2, 8)[1])


def test_training_draws_only_training_photos_and_validation_only_held_out() -> None:
    train_ids = {PHOTO_NAMES.index(n) for n in TRAIN_PHOTOS}
    held_ids = {PHOTO_NAMES.index(n) for n in HELDOUT_PHOTOS}
    train = BuiltinPairs("train", seed=0).draw(400, 0)
    val = BuiltinPairs("val", seed=0).draw(200, 0)
    assert set(train.sources.tolist()) <= train_ids
    assert len(set(train.sources.tolist())) > len(train_ids) // 2
    assert set(val.sources.tolist()) <= held_ids


def _nearest_same_photo(d) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Per point, the distance to the nearest other point of the same photo."""
    out = []
    for s in np.unique(d.sources):
        xy = d.centres[d.sources == s]
        if len(xy) > 1:
            dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
            out.append(dist.min(axis=1))
    return np.concatenate(out)


def test_photos_per_draw_keeps_each_batch_to_that_many_photos() -> None:
    pairs = BuiltinPairs("train", seed=0, photos_per_draw=2)
    chosen = [set(pairs.draw(256, k).sources.tolist()) for k in range(6)]
    assert all(len(c) == 2 for c in chosen)
    assert len(set().union(*chosen)) > 2  # a different pair of photos per draw
    dense = _nearest_same_photo(pairs.draw(256, 0))
    spread = _nearest_same_photo(BuiltinPairs("train", seed=0).draw(256, 0))
    assert dense.min() > 8.0  # still apart ...
    assert dense.mean() < 0.6 * spread.mean()  # ... but neighbours now
    with pytest.raises(ValueError, match="photos_per_draw must be in 1..16"):
        BuiltinPairs("train", photos_per_draw=0)


def test_points_of_one_draw_are_apart() -> None:
    d = BuiltinPairs("val", seed=0).draw(300, 5)
    for s in np.unique(d.sources):
        xy = d.centres[d.sources == s]
        dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
        assert dist.min() > 8.0


def test_views_match_and_differ_from_other_points() -> None:
    d = BuiltinPairs("train", seed=0).draw(300, 11)
    same = np.median(_corr(d.anchors, d.positives))
    other = np.median(_corr(d.anchors, np.roll(d.positives, 1, axis=0)))
    assert same > 0.3 and same > other + 0.3
    # Texture-weighted keypoints: most patches are not flat.
    assert (d.views.reshape(300, 2, -1).std(-1) > 5).mean() > 0.7


def test_without_change_both_views_are_the_photo_around_the_keypoint() -> None:
    d = BuiltinPairs("train", seed=0, augment=STILL).draw(50, 4)
    np.testing.assert_array_equal(d.anchors, d.positives)
    # At scale 1 a patch is the 64x64 neighbourhood of the keypoint at half resolution.
    found = []
    for view, src, (x, y) in zip(d.anchors, d.sources, d.centres, strict=True):
        photo = load_photo(PHOTO_NAMES[src])
        x0, y0 = int(round(x + 0.5)) - 32, int(round(y + 0.5)) - 32
        if x0 < 0 or y0 < 0 or x0 + 64 > photo.shape[1] or y0 + 64 > photo.shape[0]:
            continue
        crop = cv2.resize(photo[y0 : y0 + 64, x0 : x0 + 64], (32, 32), interpolation=cv2.INTER_AREA)
        found.append(_corr(view[None], crop[None])[0])
    assert len(found) > 20 and np.median(found) > 0.9


def test_parallax_moves_only_the_far_side_of_a_line_in_one_view() -> None:
    edge = dataclasses.replace(STILL, parallax_prob=1.0, parallax_px=6.0)
    d = BuiltinPairs("train", seed=0, augment=edge).draw(200, 4)
    changed = d.anchors != d.positives
    # Every point has a depth edge in one view; the centre (inside 0.2 of the half side)
    # is always foreground, so it is the same in both views.
    assert changed.reshape(200, -1).any(axis=1).mean() > 0.9
    assert not changed[:, 14:18, 14:18].any()
    # A line at least 0.2 half-sides from the centre cuts off less than half the patch.
    assert changed.sum(axis=(1, 2)).max() < 32 * 32 // 2
    # The same seed without parallax gives the photo itself in both views.
    plain = BuiltinPairs("train", seed=0, augment=STILL).draw(200, 4)
    np.testing.assert_array_equal(plain.anchors, plain.positives)
    with pytest.raises(ValueError, match="parallax_prob"):
        Augment(parallax_prob=1.5)
    with pytest.raises(ValueError, match="parallax_px"):
        Augment(parallax_px=0.5)


def test_make_patchset_has_the_brown_layout() -> None:
    ps = make_patchset(20, views_per_point=3, split="val", seed=2)
    assert isinstance(ps, PatchSet)
    assert ps.patches.shape == (60, 32, 32) and ps.patches.dtype == np.uint8
    np.testing.assert_array_equal(ps.labels, np.repeat(np.arange(20), 3))
    np.testing.assert_array_equal(make_patchset(20, 3, "val", 2).patches, ps.patches)


def test_validation_pairs_are_matched_pairs_from_held_out_photos() -> None:
    mp = validation_pairs(64, seed=1)
    assert isinstance(mp, MatchedPairs) and len(mp) == 64
    np.testing.assert_array_equal(mp.positives, validation_pairs(64, seed=1).positives)
    assert not np.array_equal(mp.anchors, validation_pairs(64, seed=2).anchors)


def test_drop_close_is_the_sequential_greedy_thinning() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 60, (400, 2))
    photo = rng.integers(0, 2, 400)
    kept: list[int] = []
    for i in range(len(xy)):
        near = [j for j in kept if photo[j] == photo[i] and np.hypot(*(xy[i] - xy[j])) <= 8]
        if not near:
            kept.append(i)
    np.testing.assert_array_equal(np.flatnonzero(drop_close(photo, xy, 8.0)), kept)


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="split"):
        BuiltinPairs("test")
    pairs = BuiltinPairs("val")
    with pytest.raises(ValueError, match="batch_size"):
        pairs.batch(0, batch_size=0)
    with pytest.raises(ValueError, match="index"):
        pairs.batch(-1)
    with pytest.raises(ValueError, match="views"):
        pairs.draw(4, 0, views=1)
    with pytest.raises(TypeError, match="Generator"):
        pairs.sample(4, "seed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n_points"):
        pairs.draw(2.5, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gain"):
        Augment(gain=0.5)
    with pytest.raises(ValueError, match="scale_range"):
        Augment(scale_range=(1.4, 0.7))
    with pytest.raises(ValueError, match="unknown built-in photo"):
        load_photo("motorcycle")
    with pytest.raises(ValueError, match="cannot place"):
        BuiltinPairs("val", min_distance=200.0).draw(500, 0)
