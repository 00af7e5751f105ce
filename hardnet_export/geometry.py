"""Patch geometry, one module for training data, calibration, evaluation and the runtime.

Everything that decides which pixels a 32x32 patch holds lives here, so the patches a model
is trained on, calibrated on, evaluated on and run on are cut the same way:

- **Frames**: a patch-to-image homography per patch (:func:`patch_frame`), rendered with
  bilinear interpolation and reflected borders (:func:`render_patches`); at OpenCV keypoints
  ``(x, y, size, angle)`` the square of side ``magnification * size`` turned by ``angle``
  (:func:`extract_patches`).
- **Bounds**: a keypoint is sampled when its size is at most the image diagonal and its
  centre within one support radius (``magnification * size / 2``) of the image
  (:func:`keypoints_in_bounds`); others are rejected or given zero patches. Sampling
  coordinates are moved by whole reflection periods to near the image before ``cv2.remap``
  (:func:`fold_reflect_101`), so the time depends on the number of keypoints, never on their
  values.
- **Anti-aliasing**: where a patch pixel covers ``f > 1`` source pixels, the source is blurred
  by :func:`antialias_blur` ``= 0.5 * sqrt(f**2 - 1)`` first (rounded to a few pre-blurred
  copies): training photos directly (:func:`blur_level`), keypoint patches on a Gaussian
  pyramid level where ``f`` lies in [1, 2).
- **Resizing** dataset patches to 32x32 (Brown 64 -> 32, HPatches 65 -> 32): bilinear, as the
  paper resizes Brown patches (:func:`resize_patches`).
- **Rounding** float grey levels to uint8: round half to even, clipped to 0..255
  (:func:`to_uint8`).

Torch-free: numpy and OpenCV only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeAlias

import cv2
import numpy as np

from hardnet_export.errors import InputError, InputTypeError, Remedy
from hardnet_export.host import usable_cpus
from hardnet_export.shipped import PATCH_SIZE
from hardnet_export.validate import check_float, check_int, check_str

#: Support region of a patch in units of ``KeyPoint.size``, chosen by measurement:
#: ``benchmarks/magnification.py`` matches SIFT keypoints of the motorcycle stereo pair at 3..16
#: (benchmarks/results/magnification.md). With the shipped model every value from 4 to 12 beats
#: SIFT's own descriptor; 8-12 is a plateau and 12 scores best. Larger than SIFT's own support
#: (6: 4 bins of 3 sigma, size = 2 sigma) because the small keypoints that dominate a SIFT
#: detection would otherwise be upsampled far beyond anything the model saw in training.
DEFAULT_MAGNIFICATION = 12.0
#: The largest magnification accepted: 64 keypoint sizes per patch side is far beyond any
#: useful support (the sweep above peaks at 12) and keeps the sampled region bounded.
MAX_MAGNIFICATION = 64.0
#: What :func:`extract_patches` does with keypoints outside the bound of
#: :func:`keypoints_in_bounds`: ``reject`` (InputError) or ``zero`` (an all-zero patch).
OUT_OF_BOUNDS = ("reject", "zero")
#: cv2.remap refuses sources and outputs with a side of SHRT_MAX (32767) pixels or more.
_REMAP_MAX_SIDE = 32766

KeypointsLike: TypeAlias = "Sequence[cv2.KeyPoint] | np.ndarray"

#: Pre-blurs (pixels of a pyramid level) for residual scales 1..2: antialias_blur(f); the
#: image graph (:mod:`hardnet_export.export.image_graph`) builds the same pyramid.
PYRAMID_BLURS = np.array([0.0, 0.3, 0.45, 0.6, 0.75, 0.87])


#: Pre-blurred copies of a training photo (photo pixels); the renderer picks the nearest.
PHOTO_BLURS = np.array([0.0, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 1.8, 2.2, 2.6, 3.2, 4.0])


def antialias_blur(scale: np.ndarray | float) -> np.ndarray:
    """The Gaussian blur (source pixels) that keeps sampling every ``scale``-th source pixel
    from aliasing: ``0.5 * sqrt(max(scale**2 - 1, 0))``; 0 where the patch upsamples.

    Shape:
        - scale: any shape, source pixels per patch pixel.
        - Output: the same shape, float64.
    """
    scale = np.asarray(scale, np.float64)
    return 0.5 * np.sqrt(np.maximum(scale**2 - 1.0, 0.0))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Float grey levels as uint8: rounded half to even and clipped to 0..255.

    Shape:
        - values: any shape, float.
        - Output: the same shape, uint8.
    """
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def is_patch_stack(patches: np.ndarray) -> bool:
    """Whether ``patches`` is an (N, S, S) uint8 stack of square patches with S >= 1."""
    return (
        patches.ndim == 3
        and patches.shape[1] == patches.shape[2]
        and patches.shape[1] >= 1
        and patches.dtype == np.uint8
    )


def resize_patches(patches: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """Bilinear resize of every patch to ``size`` x ``size`` (Brown 64 -> 32, HPatches 65 -> 32),
    the way the paper resizes Brown patches; training, evaluation and calibration all use it.

    Raises:
        InputError: not (N, S, S) uint8.

    Shape:
        - patches: (N, S, S) uint8.
        - output: (N, size, size) uint8; the input itself (made contiguous) when S == size.
    """
    if not is_patch_stack(patches):
        raise InputError(
            f"patches must be (N, S, S) uint8 with S >= 1, got {patches.shape} {patches.dtype}"
        )
    if patches.shape[1:] == (size, size):
        return np.ascontiguousarray(patches)
    out = np.empty((len(patches), size, size), np.uint8)
    for i, patch in enumerate(patches):
        cv2.resize(patch, (size, size), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def blurred_copy(image: np.ndarray, level: int) -> np.ndarray:
    """``image`` blurred with the pre-set sigma number ``level`` (see :func:`blur_level`).

    Shape:
        - image: (H, W) uint8.
        - return: (H, W) uint8, read-only.
    """
    sigma = float(PHOTO_BLURS[level])
    if sigma == 0.0:
        return image
    out = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    out.setflags(write=False)
    return out


def blur_level(sigma: np.ndarray) -> np.ndarray:
    """Index of the pre-blurred copy nearest to each wanted blur (photo pixels)."""
    return np.abs(np.asarray(sigma)[..., None] - PHOTO_BLURS).argmin(-1)


def antialias_sigma(matrices: np.ndarray) -> np.ndarray:
    """Blur (photo pixels) that keeps a warp from aliasing, from its local scale at the
    patch centre: ``0.5 * sqrt(max(f**2 - 1, 0))`` with ``f`` = photo pixels per patch pixel.

    Shape:
        - matrices: (M, 3, 3) patch-to-photo homographies.
        - return: (M,) float64.
    """
    return antialias_blur(local_scale(matrices))


def local_scale(matrices: np.ndarray) -> np.ndarray:
    """Photo pixels per patch pixel at the patch centre: sqrt(|det J|) of each homography.

    Shape:
        - matrices: (M, 3, 3) patch-to-photo homographies.
        - return: (M,) float64.
    """
    c = (PATCH_SIZE - 1) / 2.0
    h = np.asarray(matrices, dtype=np.float64)
    w = h[:, 2, 0] * c + h[:, 2, 1] * c + h[:, 2, 2]
    xy = h[:, :2, 0] * c + h[:, :2, 1] * c + h[:, :2, 2]
    # Jacobian of the projective map at the centre: (A - p q^T) / w with p = image point.
    jac = (h[:, :2, :2] - (xy / w[:, None])[:, :, None] * h[:, 2, None, :2]) / w[:, None, None]
    return np.sqrt(np.abs(np.linalg.det(jac)))


def render_patches(
    images: list[np.ndarray], image_index: np.ndarray, matrices: np.ndarray
) -> np.ndarray:
    """Warp 32x32 patches out of images; ``matrices[i]`` maps patch pixel centres
    ``(u, v, 1)`` to pixel coordinates of ``images[image_index[i]]``. Bilinear, borders
    reflected. The caller blurs the sources beforehand where the warp downscales.

    Shape:
        - image_index: (M,) int.
        - matrices: (M, 3, 3) float.
        - return: (M, 32, 32) uint8.
    """
    out = np.empty((len(matrices), PATCH_SIZE, PATCH_SIZE), np.uint8)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    size = (PATCH_SIZE, PATCH_SIZE)
    for i, (k, m) in enumerate(zip(image_index.tolist(), matrices, strict=True)):
        cv2.warpPerspective(
            images[k], m, size, dst=out[i], flags=flags, borderMode=cv2.BORDER_REFLECT_101
        )
    return out


def patch_frame(
    centres: np.ndarray, support: np.ndarray | float, homographies: np.ndarray | None = None
) -> np.ndarray:
    """Compose patch-to-photo matrices: patch pixel -> normalised square [-1, 1]^2 ->
    optional homography (the view's change) -> ``support`` photo pixels around ``centre``.

    Shape:
        - centres: (M, 2) photo (x, y).
        - support: scalar or (M,) side of the covered square at identity, photo pixels.
        - homographies: (M, 3, 3) in normalised patch coordinates, or None for identity.
        - return: (M, 3, 3) float64.
    """
    m = len(centres)
    half = np.broadcast_to(np.asarray(support, np.float64) / 2.0, (m,))
    to_photo = np.zeros((m, 3, 3))
    to_photo[:, 0, 0] = half
    to_photo[:, 1, 1] = half
    to_photo[:, :2, 2] = centres
    to_photo[:, 2, 2] = 1.0
    c = (PATCH_SIZE - 1) / 2.0
    r = PATCH_SIZE / 2.0
    to_norm = np.array([[1 / r, 0, -c / r], [0, 1 / r, -c / r], [0, 0, 1.0]])
    if homographies is not None:
        to_photo = to_photo @ homographies
    return to_photo @ to_norm


def as_gray(image: np.ndarray) -> np.ndarray:
    """A grayscale view of an OpenCV image (BGR order for colour, as ``cv2.imread`` gives).

    Raises:
        TypeError: not a numpy array, or not uint8.
        ValueError: not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), or empty.

    Shape:
        - image: (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, uint8.
        - Output: (H, W) uint8, C-contiguous.
    """
    if not isinstance(image, np.ndarray):
        raise InputTypeError(f"image must be a numpy uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputTypeError(f"image must be uint8 (0..255), got dtype {image.dtype}")
    # Before cvtColor, which fails on an empty (0, W, 3) image with an OpenCV assertion.
    if image.size == 0:
        raise InputError(f"image is empty, shape {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.ndim != 2:
        raise InputError(
            f"image must be grayscale (H, W) or BGR (H, W, 3), got shape {image.shape}"
        )
    return np.ascontiguousarray(image)


def keypoints_to_array(keypoints: Any, *, default_size: float) -> np.ndarray:
    """Keypoints as a (K, 4) float64 array of x, y, size, angle.

    Args:
        keypoints: a sequence of ``cv2.KeyPoint`` or an array of (x, y) / (x, y, size, angle).
        default_size: size given to (K, 2) keypoints, which carry none.

    Raises:
        TypeError: not keypoints nor a numeric (bool, integer or float) array.
        ValueError: wrong array shape, NaN/inf values or a size that is not positive; the
            message names the first such keypoint and how many there are.

    Shape:
        - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4).
        - Output: (K, 4) float64.
    """
    if isinstance(keypoints, (list, tuple)) and all(isinstance(k, cv2.KeyPoint) for k in keypoints):
        # KeyPoint_convert reads the centres in C; a Python loop over 2000 objects' four
        # attributes took 2 ms, as long as cutting their patches should.
        array = np.empty((len(keypoints), 4), np.float64)
        if len(keypoints):
            array[:, :2] = cv2.KeyPoint_convert(list(keypoints))
            array[:, 2] = [k.size for k in keypoints]
            array[:, 3] = [k.angle for k in keypoints]
    else:
        if isinstance(keypoints, (list, tuple)) and any(
            isinstance(k, cv2.KeyPoint) for k in keypoints
        ):
            raise InputTypeError("keypoints mixes cv2.KeyPoint with other objects")
        try:
            raw = np.asarray(keypoints)
        except (TypeError, ValueError) as exc:
            raise InputTypeError(
                "keypoints must be a list of cv2.KeyPoint or a (K, 2)/(K, 4) array, "
                f"got {type(keypoints).__name__}"
            ) from exc
        # Complex numbers are numpy numbers too, but a coordinate has no imaginary part.
        if raw.dtype.kind not in "biuf":
            raise InputTypeError(
                "keypoints must be a list of cv2.KeyPoint or a numeric (bool, integer or float) "
                f"(K, 2)/(K, 4) array, got dtype {raw.dtype}"
            )
        if raw.ndim != 2 or raw.shape[1] not in (2, 4):
            raise InputError(f"keypoints array must have shape (K, 2) or (K, 4), got {raw.shape}")
        array = np.empty((len(raw), 4), np.float64)
        # A float128 beyond float64's range becomes inf here, which the check below reports.
        with np.errstate(over="ignore"):
            array[:, : raw.shape[1]] = raw
        if raw.shape[1] == 2:
            array[:, 2] = default_size
            array[:, 3] = -1.0
    finite = np.asarray(np.isfinite(array).all(axis=1))
    if not finite.all():
        raise _first_bad(array, finite, "keypoints must be finite, without NaN or inf")
    positive = np.asarray(array[:, 2] > 0)
    if not positive.all():
        raise _first_bad(array, positive, "keypoint sizes must be positive")
    return array


def _row(keypoint: np.ndarray) -> str:
    return "(x, y, size, angle) = (" + ", ".join(f"{v:.6g}" for v in keypoint) + ")"


def _first_bad(keypoints: np.ndarray, good: np.ndarray, rule: str) -> InputError:
    bad = np.flatnonzero(~good)
    return InputError(
        f"{rule}: keypoint {bad[0]} is {_row(keypoints[bad[0]])} "
        f"({len(bad)} of {len(keypoints)} keypoints break the rule)"
    )


def check_magnification(magnification: Any) -> float:
    """``magnification`` as a float in (0, :data:`MAX_MAGNIFICATION`].

    Raises:
        InputTypeError: not a number.
        InputError: NaN, infinite or out of range.
    """
    return check_float(
        "magnification", magnification, low=0.0, low_open=True, high=MAX_MAGNIFICATION
    )


def _check_patch_size(patch_size: Any) -> int:
    return check_int("patch_size", patch_size, low=1, high=1024)


def _image_size(image_shape: Any) -> tuple[int, int]:
    try:
        dims = tuple(image_shape)
    except TypeError:
        raise InputTypeError(
            f"image_shape must be a shape (H, W) or (H, W, C), got {type(image_shape).__name__}"
        ) from None
    if len(dims) not in (2, 3):
        raise InputError(f"image_shape must be (H, W) or (H, W, C), got {dims}")
    height = check_int("image height", dims[0], low=1)
    width = check_int("image width", dims[1], low=1)
    return height, width


def _max_size(height: int, width: int, magnification: float, patch_size: int) -> float:
    return max(float(np.hypot(width, height)), patch_size / magnification)


def in_bounds_mask(
    kps: np.ndarray, height: int, width: int, magnification: float, patch_size: int
) -> np.ndarray:
    """:func:`keypoints_in_bounds` for keypoints already read and checked (the image graph's
    describer checks its keypoints once and sends the same array on).

    Shape:
        - kps: (K, 4) float64 (x, y, size, angle), from :func:`keypoints_to_array`.
        - Output: (K,) bool.
    """
    x, y, size = kps[:, 0], kps[:, 1], kps[:, 2]
    # A size near float64's maximum overflows r to inf; the size bound already rejects it.
    with np.errstate(over="ignore", invalid="ignore"):
        r = magnification * size / 2.0
        return (
            (size > 0)
            & (size <= _max_size(height, width, magnification, patch_size))
            & (x >= -r)
            & (x <= width - 1 + r)
            & (y >= -r)
            & (y <= height - 1 + r)
        )


def out_of_bounds_error(
    kps: np.ndarray,
    valid: np.ndarray,
    height: int,
    width: int,
    magnification: float,
    patch_size: int,
) -> InputError:
    """The error for keypoints that :func:`in_bounds_mask` rejected: the first one, why, and
    how many (``valid`` must reject at least one).

    Shape:
        - kps: (K, 4) float64; valid: (K,) bool, not all true.
    """
    bad = np.flatnonzero(~valid)
    first = int(bad[0])
    x, y, size = (float(v) for v in kps[first, :3])
    max_size = _max_size(height, width, magnification, patch_size)
    if not size <= max_size:
        why = f"its size must be at most {max_size:.6g} (the image diagonal)"
    else:
        r = magnification * size / 2.0
        why = (
            f"its centre must lie in x [{-r:.6g}, {width - 1 + r:.6g}], "
            f"y [{-r:.6g}, {height - 1 + r:.6g}] (the {width}x{height} image plus the support "
            f"radius magnification * size / 2 = {r:.6g})"
        )
    return InputError(
        f"keypoint {first} is out of bounds: {_row(kps[first])}; {why}; {len(bad)} of "
        f"{len(kps)} keypoints are out of bounds ({{remedy}} keeps them with zero patches)",
        remedy=Remedy({"out_of_bounds": "zero"}),
    )


def keypoints_in_bounds(
    image_shape: Sequence[int],
    keypoints: KeypointsLike,
    *,
    magnification: float = DEFAULT_MAGNIFICATION,
    patch_size: int = PATCH_SIZE,
) -> np.ndarray:
    """Which keypoints :func:`extract_patches` samples; the others it rejects or zeroes.

    On an image of ``H`` rows and ``W`` columns a keypoint ``(x, y, size, angle)`` is in
    bounds when

    - ``size <= max(hypot(W, H), patch_size / magnification)``: at most the image diagonal
      (never less than the native-resolution size that (K, 2) keypoints get), and
    - its centre lies within one support radius ``r = magnification * size / 2`` of the
      image: ``-r <= x <= W - 1 + r`` and ``-r <= y <= H - 1 + r`` (the upright support
      square touches the image).

    Args:
        image_shape: the image's ``shape``.
        keypoints: as for :func:`extract_patches`.
        magnification, patch_size: as for :func:`extract_patches`.

    Raises:
        TypeError, ValueError: as :func:`extract_patches` for malformed keypoints (NaN/inf,
            a size that is not positive), a bad shape or bad parameters.

    Shape:
        - image_shape: (H, W) or (H, W, C).
        - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4).
        - Output: (K,) bool.
    """
    height, width = _image_size(image_shape)
    magnification = check_magnification(magnification)
    patch_size = _check_patch_size(patch_size)
    kps = keypoints_to_array(keypoints, default_size=patch_size / magnification)
    return in_bounds_mask(kps, height, width, magnification, patch_size)


def extract_patches(
    image: np.ndarray,
    keypoints: KeypointsLike,
    *,
    magnification: float = DEFAULT_MAGNIFICATION,
    patch_size: int = PATCH_SIZE,
    out_of_bounds: str = "reject",
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
    module docstring); the border is ``BORDER_REFLECT_101``, so border keypoints are kept.

    Keypoints must be finite with a positive size, and in bounds (:func:`keypoints_in_bounds`):
    size at most the image diagonal, centre within one support radius
    ``magnification * size / 2`` of the image. ``out_of_bounds="reject"`` (the default)
    raises for any keypoint outside, naming the first and the count; ``"zero"`` keeps it
    with an all-zero patch (:func:`keypoints_in_bounds` says which). The time taken depends
    on the number of keypoints, never on their values.

    Args:
        image: grayscale or BGR uint8 image (BGRA and (H, W, 1) also accepted), sides below
            32767 pixels (OpenCV's remap limit).
        keypoints: a sequence of ``cv2.KeyPoint`` or a (K, 2)/(K, 4) array (x, y, size, angle).
        magnification: support region side in units of ``KeyPoint.size``, in (0, 64].
        patch_size: output side in pixels, 1..1024.
        out_of_bounds: ``reject`` or ``zero`` (see above).

    Raises:
        TypeError: image not a uint8 numpy array; keypoints not keypoints; a parameter of
            the wrong type.
        ValueError: wrong image or keypoint shape, non-finite or out-of-bounds keypoints
            (with ``out_of_bounds="reject"``), bad parameters.

    Shape:
        - image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8.
        - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4).
        - Output: (K, patch_size, patch_size) uint8.
    """
    patches, _ = extract_patches_with_mask(
        image,
        keypoints,
        magnification=magnification,
        patch_size=patch_size,
        out_of_bounds=out_of_bounds,
    )
    return patches


def extract_patches_with_mask(
    image: np.ndarray,
    keypoints: KeypointsLike,
    *,
    magnification: float = DEFAULT_MAGNIFICATION,
    patch_size: int = PATCH_SIZE,
    out_of_bounds: str = "reject",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`extract_patches` and :func:`keypoints_in_bounds` at once (one keypoint check).

    Raises:
        TypeError, ValueError: as :func:`extract_patches`.

    Shape:
        - image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8.
        - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4).
        - Output: ((K, patch_size, patch_size) uint8, (K,) bool); with ``reject`` the mask
          is all True.
    """
    magnification = check_magnification(magnification)
    patch_size = _check_patch_size(patch_size)
    out_of_bounds = check_str("out_of_bounds", out_of_bounds, choices=OUT_OF_BOUNDS)
    gray = as_gray(image)
    if max(gray.shape) > _REMAP_MAX_SIDE:
        raise InputError(
            f"image sides must be at most {_REMAP_MAX_SIDE} pixels (OpenCV's remap limit), "
            f"got {gray.shape[1]}x{gray.shape[0]}"
        )
    height, width = gray.shape
    kps = keypoints_to_array(keypoints, default_size=patch_size / magnification)
    valid = in_bounds_mask(kps, height, width, magnification, patch_size)
    if out_of_bounds == "reject" and not valid.all():
        raise out_of_bounds_error(kps, valid, height, width, magnification, patch_size)
    if len(kps) and valid.all():
        return _sample(gray, kps, magnification, patch_size), valid
    out = np.zeros((len(kps), patch_size, patch_size), np.uint8)
    if valid.any():
        out[valid] = _sample(gray, kps[valid], magnification, patch_size)
    return out, valid


def fold_reflect_101(coords: np.ndarray, length: int) -> np.ndarray:
    """Coordinates moved by whole ``BORDER_REFLECT_101`` periods to within one period of 0.

    The reflection about 0 and ``length - 1`` repeats every ``period = 2 * (length - 1)``
    pixels (a length of 1 maps everything to 0), so ``fmod(coord, period)``, which lies in
    ``(-period, period)``, reads the same pixels with the same interpolation weights:
    ``fmod`` is exact, and remap's integer tap positions and fractions move by the whole
    period. Bilinear ``cv2.remap`` then gives bit-identical results while its border
    handling, which walks the reflection one period per step, takes at most two steps.

    Only whole periods: mirroring as well (folding into ``[0, length - 1]``) swaps the two
    taps, and OpenCV 5's float interpolation then rounds differently in about one pixel in
    60,000 (one grey level).

    Shape:
        - coords: any shape, float32, finite.
        - Output: the same shape, float32, ``|value| < period``.
    """
    coords = np.asarray(coords, np.float32)
    if length == 1:
        return np.zeros_like(coords)
    return np.fmod(coords, np.float32(2 * (length - 1)))


#: Patches per remap call: their two float32 maps (2 MiB) are built just before remap reads
#: them, so the temporary memory is bounded whatever the keypoint count (one piece per
#: worker at a time). Pieces of 64 to 1023 patches timed alike on a shared 2-core machine.
_PIECE = 256
#: The most threads that build maps and remap pieces at once. Building a piece's maps is
#: single-threaded numpy (as long as its remap) and both release the GIL, so pieces on
#: several threads keep every core busy: 2000 SIFT keypoints of the benchmark frame, 2-core
#: Xeon with AMX, each call after 50 ms idle (the per-frame case), 0.83-0.87x the time of
#: pieces cut in turn (A/B, 40 rounds, three runs; 13.6 -> 11.8 ms in one). Beyond a few
#: threads the remaps' memory traffic is the limit.
_MAX_WORKERS = 8
_pool: tuple[tuple[int, int], ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _piece_pool() -> ThreadPoolExecutor | None:
    """This process's piece workers (created on first use), or None where one thread is
    all it should use: a single CPU, or OpenCV held to one thread (``cv2.setNumThreads``, as
    a data-loading worker does), whose thread count also caps theirs.

    Keyed by process id and size: a forked child inherits the executor but not its threads,
    and would wait forever on work queued to it. A replaced executor is not shut down (a
    call may still be queueing to it); its idle threads end when it is collected.
    """
    global _pool
    workers = min(usable_cpus(), cv2.getNumThreads(), _MAX_WORKERS)
    if workers < 2:
        return None
    key = (os.getpid(), workers)
    with _pool_lock:
        if _pool is None or _pool[0] != key:
            _pool = (key, ThreadPoolExecutor(workers, thread_name_prefix="hardnet-patches"))
        return _pool[1]


def _sample(gray: np.ndarray, kps: np.ndarray, magnification: float, patch_size: int) -> np.ndarray:
    """Patches at in-bound keypoints (see :func:`extract_patches`), all of an image at once.

    Keypoints are sorted by (pyramid level, pre-blur); each group's sampling maps are built
    by broadcasts, contiguous in that order, and cut by ``cv2.remap`` straight into the
    output, a piece of at most ``_PIECE`` patches at a time, pieces on the worker threads of
    :func:`_piece_pool` while this thread blurs the next group's source. Each output pixel
    is computed alone, so the patches are the same bit for bit on any number of threads.

    Shape:
        - gray: (H, W) uint8.
        - kps: (K, 4) float64, K >= 1, all in bounds.
        - Output: (K, patch_size, patch_size) uint8.
    """
    scale = magnification * kps[:, 2] / patch_size  # source pixels per patch pixel
    # Level L halves the image L times; sampling there needs scale / 2**L < 2. (The maximum
    # keeps log2 away from 0 for sizes so small that scale underflows.)
    levels = np.floor(np.log2(np.maximum(scale, 1.0))).astype(int)
    pyramid = _pyramid(gray, int(levels.max()))
    levels = np.minimum(levels, len(pyramid) - 1)
    factor = 2.0**levels
    residual = scale / factor  # source pixels per patch pixel at the chosen level
    # Anti-aliased as the training patches are; rounded to a few pre-blurred copies per level.
    sigma = antialias_blur(residual)
    blur = np.abs(sigma[:, None] - PYRAMID_BLURS[None, :]).argmin(1)
    group = levels * len(PYRAMID_BLURS) + blur
    order = np.argsort(group, kind="stable")
    group, levels, blur = group[order], levels[order], blur[order]
    grid = _SampleGrid.of(kps[order], factor[order], residual[order], patch_size)
    k = len(kps)
    out = np.empty((k, patch_size, patch_size), np.uint8)
    # remap wants each output side below SHRT_MAX: at most this many patches per call.
    piece = min(_REMAP_MAX_SIDE // patch_size, _PIECE)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).tolist()
    ends = [*starts[1:], k]

    def cut(source: np.ndarray, start: int, end: int) -> None:
        map_x, map_y = grid.maps(start, end, *source.shape)
        cv2.remap(
            source,
            map_x,
            map_y,
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
            dst=out[start:end].reshape((end - start) * patch_size, patch_size),
        )

    pool = _piece_pool() if k > piece else None
    pending: list[Future[None]] = []
    try:
        for first, stop in zip(starts, ends, strict=True):
            # Blurring the next group's source here overlaps the workers' remaps.
            level = pyramid[int(levels[first])]
            source = _preblurred(level, float(PYRAMID_BLURS[int(blur[first])]))
            for start in range(first, stop, piece):
                end = min(start + piece, stop)
                if pool is None:
                    cut(source, start, end)
                else:
                    pending.append(pool.submit(cut, source, start, end))
    finally:
        # Every piece done (or given up) before ``out`` is read or dropped; the first
        # failure, if any, is raised.
        wait(pending)
    for job in pending:
        job.result()
    patches = np.empty_like(out)
    patches[order] = out
    return patches


def _pyramid(gray: np.ndarray, levels: int) -> list[np.ndarray]:
    """``gray`` and up to ``levels`` halvings of it (``cv2.pyrDown``), stopping before a
    side would fall below one pixel."""
    pyramid = [gray]
    for _ in range(levels):
        if min(pyramid[-1].shape) < 2:
            break
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    return pyramid


def _preblurred(level: np.ndarray, sigma: float) -> np.ndarray:
    """A pyramid level with one of :data:`PYRAMID_BLURS` applied (0: the level itself)."""
    if sigma > 0:
        return cv2.GaussianBlur(level, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return level


@dataclass(frozen=True)
class _SampleGrid:
    """The separable terms of every keypoint's sampling maps, at its pyramid level.

    Patch pixel (v, u) samples x = (cx + cos u) - sin v, y = (cy + sin u) + cos v: the u and
    v terms are (K, patch_size) each, computed in float64 and rounded to float32, and one
    float32 broadcast per map adds them. Adding in float32 rather than rounding a float64 sum
    puts a coordinate at most 1.5 float32 units in the last place off (1e-4 pixel at 1000
    pixels from the origin), which moves about one patch pixel in 7,500 by one grey level
    (the benchmark frame's 2000 SIFT keypoints), and cuts the extraction time there by 15 %
    (6.8 to 5.8 ms on a 2-core Zen 4): the float64 adds with a cast were 40 % of it.

    Shape:
        - x_u, x_v, y_u, y_v: (K, patch_size) float32.
        - cx, cy, reach: (K,) float64.
    """

    x_u: np.ndarray
    x_v: np.ndarray
    y_u: np.ndarray
    y_v: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    reach: np.ndarray

    @classmethod
    def of(
        cls, kps: np.ndarray, factor: np.ndarray, residual: np.ndarray, patch_size: int
    ) -> _SampleGrid:
        """The grid of keypoints ``kps`` sampled at pyramid factors ``factor`` with
        ``residual`` source pixels per patch pixel there.

        Shape:
            - kps: (K, 4) float64; factor, residual: (K,) float64.
        """
        theta = np.where(kps[:, 3] < 0, 0.0, np.deg2rad(kps[:, 3]))
        grid = np.arange(patch_size, dtype=np.float64) - (patch_size - 1) / 2.0
        # pyrDown output pixel i sits on input pixel 2i.
        cx, cy = kps[:, 0] / factor, kps[:, 1] / factor
        cos = (residual * np.cos(theta))[:, None]
        sin = (residual * np.sin(theta))[:, None]
        # A sample lies within (|cos| + |sin|) * (patch_size - 1) / 2 <= 2 * half of the
        # centre; where that stays inside one reflection period, folding is the identity
        # (fmod of |x| < period is x) and is skipped, so the usual keypoint costs no fmod pass.
        reach = np.abs(residual) * (patch_size - 1) + 1.0
        x_u, x_v = cx[:, None] + cos * grid, sin * grid
        y_u, y_v = cy[:, None] + sin * grid, cos * grid
        f32 = np.float32
        return cls(x_u.astype(f32), x_v.astype(f32), y_u.astype(f32), y_v.astype(f32),
                   cx, cy, reach)  # fmt: skip

    def maps(self, start: int, end: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap``'s x and y maps of keypoints ``start:end`` in a source of ``rows`` x
        ``cols``, stacked patch under patch.

        Shape:
            - Output: two (n * patch_size, patch_size) float32, n = end - start.
        """
        n, patch_size = end - start, self.x_u.shape[1]
        maps = []
        for u_term, v_term, centre, length, add in (
            (self.x_u, self.x_v, self.cx, cols, np.subtract),
            (self.y_u, self.y_v, self.cy, rows, np.add),
        ):
            coords = np.empty((n, patch_size, patch_size), np.float32)
            add(u_term[start:end, None, :], v_term[start:end, :, None], out=coords)
            far = np.flatnonzero(
                np.abs(centre[start:end]) + self.reach[start:end] >= max(2 * (length - 1), 1)
            )
            if len(far):
                # Folded here, so remap's border handling never loops over many periods.
                coords[far] = fold_reflect_101(coords[far], length)
            maps.append(coords.reshape(n * patch_size, patch_size))
        return maps[0], maps[1]
