"""Keypoint detection with OpenCV detectors, and keypoints as plain (K, 4) arrays."""

from __future__ import annotations

import cv2
import numpy as np

from hardnet_export.errors import InputError
from hardnet_export.geometry import as_gray
from hardnet_export.validate import check_int

DETECTORS = ("sift", "orb", "fast")
#: The most keypoints kept per image.
MAX_KEYPOINTS = 1_000_000


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
    if max_keypoints is not None:
        check_int("max_keypoints", max_keypoints, low=1, high=MAX_KEYPOINTS)
    gray = as_gray(image)
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
