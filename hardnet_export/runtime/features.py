"""Local features of whole images: detect (or take given) keypoints, describe, save as .npz.

The .npz written by :func:`save_features` holds, for image ``i`` (in the order given),
``keypoints_i`` (K, 4) float32 rows of x, y, size, angle (OpenCV's KeyPoint fields) and
``descriptors_i`` (K, 128) float32, plus ``images``: the image paths as strings. It loads
with ``np.load(path)`` (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hardnet_export._io import atomic_path
from hardnet_export.errors import InputError, MissingFileError
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
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (detected, or the given ones) and their descriptors.

    Args:
        describer: a loaded model.
        image: grayscale or BGR uint8 image.
        detector: ``sift``, ``orb`` or ``fast`` (ignored when ``keypoints`` is given).
        max_keypoints: strongest detections kept.
        keypoints: (K, 2) or (K, 4) given keypoints instead of detection; (K, 2) ones get
            the native-resolution size (see ``extract_patches``).

    Shape:
        - image: (H, W) or (H, W, 3) uint8.
        - keypoints: (K, 2) or (K, 4).
        - Output: (K, 4) float32 keypoints, (K, 128) float32 descriptors.
    """
    given = (
        detect_keypoints(image, detector=detector, max_keypoints=max_keypoints)
        if keypoints is None
        else keypoints
    )
    size = PATCH_SIZE / describer.magnification
    kps = keypoints_to_array(given, default_size=size).astype(np.float32)
    _, descriptors = describer.compute(image, kps)
    return kps, np.asarray(descriptors, np.float32)


def save_features(
    path: str | Path,
    images: Sequence[str | Path],
    features: Sequence[tuple[np.ndarray, np.ndarray]],
) -> Path:
    """Write keypoints and descriptors of several images to one .npz, atomically.

    Shape:
        - features: per image, ((K, 4), (K, 128)).
    """
    if len(images) != len(features):
        raise InputError(f"{len(images)} image names for {len(features)} feature sets")
    arrays: dict[str, np.ndarray] = {"images": np.array([str(p) for p in images])}
    for i, (kps, desc) in enumerate(features):
        arrays[f"keypoints_{i}"] = np.asarray(kps, np.float32)
        arrays[f"descriptors_{i}"] = np.asarray(desc, np.float32)
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
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"keypoints file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path} is not a readable .npy array ({exc})") from exc
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.shape[1] not in (2, 4):
        raise InputError(
            f"{path} must hold a (K, 2) or (K, 4) array, got shape {getattr(array, 'shape', '?')}"
        )
    return array
