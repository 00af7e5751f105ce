"""Local features of whole images: detect (or take given) keypoints, describe, save as .npz.

The .npz written by :func:`save_features` holds, for image ``i`` (in the order given),
``keypoints_i`` (K, 4) float32 rows of x, y, size, angle (OpenCV's KeyPoint fields) and
``descriptors_i`` (K, 128) float32 and ``valid_i`` (K,) bool, plus ``images``: the image paths
as strings. ``valid_i[k]`` is False where keypoint ``k`` lay outside the bound of
:func:`~hardnet_export.geometry.keypoints_in_bounds` and was kept (``out_of_bounds="zero"``)
with an all-zero descriptor row; real descriptors are unit-norm, so the flag is the row's
being non-zero (all True where keypoints were detected or rejected when out of bounds), and
``model``: what made the descriptors (:func:`model_record`, JSON text). It loads with
``np.load(path)`` (no pickle).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from hardnet_export._io import atomic_path, load_npy
from hardnet_export.applications.detection import DETECTORS, detect_keypoints, support_keypoints
from hardnet_export.applications.images import read_image
from hardnet_export.errors import InputError
from hardnet_export.geometry import (
    OUT_OF_BOUNDS,
    PATCH_SIZE,
    KeypointsLike,
    extract_patches_with_mask,
    keypoints_to_array,
)
from hardnet_export.imagefile import image_pixel_limit
from hardnet_export.runtime.base import Describer


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
    prepared = _prepare(describer, image, detector, max_keypoints, keypoints, out_of_bounds)
    return _finish(describer, prepared)


#: An image for :func:`describe_images`: a file OpenCV reads, or a decoded uint8 array.
ImageSource: TypeAlias = "str | Path | np.ndarray"


@dataclass(frozen=True)
class ImageFeatures:
    """One image's features, as :func:`extract_features` yields them.

    Shape:
        - keypoints: (K, 4) float32 (x, y, size, angle).
        - descriptors: (K, 128) float32 (zero rows: kept out-of-bounds keypoints).
        - scores: (K,) float32, the detector's response (1 for given keypoints).
        - image_size: (W, H).
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]


def describe_images(
    describer: Describer,
    images: Sequence[ImageSource],
    *,
    detector: str = "sift",
    max_keypoints: int | None = 2000,
    keypoints: np.ndarray | None = None,
    out_of_bounds: str = "reject",
    pipeline: bool = True,
    keypoints_name: str | None = None,
    max_image_pixels: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`describe_image` of many images, yielded in input order: the keypoints and
    descriptors of :func:`extract_features` (which see)."""
    for found in extract_features(
        describer,
        images,
        detector=detector,
        max_keypoints=max_keypoints,
        keypoints=keypoints,
        out_of_bounds=out_of_bounds,
        pipeline=pipeline,
        keypoints_name=keypoints_name,
        max_image_pixels=max_image_pixels,
    ):
        yield found.keypoints, found.descriptors


def extract_features(
    describer: Describer,
    images: Sequence[ImageSource],
    *,
    detector: str = "sift",
    max_keypoints: int | None = 2000,
    keypoints: np.ndarray | None = None,
    out_of_bounds: str = "reject",
    pipeline: bool = True,
    keypoints_name: str | None = None,
    max_image_pixels: int | None = None,
) -> Iterator[ImageFeatures]:
    """Features of many images (keypoints, descriptors, detector scores, image size),
    yielded in input order.

    With ``pipeline`` one helper thread reads, detects and cuts the patches of image
    ``i + 1`` while image ``i`` is inferred (and while the caller handles its result); at
    most one image is prepared ahead, so memory stays that of two images. The results are
    those of the sequential loop, bit for bit: the same functions run on the same input,
    only in another thread.

    Args:
        describer: a loaded model; only the calling thread runs it.
        images: file paths (read as grayscale) or uint8 arrays.
        detector, max_keypoints, keypoints, out_of_bounds: as :func:`describe_image`.
        pipeline: prepare the next image in a helper thread (False: one after another).
        keypoints_name: where given ``keypoints`` came from, for error messages.
        max_image_pixels: as :func:`~hardnet_export.applications.images.read_image`.

    Raises:
        ValueError: as :func:`describe_image`, the message starting with the image (and
            the keypoints file) it is about; a bad detector or option before any image;
            an image file that cannot be read (as
            :func:`~hardnet_export.applications.images.read_image`).
        FileNotFoundError: an image file that does not exist.

    Shape:
        - images: each (H, W) or (H, W, 3) uint8, or a path.
        - yields: per image, :class:`ImageFeatures`.
    """
    from hardnet_export.validate import check_str

    # Checked here, so an error that is no image's fault is not reported as image 0's.
    check_str("detector", detector, choices=DETECTORS)
    check_str("out_of_bounds", out_of_bounds, choices=OUT_OF_BOUNDS)
    image_pixel_limit(max_image_pixels)
    sources = list(images)

    def prepare(i: int) -> PreparedImage:
        source = sources[i]
        name = f"image {i}" if isinstance(source, np.ndarray) else str(source)
        # Outside the try: read_image's errors name the file already.
        image = (
            source
            if isinstance(source, np.ndarray)
            else read_image(source, max_image_pixels=max_image_pixels)
        )
        try:
            return _prepare(describer, image, detector, max_keypoints, keypoints, out_of_bounds)
        except InputError as exc:
            given = keypoints_name is not None and keypoints is not None
            where = f"{keypoints_name} on {name}" if given else name
            raise exc.prefixed(f"{where}: ") from None

    if not pipeline or len(sources) < 2:
        for i in range(len(sources)):
            yield _features(describer, prepare(i))
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="hardnet-prepare")
    try:
        ahead = pool.submit(prepare, 0)
        for i in range(len(sources)):
            prepared = ahead.result()
            if i + 1 < len(sources):
                ahead = pool.submit(prepare, i + 1)
            yield _features(describer, prepared)
    finally:
        # A consumer that stops early (or an error) must not leave the helper reading on.
        ahead.cancel()
        pool.shutdown(wait=True)


@dataclass(frozen=True)
class PreparedImage:
    """One image's keypoints and patches, ready for inference: everything before the
    describer, so that it can run in another thread or process (:func:`prepare_image`).

    Shape:
        - keypoints: (K, 4) float64 (x, y, size, angle).
        - patches: (K, 32, 32) uint8.
        - valid: (K,) bool, False for a kept out-of-bounds keypoint.
        - scores: (K,) float32.
        - image_size: (W, H).
    """

    keypoints: np.ndarray
    patches: np.ndarray
    valid: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]


def _prepare(
    describer: Describer,
    image: np.ndarray,
    detector: str,
    max_keypoints: int | None,
    keypoints: np.ndarray | None,
    out_of_bounds: str,
) -> PreparedImage:
    return prepare_image(
        image,
        magnification=describer.magnification,
        detector=detector,
        max_keypoints=max_keypoints,
        keypoints=keypoints,
        out_of_bounds=out_of_bounds,
    )


def prepare_image(
    image: np.ndarray,
    *,
    magnification: float,
    detector: str = "sift",
    max_keypoints: int | None = 2000,
    keypoints: np.ndarray | None = None,
    out_of_bounds: str = "reject",
) -> PreparedImage:
    """Detection and extraction: everything before inference, safe to run in a thread or
    another process; :func:`describe_prepared` finishes it.

    Args:
        image: grayscale or BGR uint8 image.
        magnification: the describer's support region, in units of the keypoint size.
        detector, max_keypoints, keypoints, out_of_bounds: as :func:`describe_image`.

    Raises:
        ValueError, TypeError: as :func:`describe_image`.

    Shape:
        - image: (H, W) or (H, W, 3) uint8.
    """
    if keypoints is None:
        detected = detect_keypoints(image, detector=detector, max_keypoints=max_keypoints)
        given: KeypointsLike = detected
        scores = np.array([k.response for k in detected], np.float32)
    else:
        given = keypoints
        scores = np.ones(len(keypoints), np.float32)
    size = PATCH_SIZE / magnification
    # Checked in float64: a float32 cast first would turn 1e39 into inf and misreport it.
    kps = keypoints_to_array(given, default_size=size)
    # Given keypoints are the caller's own convention: only detected ones take the detector's.
    cut = kps if keypoints is not None else support_keypoints(kps, detector, magnification)
    patches, valid = extract_patches_with_mask(
        image, cut, magnification=magnification, out_of_bounds=out_of_bounds
    )
    return PreparedImage(kps, patches, valid, scores, (int(image.shape[1]), int(image.shape[0])))


def _finish(describer: Describer, prepared: PreparedImage) -> tuple[np.ndarray, np.ndarray]:
    found = _features(describer, prepared)
    return found.keypoints, found.descriptors


def _features(describer: Describer, prepared: PreparedImage) -> ImageFeatures:
    return describe_prepared(
        prepared, describer.describe_extracted(prepared.patches, prepared.valid)
    )


def describe_prepared(prepared: PreparedImage, descriptors: np.ndarray) -> ImageFeatures:
    """An image's features from its prepared keypoints and the descriptors of its patches
    (described alone, or with other images' patches in one batch).

    Shape:
        - descriptors: (K, 128), zero rows where ``prepared.valid`` is False.
    """
    with np.errstate(over="ignore"):
        kps32 = prepared.keypoints.astype(np.float32)
    return ImageFeatures(
        kps32, np.asarray(descriptors, np.float32), prepared.scores, prepared.image_size
    )


def model_record(describer: Any) -> dict[str, Any]:
    """What made a set of descriptors, saved beside them (the ``.npz`` and hloc ``.h5`` of
    ``describe``, ``extract``'s run record): the artifact (path and sha256), backend, the
    graph's precision, the arithmetic of its float parts where the backend says (OpenVINO's
    ``inference_precision``), device, and the runtime's choice. Descriptors of one model made
    on two paths (FP32 on one CPU, gated bf16 on another) differ a little; this says which."""
    from hardnet_export.artifacts.tuning import artifact_digest

    artifact = describer.artifact
    record: dict[str, Any] = {
        "artifact": None if artifact is None else str(Path(artifact).resolve()),
        "sha256": None if artifact is None else artifact_digest(Path(artifact)),
        "backend": describer.backend,
        "precision": describer.precision,
        "device": describer.device,
    }
    arithmetic = getattr(describer, "inference_precision", None)
    if arithmetic is not None:
        record["inference_precision"] = arithmetic
    choice = getattr(describer, "choice", None)
    if choice is not None:
        record["choice"] = choice.summary()
    return record


def model_summary(record: Mapping[str, Any]) -> str:
    """One line of a :func:`model_record`: backend, precision (and arithmetic), device."""
    precision = str(record["precision"])
    arithmetic = record.get("inference_precision")
    if arithmetic not in (None, "f32"):
        precision += f" graph, {arithmetic} arithmetic"
    return f"{record['backend']}, {precision}, {record['device']}"


def save_features(
    path: str | Path,
    images: Sequence[str | Path],
    features: Sequence[tuple[np.ndarray, np.ndarray]],
    model: Mapping[str, Any] | None = None,
) -> Path:
    """Write keypoints and descriptors of several images to one .npz, atomically, with the
    :func:`model_record` that made them as JSON text under ``model`` where given
    (``json.loads(str(np.load(path)["model"]))``: no pickle).

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
    if model is not None:
        arrays["model"] = np.array(json.dumps(dict(model), sort_keys=True))
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
    array = load_npy(path, "keypoints")
    if array.ndim != 2 or array.shape[1] not in (2, 4):
        raise InputError(f"{path} must hold a (K, 2) or (K, 4) array, got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise InputError(f"{path} must hold numbers (int or float), got dtype {array.dtype}")
    return array
