"""Local features of whole images: detect (or take given) keypoints, describe, save as .npz.

The .npz written by :func:`save_features` holds, for image ``i`` (in the order given),
``keypoints_i`` (K, 4) float32 rows of x, y, size, angle (OpenCV's KeyPoint fields) and
``descriptors_i`` (K, 128) float32 and ``valid_i`` (K,) bool, plus ``images``: the image paths
as strings. ``valid_i[k]`` is False where keypoint ``k`` lay outside the bound of
:func:`~hardnet_export.geometry.keypoints_in_bounds` and was kept (``out_of_bounds="zero"``)
with an all-zero descriptor row; real descriptors are unit-norm, so the flag is the row's
being non-zero (all True where keypoints were detected or rejected when out of bounds). It
loads with ``np.load(path)`` (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hardnet_export._io import atomic_path
from hardnet_export.errors import InputError
from hardnet_export.geometry import PATCH_SIZE, keypoints_to_array
from hardnet_export.runtime.base import Describer
from hardnet_export.runtime.keypoints import detect_keypoints


def describe_image(
    describer: Describer,
    image: np.ndarray,
    *,
    detector: str = "sift",
    max_keypoints: int | None = 2000,
    keypoints: np.ndarray | None = None,
    out_of_bounds: str = "reject",
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (detected, or the given ones) and their descriptors.

    Args:
        describer: a loaded model.
        image: grayscale or BGR uint8 image.
        detector: ``sift``, ``orb`` or ``fast`` (ignored when ``keypoints`` is given).
        max_keypoints: strongest detections kept.
        keypoints: (K, 2) or (K, 4) given keypoints instead of detection; (K, 2) ones get
            the native-resolution size (see ``extract_patches``).
        out_of_bounds: ``reject``: a given keypoint outside the bound of
            ``keypoints_in_bounds`` raises; ``zero``: it is kept with a zero descriptor.

    Raises:
        ValueError: bad keypoints (NaN/inf, out of bounds with ``reject``) or options.
        TypeError: not a uint8 image, not keypoints.

    Shape:
        - image: (H, W) or (H, W, 3) uint8.
        - keypoints: (K, 2) or (K, 4).
        - Output: (K, 4) float32 keypoints (values beyond float32's range, which only kept
          out-of-bounds keypoints can have, become +-inf), (K, 128) float32 descriptors.
    """
    given = (
        detect_keypoints(image, detector=detector, max_keypoints=max_keypoints)
        if keypoints is None
        else keypoints
    )
    size = PATCH_SIZE / describer.magnification
    # Checked in float64: a float32 cast first would turn 1e39 into inf and misreport it.
    kps = keypoints_to_array(given, default_size=size)
    _, descriptors = describer.compute(image, kps, out_of_bounds=out_of_bounds)
    with np.errstate(over="ignore"):
        kps32 = kps.astype(np.float32)
    return kps32, np.asarray(descriptors, np.float32)


def save_features(
    path: str | Path,
    images: Sequence[str | Path],
    features: Sequence[tuple[np.ndarray, np.ndarray]],
) -> Path:
    """Write keypoints and descriptors of several images to one .npz, atomically.

    Shape:
        - features: per image, ((K, 4), (K, 128)); ``valid_i`` is written from the
          descriptors (a zero row is an out-of-bounds keypoint).

    Raises:
        ValueError: as many image names as feature sets, and K descriptors for K keypoints,
            are required.
    """
    if len(images) != len(features):
        raise InputError(f"{len(images)} image names for {len(features)} feature sets")
    arrays: dict[str, np.ndarray] = {"images": np.array([str(p) for p in images])}
    for i, (kps, desc) in enumerate(features):
        keypoints = np.asarray(kps, np.float32)
        descriptors = np.asarray(desc, np.float32)
        if descriptors.ndim != 2 or len(descriptors) != len(keypoints):
            raise InputError(
                f"features of image {i}: descriptors must be (K, D) with K = {len(keypoints)} "
                f"keypoints, got shape {descriptors.shape}"
            )
        arrays[f"keypoints_{i}"] = keypoints
        arrays[f"descriptors_{i}"] = descriptors
        arrays[f"valid_{i}"] = np.asarray(descriptors.any(axis=1), np.bool_)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds
    return path


def load_keypoints_file(path: str | Path) -> np.ndarray:
    """Keypoints from a .npy file of (K, 2) or (K, 4) rows.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable .npy array of that shape.
    """
    from hardnet_export._io import load_npy

    path = Path(path)
    array = load_npy(path, "keypoints")
    if array.ndim != 2 or array.shape[1] not in (2, 4):
        raise InputError(f"{path} must hold a (K, 2) or (K, 4) array, got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise InputError(f"{path} must hold numbers (int or float), got dtype {array.dtype}")
    return array
