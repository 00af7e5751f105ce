"""Image graphs on ONNX Runtime: ``compute(image, keypoints)`` in one call, no host patches.

An image graph (``hardnet-export onnx --with-extraction``; metadata ``graph_kind`` ``image``)
cuts its patches itself, with the magnification it was exported with. Keypoints are checked
here by the host path's rules and errors (:func:`hardnet_export.geometry.keypoints_to_array`,
:func:`hardnet_export.geometry.keypoints_in_bounds`); the graph then gets the in-bound ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE
from hardnet_export.artifacts.metadata import GraphMetadata
from hardnet_export.errors import InputError, StateError
from hardnet_export.geometry import (
    OUT_OF_BOUNDS,
    PATCH_SIZE,
    KeypointsLike,
    _bound_error,
    _check_magnification,
    _in_bounds,
    as_gray,
    keypoints_to_array,
)
from hardnet_export.runtime.base import Describer
from hardnet_export.validate import check_str


class OnnxRuntimeImageDescriber(Describer):
    """An image graph in an ONNX Runtime session (made by the onnxruntime backend's ``open``
    when the graph's metadata says ``graph_kind`` ``image``)."""

    backend = "onnxruntime"
    graph_kind = "image"

    def __init__(self, session: Any, artifact: Path, metadata: GraphMetadata, device: str) -> None:
        super().__init__(
            artifact,
            precision=metadata.precision,
            device=device,
            max_batch=None,
            input_dtype="uint8",
        )
        if metadata.magnification is None or metadata.min_image_side is None:
            raise InputError(
                f"{artifact} is an image graph without magnification and min_image_side "
                "metadata; re-export it with hardnet-export onnx --with-extraction"
            )
        self.session = session
        self.metadata = metadata
        self.magnification = metadata.magnification
        self.min_image_side = metadata.min_image_side
        # The deepest level's scale bound: s = magnification * size / 32 < 2**levels.
        self.max_size = 2.0 ** (metadata.pyramid_levels or 0) * PATCH_SIZE / self.magnification
        names = [i.name for i in session.get_inputs()]
        if sorted(names) != ["image", "keypoints"]:
            raise InputError(
                f"{artifact} says it is an image graph but its inputs are {names}, expected "
                "image and keypoints"
            )
        self._output_name = session.get_outputs()[0].name

    @classmethod
    def open(
        cls, path: Path | None, *, device: str | None = None, max_batch: int | None = None
    ) -> Describer:
        from hardnet_export.runtime.onnxruntime_backend import OnnxRuntimeDescriber

        return OnnxRuntimeDescriber.open(path, device=device, max_batch=max_batch)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise self._no_patches()

    def _no_patches(self) -> StateError:
        return StateError(
            f"{self.artifact} is an image graph (inputs image and keypoints): it takes no "
            "patches; call compute(image, keypoints) instead of describe()"
        )

    def describe(self, patches: Any, *, stream: Any = None) -> Any:
        """Refused: an image graph cuts its own patches; use :meth:`compute`."""
        raise self._no_patches()

    def describe_extracted(self, patches: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Refused, as :meth:`describe`."""
        raise self._no_patches()

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
            wanted = _check_magnification(magnification)
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
        valid = _in_bounds(kps, height, width, self.magnification, PATCH_SIZE)
        if out_of_bounds == "reject" and not valid.all():
            raise _bound_error(kps, valid, height, width, self.magnification, PATCH_SIZE)
        deep = np.flatnonzero(valid & (kps[:, 2] >= self.max_size))
        if len(deep):
            raise InputError(
                f"keypoint {deep[0]} has size {kps[deep[0], 2]:.6g}; this image graph's "
                f"{self.metadata.pyramid_levels} pyramid levels take sizes below "
                f"{self.max_size:.6g} at magnification {self.magnification:g} ({len(deep)} "
                "keypoints are larger); describe them with a patch graph"
            )
        descriptors = np.zeros((len(kps), DESCRIPTOR_SIZE), np.float32)
        if valid.any():
            (out,) = self.session.run(
                [self._output_name],
                {"image": gray, "keypoints": np.ascontiguousarray(kps[valid], np.float32)},
            )
            descriptors[valid] = out
        return keypoints, descriptors
