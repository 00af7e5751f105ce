"""Two-view matching: detect, describe, mutual nearest neighbours with a ratio test, RANSAC.

The geometry is a homography (planar scenes, rotations) or a fundamental matrix (general
scenes), estimated with OpenCV's USAC (MAGSAC++) when the installed OpenCV has it, else
classic RANSAC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from hardnet_export.errors import InputError
from hardnet_export.geometry import as_gray
from hardnet_export.runtime.keypoints import detect_keypoints
from hardnet_export.validate import check_float

GEOMETRIES = ("homography", "fundamental")
_MIN_MATCHES = {"homography": 4, "fundamental": 8}
_ROWS_PER_BLOCK = 1024  # distance rows per block: bounds memory for large keypoint sets


@dataclass
class MatchResult:
    """What :func:`match_images` found.

    Attributes:
        keypoints1, keypoints2: the detected keypoints of each image.
        matches: index pairs (i into keypoints1, j into keypoints2), (M, 2) int64.
        inliers: which matches agree with ``model``, (M,) bool.
        model: the 3x3 homography (image 1 -> image 2) or fundamental matrix; None when
            there were too few matches or RANSAC failed.
        geometry: ``homography`` or ``fundamental``.
        descriptor: the describer's backend name (``opencv-sift`` for OpenCV's SIFT).
    """

    keypoints1: list[cv2.KeyPoint]
    keypoints2: list[cv2.KeyPoint]
    matches: np.ndarray
    inliers: np.ndarray
    model: np.ndarray | None
    geometry: str
    descriptor: str

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def inlier_ratio(self) -> float:
        """Inliers over tentative matches (0 when there are no matches)."""
        return self.n_inliers / len(self.matches) if len(self.matches) else 0.0


def match_descriptors(
    descriptors1: np.ndarray,
    descriptors2: np.ndarray,
    *,
    ratio: float | None = 0.8,
    mutual: bool = True,
) -> np.ndarray:
    """Nearest-neighbour matches in L2 distance, optionally mutual and ratio-tested.

    A match (i, j) is kept when j is i's nearest neighbour, i is j's (``mutual``), and
    ``d(i, j) < ratio * d(i, second nearest)`` (``ratio``; None disables it).

    Raises:
        ValueError: descriptors of different widths or not 2-D, a ratio outside (0, 1].

    Shape:
        - descriptors1: (N1, D), descriptors2: (N2, D), float.
        - Output: (M, 2) int64 index pairs, sorted by i.
    """
    d1 = np.asarray(descriptors1, np.float32)
    d2 = np.asarray(descriptors2, np.float32)
    if d1.ndim != 2 or d2.ndim != 2 or d1.shape[1] != d2.shape[1]:
        raise InputError(
            f"descriptors must be (N1, D) and (N2, D) with the same D, got {d1.shape} and "
            f"{d2.shape}"
        )
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise InputError(f"ratio must be in (0, 1], got {ratio}")
    if len(d1) == 0 or len(d2) == 0:
        return np.zeros((0, 2), np.int64)
    sq2 = (d2 * d2).sum(1)
    nn = np.empty(len(d1), np.int64)
    first = np.empty(len(d1), np.float32)
    second = np.full(len(d1), np.inf, np.float32)
    col_best = np.full(len(d2), np.inf, np.float32)
    col_arg = np.zeros(len(d2), np.int64)
    for start in range(0, len(d1), _ROWS_PER_BLOCK):
        block = d1[start : start + _ROWS_PER_BLOCK]
        dist = (block * block).sum(1)[:, None] + sq2[None, :] - 2.0 * block @ d2.T
        np.maximum(dist, 0.0, out=dist)
        rows = np.arange(len(block))
        idx = dist.argmin(1)
        nn[start : start + len(block)] = idx
        first[start : start + len(block)] = dist[rows, idx]
        if len(d2) > 1:
            dist[rows, idx] = np.inf
            second[start : start + len(block)] = dist.min(1)
            dist[rows, idx] = first[start : start + len(block)]
        block_arg = dist.argmin(0)
        block_best = dist[block_arg, np.arange(len(d2))]
        better = block_best < col_best
        col_best[better] = block_best[better]
        col_arg[better] = block_arg[better] + start
    keep = np.ones(len(d1), bool)
    if mutual:
        keep &= col_arg[nn] == np.arange(len(d1))
    if ratio is not None:
        keep &= np.sqrt(first) < ratio * np.sqrt(second)
    i = np.flatnonzero(keep)
    return np.stack([i, nn[i]], axis=1).astype(np.int64)


def estimate_geometry(
    points1: np.ndarray, points2: np.ndarray, geometry: str = "homography", threshold: float = 3.0
) -> tuple[np.ndarray | None, np.ndarray]:
    """Robustly fit a homography or fundamental matrix; return (model, inlier mask).

    Shape:
        - points1, points2: (M, 2) float.
        - Output: (3, 3) float64 or None, (M,) bool.
    """
    if geometry not in GEOMETRIES:
        raise InputError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    mask = np.zeros(len(points1), bool)
    if len(points1) < _MIN_MATCHES[geometry]:
        return None, mask
    method = getattr(cv2, "USAC_MAGSAC", cv2.RANSAC)
    p1 = np.asarray(points1, np.float64).reshape(-1, 1, 2)
    p2 = np.asarray(points2, np.float64).reshape(-1, 1, 2)
    if geometry == "homography":
        model, found = cv2.findHomography(
            p1, p2, method, threshold, maxIters=10000, confidence=0.9999
        )
    else:
        model, found = cv2.findFundamentalMat(p1, p2, method, threshold, 0.9999, 10000)
    if model is None or found is None or model.shape != (3, 3):
        return None, mask
    return model, found.ravel().astype(bool)


class KeypointDescriber(Protocol):
    """Anything that describes an image at keypoints, like OpenCV's ``Feature2D.compute``:
    every :class:`Describer` and :class:`OpenCVSift`."""

    backend: str

    def compute(
        self, image: np.ndarray, keypoints: Sequence[cv2.KeyPoint]
    ) -> tuple[Any, np.ndarray]: ...


class OpenCVSift:
    """OpenCV's own SIFT descriptor at given keypoints: the baseline to compare HardNet with."""

    backend = "opencv-sift"

    def compute(
        self, image: np.ndarray, keypoints: Sequence[cv2.KeyPoint]
    ) -> tuple[Sequence[cv2.KeyPoint], np.ndarray]:
        """Descriptors at ``keypoints`` (all kept, in order).

        Shape:
            - Output: (K, 128) float32.
        """
        gray = as_gray(image)
        if not keypoints:
            return keypoints, np.zeros((0, 128), np.float32)
        kept, descriptors = cv2.SIFT_create().compute(gray, list(keypoints))
        if len(kept) != len(keypoints):
            raise RuntimeError("OpenCV SIFT dropped keypoints; cannot align descriptors")
        return keypoints, descriptors.astype(np.float32)


def describe_with(
    describer: KeypointDescriber, image: np.ndarray, keypoints: list[cv2.KeyPoint]
) -> np.ndarray:
    """Descriptors at ``keypoints`` from a Describer or :class:`OpenCVSift`.

    Shape:
        - Output: (K, D) float32 (D = 128 for both).
    """
    return np.asarray(describer.compute(image, keypoints)[1], np.float32)


def match_images(
    image1: np.ndarray,
    image2: np.ndarray,
    describer: KeypointDescriber,
    *,
    detector: str = "sift",
    max_keypoints: int | None = 2000,
    geometry: str = "homography",
    ratio: float | None = 0.8,
    threshold: float = 3.0,
) -> MatchResult:
    """Detect, describe, match (mutual NN + ratio test) and verify with RANSAC.

    Args:
        image1, image2: grayscale or BGR uint8 images.
        describer: a loaded :class:`Describer`, or :class:`OpenCVSift` for OpenCV's own.
        detector: ``sift``, ``orb`` or ``fast``.
        max_keypoints: strongest keypoints kept per image.
        geometry: ``homography`` or ``fundamental``.
        ratio: Lowe's ratio-test threshold (None: mutual nearest neighbours only).
        threshold: RANSAC inlier threshold in pixels.

    Shape:
        - image1, image2: (H, W) or (H, W, 3) uint8.
    """
    if geometry not in GEOMETRIES:
        raise InputError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if ratio is not None:
        check_float("ratio", ratio, low=0.0, low_open=True, high=1.0)
    check_float("threshold", threshold, low=0.0, low_open=True, high=1000.0)
    kps1 = detect_keypoints(image1, detector=detector, max_keypoints=max_keypoints)
    kps2 = detect_keypoints(image2, detector=detector, max_keypoints=max_keypoints)
    desc1 = describe_with(describer, image1, kps1)
    desc2 = describe_with(describer, image2, kps2)
    matches = match_descriptors(desc1, desc2, ratio=ratio)
    pts1 = np.array([kps1[i].pt for i in matches[:, 0]], np.float64).reshape(-1, 2)
    pts2 = np.array([kps2[j].pt for j in matches[:, 1]], np.float64).reshape(-1, 2)
    model, inliers = estimate_geometry(pts1, pts2, geometry, threshold)
    return MatchResult(kps1, kps2, matches, inliers, model, geometry, describer.backend)


def draw_matches(
    image1: np.ndarray, image2: np.ndarray, result: MatchResult, *, inliers_only: bool = True
) -> np.ndarray:
    """The two images side by side with the (inlier) matches drawn, via ``cv2.drawMatches``.

    Shape:
        - Output: (max(H1, H2), W1 + W2, 3) uint8 BGR.
    """
    keep = result.inliers if inliers_only else np.ones(len(result.matches), bool)
    dmatches: list[Any] = [
        cv2.DMatch(int(i), int(j), 0.0) for (i, j), k in zip(result.matches, keep, strict=True) if k
    ]
    return cv2.drawMatches(
        as_gray(image1),
        result.keypoints1,
        as_gray(image2),
        result.keypoints2,
        dmatches,
        None,
        matchColor=(0, 200, 0),
        flags=cv2.DrawMatchesFlags_NOT_DRAW_SINGLE_POINTS,
    )
