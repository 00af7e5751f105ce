"""Keypoint detection (OpenCV's detectors and COLMAP's SIFT), and keypoints as plain arrays.

Keypoints follow OpenCV's convention everywhere in the project: the first pixel's centre is
at (0, 0), ``size`` is the diameter of the meaningful neighbourhood and ``angle`` is in
degrees, turning from +x towards +y in image coordinates (y down); -1 means none.

COLMAP writes a keypoint as an affine frame ``(x, y, a11, a12, a21, a22)``: the first
pixel's centre at (0.5, 0.5), and the columns ``(a11, a21)`` and ``(a12, a22)`` the images
of the frame's x and y axes, so ``scale = |(a11, a21)|`` and ``orientation =
atan2(a21, a11)`` in radians. :func:`frames_to_keypoints` and :func:`keypoints_to_frames`
convert between the two; checked against OpenCV's own SIFT on the same images
(``tests/applications/test_colmap_detector.py``): OpenCV's ``size`` is twice COLMAP's scale
and both angles turn the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hardnet_export.errors import InputError, MissingDependencyError
from hardnet_export.geometry import as_gray
from hardnet_export.validate import check_int

DETECTORS = ("sift", "orb", "fast", "colmap-sift")
#: The most keypoints kept per image.
MAX_KEYPOINTS = 1_000_000
#: COLMAP's pixel centre minus OpenCV's.
COLMAP_PIXEL_CENTRE = 0.5
#: OpenCV SIFT's ``KeyPoint.size`` over COLMAP SIFT's frame scale at the same blob.
SIZE_PER_SCALE = 2.0


@dataclass(frozen=True)
class Support:
    """The side, in image pixels, of the square a detector's keypoint is described from:
    ``max(per_size * size, min_px)``, whatever magnification the describer was exported with.

    Attributes:
        per_size: side per unit of ``KeyPoint.size``.
        min_px: the smallest side, for keypoints so small that ``per_size * size`` would
            stretch a few pixels over the whole patch.
    """

    per_size: float
    min_px: float


#: Detectors whose keypoints are described from their own support; any other is described
#: from the describer's ``magnification * size``. ``colmap-sift``: half the describer's 12 and
#: at least 24 pixels. COLMAP's upsampled first octave gives most keypoints a size of 2-4
#: pixels. On the six training photos' warped pairs (budget 2000, COLMAP's verification,
#: seeded RANSAC) this support verified 3 % more correct inliers than 12 x size (9,310 vs
#: 9,025; more on 11 of 12 pairs); chosen there, confirmed on the held-out pairs
#: (``benchmarks/colmap_inliers.py``, ``docs/sfm.md``). Training never used a keypoint size
#: (its patches cut a 64-pixel support with scale jitter): this is the detector's convention,
#: not the model's.
SUPPORTS: dict[str, Support] = {"colmap-sift": Support(per_size=6.0, min_px=24.0)}


def support_keypoints(keypoints: np.ndarray, detector: str, magnification: float) -> np.ndarray:
    """Keypoints sized so that a describer cutting ``magnification * size`` pixels cuts the
    detector's :data:`SUPPORTS` square; a copy of ``keypoints`` for a detector without one.
    Only the patches change: the keypoints written out keep the detector's sizes.

    Shape:
        - keypoints: (K, 4) x, y, size, angle (OpenCV).
        - Output: (K, 4) float64.
    """
    k = _check_columns(keypoints, 4, "keypoints").copy()
    rule = SUPPORTS.get(detector)
    if rule is not None:
        k[:, 2] = np.maximum(rule.per_size * k[:, 2], rule.min_px) / magnification
    return k


def detect_keypoints(
    image: np.ndarray, *, detector: str = "sift", max_keypoints: int | None = 2000
) -> list[cv2.KeyPoint]:
    """Detect keypoints, strongest first, at most ``max_keypoints`` (None: all).

    ``sift`` and ``orb`` give a size and an orientation; ``fast`` gives corners of size 7
    without orientation (angle -1), so their patches are upright. ``colmap-sift`` is
    COLMAP's own SIFT (pycolmap, ``sfm`` extra) with COLMAP's defaults, the frames that
    ``colmap --descriptor sift`` matches: ``max_keypoints`` is COLMAP's
    ``max_num_features``, which counts locations (the larger scales kept) before each gets
    up to two orientations, so up to twice as many keypoints come back, in COLMAP's order
    and with response 1 (COLMAP reports none).

    Raises:
        ValueError: an unknown detector or a non-positive ``max_keypoints``.
        RuntimeError: ``colmap-sift`` without pycolmap.

    Shape:
        - image: (H, W) or (H, W, 3) BGR uint8.
    """
    if max_keypoints is not None:
        check_int("max_keypoints", max_keypoints, low=1, high=MAX_KEYPOINTS)
    gray = as_gray(image)
    if detector == "colmap-sift":
        kps = frames_to_keypoints(detect_colmap_frames(gray, max_keypoints=max_keypoints))
        return [cv2.KeyPoint(float(x), float(y), float(s), float(a), 1.0) for x, y, s, a in kps]
    if detector == "sift":
        found = cv2.SIFT_create(nfeatures=max_keypoints or 0).detect(gray, None)
    elif detector == "orb":
        found = cv2.ORB_create(nfeatures=max_keypoints or 500_000).detect(gray, None)
    elif detector == "fast":
        found = cv2.FastFeatureDetector_create().detect(gray, None)
    else:
        raise InputError(f"detector must be one of {DETECTORS}, got {detector!r}")
    ordered = sorted(found, key=lambda k: -k.response)
    return ordered[:max_keypoints] if max_keypoints else ordered


def import_pycolmap(what: str) -> Any:
    """pycolmap, or a MissingDependencyError saying that ``what`` needs it."""
    try:
        import pycolmap
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs pycolmap: pip install 'hardnet-export[sfm]'"
        ) from exc
    return pycolmap


@contextlib.contextmanager
def _quiet(pycolmap: Any) -> Iterator[None]:
    # COLMAP logs a line each time an extractor is created: one per image is noise.
    before = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = max(before, 2)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


def detect_colmap_frames(image: np.ndarray, *, max_keypoints: int | None = 2000) -> np.ndarray:
    """COLMAP's SIFT frames of an image, as ``pycolmap.extract_features`` finds them.

    COLMAP's defaults (upsampled first octave, peak threshold 0.02 / 3, up to two
    orientations per location) on the CPU; ``max_keypoints`` is ``max_num_features``
    (None: :data:`MAX_KEYPOINTS`).

    Raises:
        RuntimeError: no pycolmap.

    Shape:
        - image: (H, W) or (H, W, 3) BGR uint8.
        - Output: (K, 6) float32, COLMAP's ``x, y, a11, a12, a21, a22``.
    """
    if max_keypoints is not None:
        check_int("max_keypoints", max_keypoints, low=1, high=MAX_KEYPOINTS)
    pycolmap = import_pycolmap("the colmap-sift detector")
    options = pycolmap.FeatureExtractionOptions()
    options.sift.max_num_features = max_keypoints or MAX_KEYPOINTS
    # One image, one thread: callers run images side by side.
    options.num_threads = 1
    with _quiet(pycolmap):
        extractor = pycolmap.FeatureExtractor.create(options, pycolmap.Device.cpu)
    found, _ = extractor.extract_from_uint8_array(np.ascontiguousarray(as_gray(image)))
    frames = np.array([(k.x, k.y, k.a11, k.a12, k.a21, k.a22) for k in found], np.float32)
    return frames.reshape(-1, 6)


def frames_to_keypoints(frames: np.ndarray) -> np.ndarray:
    """COLMAP affine frames as OpenCV keypoints (x, y, size, angle).

    The scale is the mean length of the frame's two axes (equal for COLMAP's SIFT, which
    estimates no affine shape by default).

    Shape:
        - frames: (K, 6) x, y, a11, a12, a21, a22 (COLMAP).
        - Output: (K, 4) float64 x, y, size, angle (OpenCV; angle in [0, 360)).
    """
    f = _check_columns(frames, 6, "frames")
    scale = 0.5 * (np.hypot(f[:, 2], f[:, 4]) + np.hypot(f[:, 3], f[:, 5]))
    angle = np.degrees(np.arctan2(f[:, 4], f[:, 2])) % 360.0
    return np.stack(
        [
            f[:, 0] - COLMAP_PIXEL_CENTRE,
            f[:, 1] - COLMAP_PIXEL_CENTRE,
            SIZE_PER_SCALE * scale,
            angle,
        ],
        axis=1,
    )


def keypoints_to_frames(keypoints: np.ndarray) -> np.ndarray:
    """OpenCV keypoints (x, y, size, angle) as COLMAP affine frames.

    A keypoint without orientation (angle -1, as FAST gives) becomes an upright frame: the
    patch HardNet described at it is upright.

    Shape:
        - keypoints: (K, 4) x, y, size, angle (OpenCV).
        - Output: (K, 6) float32 x, y, a11, a12, a21, a22 (COLMAP).
    """
    k = _check_columns(keypoints, 4, "keypoints")
    scale = k[:, 2] / SIZE_PER_SCALE
    theta = np.radians(np.where(k[:, 3] < 0, 0.0, k[:, 3]))
    cos, sin = scale * np.cos(theta), scale * np.sin(theta)
    return np.stack(
        [k[:, 0] + COLMAP_PIXEL_CENTRE, k[:, 1] + COLMAP_PIXEL_CENTRE, cos, -sin, sin, cos],
        axis=1,
    ).astype(np.float32)


def _check_columns(array: np.ndarray, columns: int, name: str) -> np.ndarray:
    a = np.asarray(array, np.float64)
    if a.ndim != 2 or a.shape[1] != columns:
        raise InputError(f"{name} must be a (K, {columns}) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} must be finite numbers (no NaN or inf)")
    return a
