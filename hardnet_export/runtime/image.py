"""Image graphs on any backend: ``compute(image, keypoints)`` in one call, no host patches.

An image graph (``hardnet-export onnx --with-extraction``; metadata ``graph_kind`` ``image``)
cuts its patches itself, with the magnification it was exported with. :class:`ImageDescriber`
holds what every backend does on the host the same way: keypoints are checked by the host
path's rules and errors (:func:`hardnet_export.geometry.keypoints_to_array`,
:func:`hardnet_export.geometry.keypoints_in_bounds`), then the graph's own limits (its
magnification, smallest image side and deepest pyramid level) are checked, and the in-bound
keypoints go to the backend's :meth:`ImageDescriber._run_image`; out-of-bound ones get zero
rows. The backends' classes are in their own modules (``onnxruntime_backend``,
``openvino_backend``, ``tensorrt_image``), registered per graph kind in
:data:`hardnet_export.runtime.registry.BACKENDS`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Protocol

import numpy as np

from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE

# How an image graph is made; the image describers name it where the settings are missing.
from hardnet_export.artifacts.metadata import IMAGE_GRAPH_REMEDY as IMAGE_GRAPH_REMEDY
from hardnet_export.errors import InputError, Remedy
from hardnet_export.geometry import (
    OUT_OF_BOUNDS,
    PATCH_SIZE,
    KeypointsLike,
    as_gray,
    check_magnification,
    in_bounds_mask,
    keypoints_to_array,
    out_of_bounds_error,
)
from hardnet_export.runtime.base import KeypointDescriber
from hardnet_export.validate import check_str

#: The inputs every image graph (and engine built from one) has, by name.
IMAGE_INPUTS = ("image", "keypoints")


class ImageGraphInfo(Protocol):
    """What an image graph records about itself: ONNX metadata
    (:class:`~hardnet_export.artifacts.metadata.GraphMetadata`) or an engine sidecar
    (:class:`~hardnet_export.artifacts.sidecar.EngineSidecar`)."""

    @property
    def precision(self) -> str: ...
    @property
    def magnification(self) -> float | None: ...
    @property
    def pyramid_levels(self) -> int | None: ...
    @property
    def min_image_side(self) -> int | None: ...


def check_image_inputs(artifact: Path, names: list[str]) -> None:
    """Raise :class:`InputError` unless ``names`` are the image graph's two inputs."""
    if sorted(names) != sorted(IMAGE_INPUTS):
        raise InputError(
            f"{artifact} says it is an image graph but its inputs are {names}, expected "
            "image and keypoints"
        )


class ImageDescriber(KeypointDescriber):
    """An image graph on some backend: the host-side rules of :meth:`compute`, once.

    A sibling of the patch :class:`~hardnet_export.runtime.base.Describer`: it takes no
    patches, so it has no ``describe``. Subclasses implement :meth:`_run_image` and ``open``.

    Attributes:
        magnification: the support region the graph was exported with (fixed).
        pyramid_levels: the graph's pyramid levels.
        min_image_side: the smallest image side the graph takes.
        max_size: keypoint sizes from here on need a deeper level than the graph has.
    """

    graph_kind = "image"

    def __init__(
        self,
        artifact: Path,
        info: ImageGraphInfo,
        *,
        device: str,
        remedy: Remedy,
        semantics: str | None = None,
    ) -> None:
        """``remedy``: how to make an artifact with the settings when ``info`` lacks them."""
        super().__init__(artifact, precision=info.precision, device=device, semantics=semantics)
        if info.magnification is None or info.min_image_side is None or not info.pyramid_levels:
            raise InputError(
                f"{artifact} is an image graph without magnification, pyramid_levels and "
                "min_image_side settings; {remedy}",
                remedies={"remedy": remedy},
            )
        self.magnification = float(info.magnification)
        self.pyramid_levels = int(info.pyramid_levels)
        self.min_image_side = int(info.min_image_side)
        # The deepest level's scale bound: s = magnification * size / 32 < 2**levels.
        self.max_size = 2.0**self.pyramid_levels * PATCH_SIZE / self.magnification

    @abc.abstractmethod
    def _run_image(self, gray: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """The graph's descriptors of checked, in-bound keypoints of one image.

        Shape:
            - gray: (H, W) uint8, C-contiguous, H, W >= ``min_image_side``.
            - keypoints: (K, 4) float32 (x, y, size, angle), C-contiguous, K >= 1.
            - Output: (K, 128) float32.
        """

    def compute(
        self,
        image: np.ndarray,
        keypoints: KeypointsLike,
        *,
        magnification: float | None = None,
        out_of_bounds: str = "reject",
    ) -> tuple[KeypointsLike, np.ndarray]:
        """As :meth:`Describer.compute`, with image and keypoints sent to the graph in one call.

        Raises:
            ValueError: as :meth:`Describer.compute`; also an image side below the graph's
                ``min_image_side``, a ``magnification`` other than the graph's, or a keypoint
                needing a deeper pyramid level than the graph has.
            TypeError: as :meth:`Describer.compute`.

        Shape:
            - image: (H, W) or (H, W, 3) uint8, H, W >= ``min_image_side``.
            - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4) float.
            - Output: (keypoints, (K, 128) float32); rows of out-of-bounds keypoints are 0.
        """
        if magnification is not None:
            wanted = check_magnification(magnification)
            if wanted != self.magnification:
                raise InputError(
                    f"this image graph was exported with magnification {self.magnification:g}, "
                    f"got magnification={wanted:g} (re-export with that magnification)"
                )
        out_of_bounds = check_str("out_of_bounds", out_of_bounds, choices=OUT_OF_BOUNDS)
        gray = as_gray(image)
        height, width = gray.shape
        if min(height, width) < self.min_image_side:
            raise InputError(
                f"this image graph takes images of at least {self.min_image_side}x"
                f"{self.min_image_side} pixels, got {width}x{height}"
            )
        kps = keypoints_to_array(keypoints, default_size=PATCH_SIZE / self.magnification)
        valid = in_bounds_mask(kps, height, width, self.magnification, PATCH_SIZE)
        if out_of_bounds == "reject" and not valid.all():
            raise out_of_bounds_error(kps, valid, height, width, self.magnification, PATCH_SIZE)
        deep = np.flatnonzero(valid & (kps[:, 2] >= self.max_size))
        if len(deep):
            raise InputError(
                f"keypoint {deep[0]} has size {kps[deep[0], 2]:.6g}; this image graph's "
                f"{self.pyramid_levels} pyramid levels take sizes below "
                f"{self.max_size:.6g} at magnification {self.magnification:g} ({len(deep)} "
                "keypoints are larger); describe them with a patch graph"
            )
        descriptors = np.zeros((len(kps), DESCRIPTOR_SIZE), np.float32)
        if valid.any():
            descriptors[valid] = self._run_image(
                np.ascontiguousarray(gray), np.ascontiguousarray(kps[valid], np.float32)
            )
        return keypoints, descriptors
