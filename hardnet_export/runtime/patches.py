"""Rotation- and scale-normalised 32x32 patches at OpenCV keypoints.

Geometry: a keypoint ``(x, y, size, angle)`` is described by the square of side
``magnification * size`` image pixels centred on ``(x, y)`` and turned by ``angle``, resampled
to ``patch_size`` x ``patch_size``. ``size`` is OpenCV's ``KeyPoint.size`` (the diameter of
the detector's neighbourhood; 2 sigma for SIFT). ``angle`` follows OpenCV: degrees, measured
in image coordinates, where y points down, so a positive angle turns clockwise on screen;
-1 means "no orientation" (treated as 0). The patch's +x axis is the keypoint's orientation.

Downsampled patches are anti-aliased like the training patches: the support is sampled from
the Gaussian-pyramid level (``cv2.pyrDown``) where a patch pixel covers f in [1, 2) source
pixels, blurred there by ``0.5 * sqrt(f**2 - 1)`` (rounded to a few pre-blurred copies).
Pixels outside the image come from ``BORDER_REFLECT_101``: keypoints at or beyond the border
are kept, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import cv2
import numpy as np

from hardnet_export.runtime.images import as_gray

#: Support region of a patch in units of ``KeyPoint.size``, chosen by measurement:
#: ``benchmarks/magnification.py`` matches SIFT keypoints of the motorcycle stereo pair at 3..16
#: (benchmarks/results/magnification.md). With the shipped model every value from 4 to 12 beats
#: SIFT's own descriptor; 8-12 is a plateau and 12 scores best. Larger than SIFT's own support
#: (6: 4 bins of 3 sigma, size = 2 sigma) because the small keypoints that dominate a SIFT
#: detection would otherwise be upsampled far beyond anything the model saw in training.
DEFAULT_MAGNIFICATION = 12.0

KeypointsLike: TypeAlias = "Sequence[cv2.KeyPoint] | np.ndarray"

# Pre-blur sigmas (pixels of a pyramid level) for residual scales 1..2: 0.5 * sqrt(f**2 - 1).
_BLUR_SIGMAS = np.array([0.0, 0.3, 0.45, 0.6, 0.75, 0.87])

# cv2.remap wants each output dimension below SHRT_MAX: at most this many patches per call.
_REMAP_CHUNK = 1000


def keypoints_to_array(keypoints: Any, *, default_size: float) -> np.ndarray:
    """Keypoints as a (K, 4) float64 array of x, y, size, angle.

    Args:
        keypoints: a sequence of ``cv2.KeyPoint`` or an array of (x, y) / (x, y, size, angle).
        default_size: size given to (K, 2) keypoints, which carry none.

    Raises:
        TypeError: not keypoints nor a numeric array.
        ValueError: wrong array shape, NaN/inf coordinates or a size that is not positive.

    Shape:
        - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4).
        - Output: (K, 4) float64.
    """
    if isinstance(keypoints, (list, tuple)) and all(isinstance(k, cv2.KeyPoint) for k in keypoints):
        array = np.array(
            [(k.pt[0], k.pt[1], k.size, k.angle) for k in keypoints], np.float64
        ).reshape(-1, 4)
    else:
        if isinstance(keypoints, (list, tuple)) and any(
            isinstance(k, cv2.KeyPoint) for k in keypoints
        ):
            raise TypeError("keypoints mixes cv2.KeyPoint with other objects")
        try:
            raw = np.asarray(keypoints)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "keypoints must be a list of cv2.KeyPoint or a (K, 2)/(K, 4) array, "
                f"got {type(keypoints).__name__}"
            ) from exc
        if raw.dtype == object or not (
            np.issubdtype(raw.dtype, np.number) or raw.dtype == np.bool_
        ):
            raise TypeError(
                "keypoints must be a list of cv2.KeyPoint or a numeric (K, 2)/(K, 4) array, "
                f"got dtype {raw.dtype}"
            )
        if raw.ndim != 2 or raw.shape[1] not in (2, 4):
            raise ValueError(f"keypoints array must have shape (K, 2) or (K, 4), got {raw.shape}")
        array = np.empty((len(raw), 4), np.float64)
        array[:, : raw.shape[1]] = raw
        if raw.shape[1] == 2:
            array[:, 2] = default_size
            array[:, 3] = -1.0
    if not np.isfinite(array).all():
        raise ValueError("keypoints contain NaN or inf")
    if (array[:, 2] <= 0).any():
        raise ValueError(f"keypoint sizes must be positive, got min {array[:, 2].min()}")
    return array


def extract_patches(
    image: np.ndarray,
    keypoints: KeypointsLike,
    *,
    magnification: float = DEFAULT_MAGNIFICATION,
    patch_size: int = 32,
) -> np.ndarray:
    """Cut one rotation- and scale-normalised patch per keypoint.

    Patch pixel (u, v), with c = (patch_size - 1) / 2, samples the image at
    ``(x, y) + s * R(angle) @ (u - c, v - c)`` where ``s = magnification * size / patch_size``
    and ``R`` is the rotation by ``angle`` in image coordinates (OpenCV's convention); the
    patch therefore covers ``magnification * size`` pixels and its +x axis points along the
    keypoint's orientation. A keypoint with ``size = patch_size / magnification`` and
    ``angle`` 0 or -1 at ``(x0 + c, y0 + c)`` gives exactly ``image[y0:y0+32, x0:x0+32]``.

    Keypoints given as (K, 2) have no size: they get ``size = patch_size / magnification``,
    a native-resolution patch. Bilinear sampling from an anti-aliased pyramid level (see the
    module docstring); the border is ``BORDER_REFLECT_101``; every keypoint is kept.

    Args:
        image: grayscale or BGR uint8 image (BGRA and (H, W, 1) also accepted).
        keypoints: a sequence of ``cv2.KeyPoint`` or a (K, 2)/(K, 4) array (x, y, size, angle).
        magnification: support region side in units of ``KeyPoint.size``.
        patch_size: output side in pixels.

    Raises:
        TypeError: image not a uint8 numpy array; keypoints not keypoints.
        ValueError: wrong image or keypoint shape, non-finite keypoints, bad parameters.

    Shape:
        - image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8.
        - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4).
        - Output: (K, patch_size, patch_size) uint8.
    """
    if not (np.isfinite(magnification) and magnification > 0):
        raise ValueError(f"magnification must be a positive number, got {magnification}")
    if int(patch_size) != patch_size or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
    gray = as_gray(image)
    kps = keypoints_to_array(keypoints, default_size=patch_size / magnification)
    out = np.empty((len(kps), patch_size, patch_size), np.uint8)
    if not len(kps):
        return out
    scale = magnification * kps[:, 2] / patch_size  # source pixels per patch pixel
    # Level L halves the image L times; sampling there needs scale / 2**L < 2.
    levels = np.maximum(0, np.floor(np.log2(scale)).astype(int))
    pyramid = [gray]
    for _ in range(int(levels.max())):
        if min(pyramid[-1].shape) < 2:
            break
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    levels = np.minimum(levels, len(pyramid) - 1)
    factor = 2.0**levels
    residual = scale / factor  # source pixels per patch pixel at the chosen level
    # The blur that keeps sampling at `residual` from aliasing, 0.5 * sqrt(f**2 - 1), as the
    # training patches get it; rounded to a few pre-blurred copies per level.
    sigma = 0.5 * np.sqrt(np.maximum(residual**2 - 1.0, 0.0))
    blur = np.abs(sigma[:, None] - _BLUR_SIGMAS[None, :]).argmin(1)
    theta = np.where(kps[:, 3] < 0, 0.0, np.deg2rad(kps[:, 3]))
    grid = np.arange(patch_size, dtype=np.float64) - (patch_size - 1) / 2.0
    du, dv = np.meshgrid(grid, grid)  # du varies along columns (x), dv along rows (y)
    # pyrDown output pixel i sits on input pixel 2i.
    cx, cy = kps[:, 0] / factor, kps[:, 1] / factor
    cos = (residual * np.cos(theta))[:, None, None]
    sin = (residual * np.sin(theta))[:, None, None]
    map_x = (cx[:, None, None] + cos * du - sin * dv).astype(np.float32)
    map_y = (cy[:, None, None] + sin * du + cos * dv).astype(np.float32)
    for level, level_blur in sorted({(int(a), int(b)) for a, b in zip(levels, blur, strict=True)}):
        idx = np.flatnonzero((levels == level) & (blur == level_blur))
        source = pyramid[level]
        if _BLUR_SIGMAS[level_blur] > 0:
            source = cv2.GaussianBlur(
                source, (0, 0), float(_BLUR_SIGMAS[level_blur]), borderType=cv2.BORDER_REFLECT_101
            )
        for start in range(0, len(idx), _REMAP_CHUNK):
            part = idx[start : start + _REMAP_CHUNK]
            n = len(part)
            sampled = cv2.remap(
                source,
                map_x[part].reshape(n * patch_size, patch_size),
                map_y[part].reshape(n * patch_size, patch_size),
                interpolation=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT_101,
            )
            out[part] = sampled.reshape(n, patch_size, patch_size)
    return out
