"""Matching at real keypoints of the motorcycle stereo pair: descriptors as ``compute`` makes them.

Patch-pair metrics (:mod:`hardnet_export.evaluation.pairs`) score every descriptor on the same
32x32 patches, OpenCV SIFT included. A frame is scored here the way users run it: OpenCV SIFT
detects keypoints in the left and right Middlebury motorcycle images
(``skimage.data.stereo_motorcycle``, never used for training), each descriptor describes them
with its own ``compute`` (SIFT's own descriptor at its own scale and orientation as the
reference), and the ground-truth disparity says where a left keypoint at (x, y) lies in the
right image: (x - d, y), for visible (unoccluded) pixels.

Scores over the left keypoints with ground truth:

- ``nn@T``: among those that have a right keypoint within T px of the truth (so that a
  correct answer exists), the fraction whose nearest right descriptor is one within T px:
  nearest-neighbour accuracy at keypoints;
- ``mnn@T``: the fraction whose mutual nearest neighbour lies within T px;
- ``precision@T``: correct among the mutual nearest neighbours found;
- ``repeatable@T`` (descriptor-independent): the fraction with any right keypoint within T px.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Match radii in pixels.
THRESHOLDS: tuple[float, ...] = (2.0, 3.0)
DEFAULT_KEYPOINTS = 2000


@dataclass(frozen=True)
class StereoFrame:
    """The pair, its SIFT keypoints and where each left keypoint belongs in the right image.

    Shape:
        - left, right: (H, W) uint8.
        - left_xy, right_xy: (K, 2) and (L, 2) float64 x, y.
        - expected: (K, 2) float64; valid: (K,) bool.
    """

    left: np.ndarray
    right: np.ndarray
    left_keypoints: list[cv2.KeyPoint]
    right_keypoints: list[cv2.KeyPoint]
    left_xy: np.ndarray
    right_xy: np.ndarray
    expected: np.ndarray
    valid: np.ndarray
    detector: str

    def nearest_right(self) -> np.ndarray:
        """Distance in px from each left keypoint's truth to the closest right keypoint.

        Shape:
            - Output: (K,) float64.
        """
        return np.linalg.norm(self.expected[:, None] - self.right_xy[None], axis=2).min(1)

    def repeatable(self) -> dict[str, float]:
        near = self.nearest_right()[self.valid]
        return {f"repeatable@{t:g}": float((near <= t).mean()) for t in THRESHOLDS}


def ground_truth(left_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected right positions of left points and which of them have ground truth.

    Shape:
        - left_xy: (K, 2) x, y.
        - Output: (K, 2) right x, y; (K,) bool.
    """
    from hardnet_export.data.stereo import load_motorcycle, visible_mask

    _, _, disparity = load_motorcycle()
    visible = visible_mask(disparity)
    h, w = disparity.shape
    col = np.clip(np.rint(left_xy[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.rint(left_xy[:, 1]).astype(int), 0, h - 1)
    valid = visible[row, col]
    expected = left_xy.astype(np.float64).copy()
    expected[valid, 0] -= disparity[row[valid], col[valid]]
    return expected, valid


@functools.lru_cache(maxsize=4)
def stereo_frame(max_keypoints: int = DEFAULT_KEYPOINTS) -> StereoFrame:
    """The motorcycle pair with ``cv2.SIFT_create(nfeatures=max_keypoints)`` keypoints."""
    from hardnet_export.data.stereo import load_motorcycle
    from hardnet_export.geometry import keypoints_to_array
    from hardnet_export.validate import check_int

    check_int("max_keypoints", max_keypoints, low=1, high=100_000)
    left, right, _ = load_motorcycle()
    sift = cv2.SIFT_create(nfeatures=max_keypoints)
    kps_l, kps_r = list(sift.detect(left, None)), list(sift.detect(right, None))
    xy_l = keypoints_to_array(kps_l, default_size=1.0)[:, :2].astype(np.float64)
    xy_r = keypoints_to_array(kps_r, default_size=1.0)[:, :2].astype(np.float64)
    expected, valid = ground_truth(xy_l)
    return StereoFrame(
        left,
        right,
        kps_l,
        kps_r,
        xy_l,
        xy_r,
        expected,
        valid,
        f"cv2.SIFT_create(nfeatures={max_keypoints}).detect",
    )


def score_descriptors(
    frame: StereoFrame, left: np.ndarray, right: np.ndarray, matches: np.ndarray | None = None
) -> dict[str, float]:
    """``nn@T``, ``mnn@T`` and ``precision@T`` of left/right descriptors of ``frame``'s
    keypoints (module docstring); ``matches`` are the mutual nearest neighbours (computed
    here when None).

    Shape:
        - left: (K, D), right: (L, D) float; matches: (M, 2) int (left, right).
    """
    from hardnet_export.applications.matching import match_descriptors

    left = np.asarray(left, np.float32)
    right = np.asarray(right, np.float32)
    if matches is None:
        matches = match_descriptors(left, right, ratio=None)
    squared = (left * left).sum(1)[:, None] + (right * right).sum(1)[None] - 2 * left @ right.T
    nearest = squared.argmin(1)
    nn_error = np.linalg.norm(frame.right_xy[nearest] - frame.expected, axis=1)
    truth_near = frame.nearest_right()
    m = matches[frame.valid[matches[:, 0]]]
    m_error = np.linalg.norm(frame.right_xy[m[:, 1]] - frame.expected[m[:, 0]], axis=1)
    n_valid = max(int(frame.valid.sum()), 1)
    out: dict[str, float] = {}
    for t in THRESHOLDS:
        answerable = frame.valid & (truth_near <= t)
        out[f"nn@{t:g}"] = float((nn_error[answerable] <= t).mean()) if answerable.any() else 0.0
        correct = int((m_error <= t).sum())
        out[f"mnn@{t:g}"] = correct / n_valid
        out[f"precision@{t:g}"] = correct / max(len(m), 1)
    return out


def score_describer(describer: Any, frame: StereoFrame, **compute_options: Any) -> dict[str, float]:
    """Score a describer (anything with OpenCV's ``compute(image, keypoints)``: a
    :class:`~hardnet_export.runtime.base.Describer` or
    :class:`~hardnet_export.applications.matching.OpenCVSift`) on ``frame``."""
    left = describer.compute(frame.left, frame.left_keypoints, **compute_options)[1]
    right = describer.compute(frame.right, frame.right_keypoints, **compute_options)[1]
    return score_descriptors(frame, left, right)


def sift_scores(frame: StereoFrame) -> dict[str, float]:
    """OpenCV SIFT's own descriptor (``cv2.SIFT.compute``) on ``frame``: the reference."""
    from hardnet_export.applications.matching import OpenCVSift

    return score_describer(OpenCVSift(), frame)
