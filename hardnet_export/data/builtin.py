"""Built-in training patches: matching pairs cut from the photos that ship inside packages.

Twenty photos come with scikit-image, scikit-learn and matplotlib (no download at run time).
Every pair shows one *virtual 3D point*: a textured location in one photo, rendered twice
under independent random geometric and photometric change, the way two cameras would see it.
Labels are per-pair ids, so the result has the structure of Brown/PhotoTour data: a
:class:`~hardnet_export.data.types.PatchSet` with ``k >= 2`` patches per label.

Split by photo: :data:`HELDOUT_PHOTOS` (coffee, flower, gravel, coins: an object, a natural
scene, a texture and a set of small objects) never enter training; :func:`validation_pairs`
is cut from them only. The motorcycle stereo pair (see :mod:`hardnet_export.data.stereo`) is
in no list here at all.

Geometry. A patch is 32x32 pixels; at scale 1 its support is a 64x64 pixel neighbourhood of
the photo (2 photo pixels per patch pixel), like a Brown 64x64 patch resized to 32. Per pair:
a keypoint drawn with probability proportional to local texture (square root of the
structure tensor's smaller eigenvalue, so flat sky is rarely chosen), a common rotation
(uniform over the full circle) and a common scale (log-uniform in ``scale_range``). Per view
on top: rotation jitter, relative scale jitter, an affine tilt (foreshortening along a random
direction), a small projective term and a sub-pixel shift. Each view is rendered directly at
32x32 with ``cv2.warpPerspective`` through the composed patch-to-photo homography, from a
pre-blurred copy of the photo chosen so that downscaling does not alias (Gaussian with
``0.5 * sqrt(f**2 - 1)`` photo pixels for a local scale factor ``f``), which also gives the
optional blur augmentation for free.

Photometry per view: gamma, gain, bias and Gaussian noise, vectorised over the batch.

Determinism: :meth:`BuiltinPairs.batch` depends on ``(seed, split, index)`` only, so a trainer
resuming at step ``k`` (or worker ``w`` drawing every ``W``-th batch) gets exactly batch ``k``.

Speed: about 22,000 pairs per CPU-second in one process (batch 1024; 11-17k pairs/s wall on a
shared 2-core machine), so a few data-loader workers keep a GPU fed.
OpenCV SIFT on :func:`validation_pairs` (2000 pairs, seed 0; keypoint at the patch centre,
size 5.33 so its 4x4 grid spans the patch, angle 0): nearest-neighbour accuracy 78.7 %,
FPR95 6.7 % against as many random non-matching pairs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from hardnet_export.data.types import MatchedPairs, PatchSet
from hardnet_export.errors import InputError, InputTypeError
from hardnet_export.geometry import (
    PATCH_SIZE,
    PHOTO_BLURS,
    antialias_sigma,
    blur_level,
    blurred_copy,
    local_scale,
    patch_frame,
    render_patches,
    to_uint8,
)
from hardnet_export.host import require

#: Photo pixels covered by a patch at scale 1 (patch pixels are 2 photo pixels).
BASE_SUPPORT = 64.0

#: Every built-in photo, as ``name -> (package, loader key)``.
PHOTO_SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut"),
    "camera": ("skimage", "camera"),
    "coffee": ("skimage", "coffee"),
    "chelsea": ("skimage", "chelsea"),
    "rocket": ("skimage", "rocket"),
    "brick": ("skimage", "brick"),
    "grass": ("skimage", "grass"),
    "gravel": ("skimage", "gravel"),
    "hubble_deep_field": ("skimage", "hubble_deep_field"),
    "retina": ("skimage", "retina"),
    "coins": ("skimage", "coins"),
    "clock": ("skimage", "clock"),
    "moon": ("skimage", "moon"),
    "text": ("skimage", "text"),
    "page": ("skimage", "page"),
    "immunohistochemistry": ("skimage", "immunohistochemistry"),
    "cell": ("skimage", "cell"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}
#: Index of each photo in :data:`PHOTO_NAMES`; ``sources`` arrays hold these indices.
PHOTO_NAMES: tuple[str, ...] = tuple(PHOTO_SOURCES)
#: Never used for training; validation pairs come from these only.
HELDOUT_PHOTOS: tuple[str, ...] = ("coffee", "flower", "gravel", "coins")
TRAIN_PHOTOS: tuple[str, ...] = tuple(n for n in PHOTO_NAMES if n not in HELDOUT_PHOTOS)
SPLITS = ("train", "val")


def split_photos(split: str) -> tuple[str, ...]:
    """Photo names of a split: ``"train"`` or ``"val"`` (the held-out photos)."""
    if split == "train":
        return TRAIN_PHOTOS
    if split == "val":
        return HELDOUT_PHOTOS
    raise InputError(f"split must be one of {SPLITS}, got {split!r}")


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """One built-in photo as grayscale uint8, cached per process.

    Shape:
        - return: (H, W) uint8.
    """
    if name not in PHOTO_SOURCES:
        raise InputError(f"unknown built-in photo {name!r}; expected one of {PHOTO_NAMES}")
    package, key = PHOTO_SOURCES[name]
    require(f"the built-in photo {name!r}", package)
    if package == "skimage":
        import skimage.data

        image = getattr(skimage.data, key)()
    elif package == "sklearn":
        from sklearn.datasets import load_sample_image

        image = load_sample_image(key)
    else:
        import matplotlib.cbook
        import matplotlib.image

        path = matplotlib.cbook.get_sample_data(key, asfileobj=False)
        image = matplotlib.image.imread(str(path))
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        raise InputTypeError(f"photo {name!r} loaded as {image.dtype}, expected uint8")
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    return image


def texture_score(gray: np.ndarray) -> np.ndarray:
    """Per-pixel keypoint-likeness: square root of the structure tensor's smaller eigenvalue,
    smoothed a little. Flat regions score near zero, corners and texture high.

    Shape:
        - gray: (H, W) uint8.
        - return: (H, W) float32, >= 0.
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise InputError(f"texture_score needs (H, W) uint8, got {gray.shape} {gray.dtype}")
    eig = cv2.cornerMinEigenVal(gray.astype(np.float32), blockSize=5, ksize=3)
    score = np.sqrt(np.maximum(eig, 0.0))
    return cv2.GaussianBlur(score, (0, 0), 1.5)


@functools.cache
def _keypoint_cdf(name: str) -> np.ndarray:
    """Cumulative sampling distribution over the flat pixels of a photo, proportional to
    texture; capped at the 99.5th percentile so a few strong corners do not take all draws."""
    score = texture_score(load_photo(name)).ravel().astype(np.float64)
    score = np.minimum(score, np.percentile(score, 99.5))
    # A small floor keeps every pixel possible, so the sampler is never empty.
    score += 1e-3 * score.mean() + 1e-12
    cdf = np.cumsum(score)
    cdf /= cdf[-1]
    cdf.setflags(write=False)
    return cdf


@functools.cache
def _blurred(name: str, level: int) -> np.ndarray:
    """Photo ``name`` blurred with ``PHOTO_BLURS[level]`` (photo pixels)."""
    return blurred_copy(load_photo(name), level)


@dataclass(frozen=True)
class Augment:
    """Ranges of the random change between the views of a pair (defaults documented inline).

    Geometry is in normalised patch coordinates (the patch spans [-1, 1]); shifts in patch
    pixels; blur in patch pixels; gain/gamma ratios; bias and noise in grey levels.
    """

    scale_range: tuple[float, float] = (0.7, 1.4)  # common zoom of the pair, log-uniform
    common_rotation: bool = True  # rotate the pair as a whole by a uniform angle
    rotation_deg: float = 15.0  # per-view rotation jitter, +/- (detector orientation error)
    relative_scale: float = 1.15  # per-view zoom jitter, log-uniform in [1/x, x]
    tilt: float = 1.4  # per-view foreshortening factor, log-uniform in [1, x]
    perspective: float = 0.08  # per-view projective terms, uniform +/-
    shift_px: float = 1.0  # per-view sub-pixel shift, uniform +/- patch pixels
    gain: float = 1.3  # log-uniform in [1/x, x]
    bias: float = 20.0  # uniform +/- grey levels
    gamma: float = 1.4  # log-uniform in [1/x, x]
    blur_prob: float = 0.3  # chance a view is blurred ...
    blur_px: float = 1.0  # ... by a Gaussian of uniform [0, x] patch pixels
    noise: float = 4.0  # Gaussian noise std, uniform [0, x] grey levels
    parallax_prob: float = 0.0  # chance one view of a point shows a depth edge ...
    parallax_px: float = 8.0  # ... beyond which the background moved by uniform [1, x] px

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise InputError(f"scale_range must be 0 < lo <= hi, got {self.scale_range}")
        if self.parallax_px < 1.0:
            raise InputError(f"Augment.parallax_px must be >= 1, got {self.parallax_px}")
        for field in ("relative_scale", "tilt", "gain", "gamma"):
            if getattr(self, field) < 1.0:
                raise InputError(f"Augment.{field} is a ratio >= 1, got {getattr(self, field)}")
        for field in (
            "rotation_deg",
            "perspective",
            "shift_px",
            "bias",
            "blur_px",
            "noise",
        ):
            if getattr(self, field) < 0:
                raise InputError(f"Augment.{field} must be >= 0, got {getattr(self, field)}")
        for field in ("blur_prob", "parallax_prob"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise InputError(f"Augment.{field} must be in [0, 1], got {getattr(self, field)}")


def _log_uniform(rng: np.random.Generator, ratio: float, size: tuple[int, ...]) -> np.ndarray:
    return np.exp(rng.uniform(-np.log(ratio), np.log(ratio), size))


def view_homographies(
    rng: np.random.Generator, n_points: int, views: int, aug: Augment
) -> np.ndarray:
    """Random per-view homographies in normalised patch coordinates (see :class:`Augment`).

    Shape:
        - return: (n_points, views, 3, 3) float64.
    """
    lo, hi = np.log(aug.scale_range)
    scale = np.exp(rng.uniform(lo, hi, (n_points, 1)))
    base = rng.uniform(-np.pi, np.pi, (n_points, 1)) if aug.common_rotation else 0.0
    shape = (n_points, views)
    theta = base + np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg, shape))
    # Zoom > 1 means the point looks bigger, so the view covers less of the photo.
    zoom = scale * _log_uniform(rng, aug.relative_scale, shape)
    tilt = np.exp(rng.uniform(0.0, np.log(aug.tilt), shape))
    phi = rng.uniform(-np.pi, np.pi, shape)
    proj = rng.uniform(-aug.perspective, aug.perspective, (*shape, 2))
    shift = rng.uniform(-aug.shift_px, aug.shift_px, (*shape, 2)) / (PATCH_SIZE / 2.0)

    def rot(a: np.ndarray) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)

    # The photo seen through a tilted plane: stretched by `tilt` along direction phi.
    stretch = np.zeros((*shape, 2, 2))
    stretch[..., 0, 0] = tilt
    stretch[..., 1, 1] = 1.0
    affine = rot(theta) @ rot(phi) @ stretch @ rot(-phi) / zoom[..., None, None]
    h = np.zeros((*shape, 3, 3))
    h[..., :2, :2] = affine
    h[..., :2, 2] = shift
    h[..., 2, :2] = proj
    h[..., 2, 2] = 1.0
    return h


@functools.lru_cache(maxsize=1)
def _noise_table() -> np.ndarray:
    table = np.random.default_rng(20171705).standard_normal(1 << 20, dtype=np.float32)
    table.setflags(write=False)
    return table


def photometric(rng: np.random.Generator, patches: np.ndarray, aug: Augment) -> np.ndarray:
    """Random gamma, gain, bias and noise per patch, vectorised.

    Shape:
        - patches: (M, S, S) uint8.
        - return: (M, S, S) uint8.
    """
    m = len(patches)
    gamma = _log_uniform(rng, aug.gamma, (m, 1))
    gain = _log_uniform(rng, aug.gain, (m, 1))
    bias = rng.uniform(-aug.bias, aug.bias, (m, 1))
    sigma = rng.uniform(0.0, aug.noise, (m, 1, 1)).astype(np.float32)
    # Gamma, gain and bias act per grey level: one 256-entry table per patch is far cheaper
    # than a power over every pixel.
    lut = (np.power(np.arange(256) / 255.0, gamma) * (255.0 * gain) + bias).astype(np.float32)
    # +0.5 so that the final truncation rounds.
    lut += 0.5
    x = lut[np.arange(m)[:, None, None], patches]
    # Noise: windows at random offsets into one fixed table of normals; drawing fresh
    # normals for every pixel took a third of the whole batch time.
    start = rng.integers(0, len(_noise_table()) - patches[0].size, m)
    windows = np.lib.stride_tricks.sliding_window_view(_noise_table(), patches[0].size)
    noise = windows[start].reshape(patches.shape)
    noise *= sigma
    x += noise
    return to_uint8(x)


def parallax(
    rng: np.random.Generator,
    patches: np.ndarray,
    images: list[np.ndarray],
    image_index: np.ndarray,
    matrices: np.ndarray,
    views: int,
    aug: Augment,
) -> None:
    """A depth edge in one view of some points, in place: beyond a random straight line
    that misses the patch centre, that view shows the photo shifted by a few pixels, as a
    background at another depth moves against the foreground between two cameras.

    Homographies of a plane never do this, and real 3D scenes (stereo pairs, Brown's
    photo-tourism patches) do it all the time; SIFT's spatial pooling tolerates it.

    Shape:
        - patches: (n * views, 32, 32) uint8, point-major; changed in place.
        - image_index, matrices: per patch, as for :func:`render_patches`.
    """
    n = len(patches) // views
    hit = np.flatnonzero(rng.random(n) < aug.parallax_prob)
    if not len(hit):
        return
    which = hit * views + rng.integers(0, views, len(hit))
    normal = rng.uniform(-np.pi, np.pi, len(hit))
    offset = rng.uniform(0.2, 0.8, len(hit))  # of the half side: the centre stays foreground
    size = rng.uniform(1.0, aug.parallax_px, len(hit))
    direction = rng.uniform(-np.pi, np.pi, len(hit))
    shift = np.tile(np.eye(3), (len(hit), 1, 1))
    shift[:, 0, 2] = size * np.cos(direction)
    shift[:, 1, 2] = size * np.sin(direction)
    moved = render_patches(images, image_index[which], matrices[which] @ shift)
    c, r = (PATCH_SIZE - 1) / 2.0, PATCH_SIZE / 2.0
    u = (np.arange(PATCH_SIZE) - c) / r
    beyond = (
        np.cos(normal)[:, None, None] * u[None, None, :]
        + np.sin(normal)[:, None, None] * u[None, :, None]
    ) > offset[:, None, None]
    patches[which] = np.where(beyond, moved, patches[which])


@dataclass(frozen=True)
class PairDraw:
    """Patches of ``n`` virtual 3D points, ``k`` views each, with where they came from.

    Shape:
        - views: (n, k, 32, 32) uint8.
        - labels: (n,) int64 point ids.
        - sources: (n,) int64 index into :data:`PHOTO_NAMES`.
        - centres: (n, 2) float64 keypoint (x, y) in the photo.
        - matrices: (n, k, 3, 3) float64 patch-to-photo homography of each view.
    """

    views: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    centres: np.ndarray
    matrices: np.ndarray

    @property
    def anchors(self) -> np.ndarray:
        return self.views[:, 0]

    @property
    def positives(self) -> np.ndarray:
        return self.views[:, 1]


def _as_rng(rng_or_seed: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool):
        return np.random.default_rng(int(rng_or_seed))
    raise InputTypeError(f"expected a numpy Generator or an int seed, got {type(rng_or_seed)}")


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def drop_close(photo: np.ndarray, xy: np.ndarray, min_distance: float) -> np.ndarray:
    """Greedy thinning in the given order: keep a point unless an already kept point of the
    same photo is closer than ``min_distance``, so no two kept points show the same place.

    Shape:
        - photo: (M,) int photo of each point.
        - xy: (M, 2) float positions.
        - return: (M,) bool.
    """
    from scipy.spatial import cKDTree

    if min_distance <= 0 or len(xy) < 2:
        return np.ones(len(xy), bool)
    # Photos are pushed far apart along a third axis so only same-photo points can meet.
    pts = np.column_stack([xy, np.asarray(photo, np.float64) * 1e7])
    pairs = cKDTree(pts).query_pairs(min_distance, output_type="ndarray")
    return greedy_keep(len(xy), pairs)


def greedy_keep(n: int, pairs: np.ndarray) -> np.ndarray:
    """Greedy independent set in index order: keep point ``i`` unless a kept point ``j < i``
    conflicts with it.

    Shape:
        - pairs: (P, 2) int conflicting index pairs.
        - return: (n,) bool.
    """
    first, later = pairs.min(1), pairs.max(1)
    undecided, kept, dropped = 0, 1, 2
    state = np.zeros(n, np.int8)
    # Rounds of parallel decisions give the sequential greedy answer: a point is kept once no
    # earlier point that might still be kept is near it, dropped once a kept one is.
    while True:
        blocked = np.zeros(n, bool)
        live = (state[first] != dropped) & (state[later] == undecided)
        blocked[later[live]] = True
        state[(state == undecided) & ~blocked] = kept
        hit = (state[first] == kept) & (state[later] == undecided)
        state[later[hit]] = dropped
        if not (state == undecided).any():
            return state == kept


class BuiltinPairs:
    """Endless matching pairs of 32x32 patches from the built-in photos of one split.

    Picklable and holds no photos itself (each process loads and caches its own), so it can
    be handed to data-loader workers.

    Args:
        split: ``"train"`` (:data:`TRAIN_PHOTOS`) or ``"val"`` (:data:`HELDOUT_PHOTOS`).
        seed: base seed; batch ``k`` depends on ``(seed, split, k)`` only.
        augment: ranges of the change between views.
        min_distance: keypoints of one draw are at least this many photo pixels apart.
        photos_per_draw: draw every batch's points from only this many photos (chosen per
            batch, by the usual photo weights); None spreads them over all photos. Fewer
            photos put more points near each other, so the hardest negatives in a batch are
            often the neighbouring points of the same photo: what dense matching (many
            keypoints a few pixels apart in one image) has to tell apart.

    Example:
        >>> pairs = BuiltinPairs("train", seed=0)
        >>> anchors, positives, labels = pairs.batch(0, batch_size=256)
    """

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        augment: Augment | None = None,
        min_distance: float = 8.0,
        photos_per_draw: int | None = None,
    ) -> None:
        self.photos = split_photos(split)
        self.split = split
        self.seed = _check_count("seed", seed, minimum=0)
        self.augment = augment if augment is not None else Augment()
        if not isinstance(self.augment, Augment):
            raise InputTypeError(f"augment must be an Augment, got {type(self.augment).__name__}")
        if min_distance < 0:
            raise InputError(f"min_distance must be >= 0, got {min_distance}")
        self.min_distance = float(min_distance)
        if photos_per_draw is not None and not 1 <= photos_per_draw <= len(self.photos):
            raise InputError(
                f"photos_per_draw must be in 1..{len(self.photos)} (the {split} photos), "
                f"got {photos_per_draw}"
            )
        self.photos_per_draw = photos_per_draw
        self._photo_ids = np.array([PHOTO_NAMES.index(n) for n in self.photos])

    def _photo_weights(self) -> np.ndarray:
        # sqrt(area): big photos give more points, but retina (2 Mpx) does not drown text.
        area = np.array([load_photo(n).size for n in self.photos], np.float64)
        w = np.sqrt(area)
        return w / w.sum()

    def _keypoints(
        self, rng: np.random.Generator, n: int, exclusive: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` keypoints (photo index into self.photos, (x, y)), at least min_distance apart."""
        weights = self._photo_weights()
        if self.photos_per_draw is not None:
            chosen = rng.choice(len(weights), size=self.photos_per_draw, replace=False, p=weights)
            weights = np.where(np.isin(np.arange(len(weights)), chosen), weights, 0.0)
            weights /= weights.sum()
        photo_parts, xy_parts = [], []
        have = 0
        for _ in range(100):
            m = max(2 * (n - have), 16)
            photo = rng.choice(len(self.photos), size=m, p=weights)
            u = rng.random(m)
            jitter = rng.uniform(-0.5, 0.5, (m, 2))
            xy = np.empty((m, 2))
            for p in np.unique(photo):
                sel = photo == p
                name = self.photos[p]
                flat = np.searchsorted(_keypoint_cdf(name), u[sel], side="right")
                w = load_photo(name).shape[1]
                xy[sel, 0] = flat % w
                xy[sel, 1] = flat // w
            xy += jitter
            photo_parts.append(photo)
            xy_parts.append(xy)
            all_photo = np.concatenate(photo_parts)
            all_xy = np.concatenate(xy_parts)
            keep = drop_close(all_photo, all_xy, self.min_distance if exclusive else 0.0)
            have = int(keep.sum())
            if have >= n:
                idx = np.flatnonzero(keep)[:n]
                return all_photo[idx], all_xy[idx]
            photo_parts, xy_parts = [all_photo[keep]], [all_xy[keep]]
        raise InputError(
            f"cannot place {n} keypoints at least {self.min_distance} px apart in the "
            f"{self.split} photos"
            + ("" if self.photos_per_draw is None else f" ({self.photos_per_draw} per draw)")
            + "; ask for fewer, lower min_distance or raise photos_per_draw"
        )

    def draw(
        self, n_points: int, rng_or_seed: np.random.Generator | int, views: int = 2
    ) -> PairDraw:
        """``n_points`` virtual 3D points with ``views`` patches each, plus provenance.

        Labels are ``0 .. n_points - 1``.
        """
        n_points = _check_count("n_points", n_points)
        views = _check_count("views", views, minimum=2)
        rng = _as_rng(rng_or_seed)
        aug = self.augment
        photo, centres = self._keypoints(rng, n_points, exclusive=True)
        h = view_homographies(rng, n_points, views, aug)
        flat_photo = np.repeat(photo, views)
        mats = patch_frame(np.repeat(centres, views, axis=0), BASE_SUPPORT, h.reshape(-1, 3, 3))
        f = local_scale(mats)
        blur_px = np.where(
            rng.random(len(mats)) < aug.blur_prob, rng.uniform(0.0, aug.blur_px, len(mats)), 0.0
        )
        sigma = np.sqrt(antialias_sigma(mats) ** 2 + (blur_px * f) ** 2)
        level = blur_level(sigma)
        key = flat_photo * len(PHOTO_BLURS) + level
        uniq, image_index = np.unique(key, return_inverse=True)
        images = [
            _blurred(self.photos[k // len(PHOTO_BLURS)], int(k % len(PHOTO_BLURS)))
            for k in uniq.tolist()
        ]
        patches = render_patches(images, image_index.reshape(-1), mats)
        if aug.parallax_prob > 0:
            parallax(rng, patches, images, image_index.reshape(-1), mats, views, aug)
        patches = photometric(rng, patches, aug)
        return PairDraw(
            views=patches.reshape(n_points, views, PATCH_SIZE, PATCH_SIZE),
            labels=np.arange(n_points, dtype=np.int64),
            sources=self._photo_ids[photo].astype(np.int64),
            centres=centres,
            matrices=mats.reshape(n_points, views, 3, 3),
        )

    def sample(
        self, n_pairs: int, rng_or_seed: np.random.Generator | int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n_pairs`` matching pairs from distinct points.

        Shape:
            - return: anchors (n, 32, 32) uint8, positives (n, 32, 32) uint8, labels (n,) int64.
        """
        d = self.draw(n_pairs, rng_or_seed)
        return d.anchors, d.positives, d.labels

    def batch_rng(self, index: int) -> np.random.Generator:
        """The generator behind batch ``index``: a function of (seed, split, index) only."""
        index = _check_count("index", index, minimum=0)
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index])

    def batch(
        self, index: int, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch number ``index`` of the stream; labels ``index * batch_size + arange``
        are unique over the whole stream.

        Shape:
            - return: anchors (B, 32, 32) uint8, positives (B, 32, 32) uint8, labels (B,) int64.
        """
        batch_size = _check_count("batch_size", batch_size)
        anchors, positives, labels = self.sample(batch_size, self.batch_rng(index))
        return anchors, positives, labels + np.int64(index) * batch_size

    def batches(
        self, start: int = 0, stop: int | None = None, step: int = 1, batch_size: int = 1024
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Batches ``start, start + step, ...`` (endless when ``stop`` is None). A worker ``w``
        of ``W`` uses ``start=first + w, step=W``; together they see the same stream."""
        start = _check_count("start", start, minimum=0)
        step = _check_count("step", step)
        index = start
        while stop is None or index < stop:
            yield self.batch(index, batch_size)
            index += step

    def __repr__(self) -> str:
        per_draw = "" if self.photos_per_draw is None else f", per_draw={self.photos_per_draw}"
        return (
            f"BuiltinPairs(split={self.split!r}, seed={self.seed}, "
            f"photos={len(self.photos)}{per_draw})"
        )


def make_patchset(
    n_points: int, views_per_point: int = 2, split: str = "train", seed: int = 0
) -> PatchSet:
    """A fixed set: ``n_points`` distinct virtual points (at least 8 px apart), each with
    ``views_per_point`` patches, in the Brown layout (labels repeat per view).

    Shape:
        - return.patches: (n_points * views_per_point, 32, 32) uint8.
        - return.labels: (n_points * views_per_point,) int64.
    """
    d = BuiltinPairs(split, seed).draw(n_points, seed, views=views_per_point)
    return PatchSet(
        patches=d.views.reshape(-1, PATCH_SIZE, PATCH_SIZE),
        labels=np.repeat(d.labels, d.views.shape[1]),
        name=f"builtin-{split}-seed{seed}",
    )


def validation_pairs(n: int = 2000, seed: int = 0) -> MatchedPairs:
    """Matching pairs from the held-out photos only (:data:`HELDOUT_PHOTOS`); every pair is a
    different point, at least 8 photo pixels from any other.

    Shape:
        - return.anchors, return.positives: (n, 32, 32) uint8.
    """
    d = BuiltinPairs("val", seed).draw(n, seed)
    return MatchedPairs(
        anchors=np.ascontiguousarray(d.anchors),
        positives=np.ascontiguousarray(d.positives),
        name=f"builtin-val-seed{seed}",
    )
