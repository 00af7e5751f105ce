"""Keypoint detection with OpenCV detectors, and keypoints as plain (K, 4) arrays."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hardnet_export.runtime.images import as_gray

DETECTORS = ("sift", "orb", "fast")


def detect_keypoints(
    image: np.ndarray, *, detector: str = "sift", max_keypoints: int | None = 2000
) -> list[cv2.KeyPoint]:
    """Detect keypoints, strongest first, at most ``max_keypoints`` (None: all).

    ``sift`` and ``orb`` give a size and an orientation; ``fast`` gives corners of size 7
    without orientation (angle -1), so their patches are upright.

    Raises:
        ValueError: an unknown detector or a non-positive ``max_keypoints``.

    Shape:
        - image: (H, W) or (H, W, 3) BGR uint8.
    """
    if max_keypoints is not None and max_keypoints < 1:
        raise ValueError(f"max_keypoints must be positive, got {max_keypoints}")
    gray = as_gray(image)
    if detector == "sift":
        found = cv2.SIFT_create(nfeatures=max_keypoints or 0).detect(gray, None)
    elif detector == "orb":
        found = cv2.ORB_create(nfeatures=max_keypoints or 500_000).detect(gray, None)
    elif detector == "fast":
        found = cv2.FastFeatureDetector_create().detect(gray, None)
    else:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    ordered = sorted(found, key=lambda k: -k.response)
    return ordered[:max_keypoints] if max_keypoints else ordered


def keypoints_as_array(keypoints: Sequence[cv2.KeyPoint]) -> np.ndarray:
    """(x, y, size, angle) per keypoint.

    Shape:
        - Output: (K, 4) float32.
    """
    return np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in keypoints], np.float32).reshape(
        -1, 4
    )


def array_as_keypoints(array: np.ndarray, *, default_size: float = 1.0) -> list[cv2.KeyPoint]:
    """``cv2.KeyPoint`` objects from (x, y) or (x, y, size, angle) rows.

    Shape:
        - array: (K, 2) or (K, 4).
    """
    array = np.asarray(array, np.float64)
    if array.ndim != 2 or array.shape[1] not in (2, 4):
        raise ValueError(f"keypoints array must have shape (K, 2) or (K, 4), got {array.shape}")
    if array.shape[1] == 2:
        return [cv2.KeyPoint(float(x), float(y), default_size) for x, y in array]
    return [
        cv2.KeyPoint(float(x), float(y), float(size), float(angle)) for x, y, size, angle in array
    ]
