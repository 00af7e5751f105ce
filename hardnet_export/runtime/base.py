"""The describers every backend implements: load once, then ``compute`` at keypoints.

:class:`KeypointDescriber` is the small protocol every describer keeps (what it runs, where,
``compute(image, keypoints)``, ``close``); its two kinds are siblings: :class:`Describer`
takes patches (``describe``; its ``compute`` cuts them on the host) and
:class:`~hardnet_export.runtime.image.ImageDescriber` runs an image graph that cuts its own.
Patch input handling for every backend lives once in :class:`Describer`: validation (shape,
dtype, range, NaN/inf, :mod:`hardnet_export.runtime.inputs`), chunking to the backend's
``max_batch``, N = 0, and the three kinds of input ``describe`` takes: host arrays (numpy or
anything ``np.asarray`` reads), torch tensors (the result is a torch tensor on the input's
device) and CUDA device arrays (``__cuda_array_interface__``: CuPy, Numba, pycuda GPUArray),
which a backend may consume in place.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hardnet_export.artifacts.backends import get_backend
from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE, batch_slices
from hardnet_export.artifacts.metadata import SEMANTICS_DEVICE, SEMANTICS_HOST
from hardnet_export.errors import InputError
from hardnet_export.runtime.inputs import (
    as_patch_batch,
    cuda_array_interface,
    device_patch_shape,
    is_torch_tensor,
    validate_torch_patches,
)

if TYPE_CHECKING:
    from hardnet_export.artifacts.tuning import Choice
    from hardnet_export.geometry import KeypointsLike


class KeypointDescriber(abc.ABC):
    """What every loaded descriptor model offers, whatever it takes as input.

    Attributes:
        artifact: the file the model came from (None for an in-memory model).
        precision: ``fp32``, ``fp16`` or ``int8`` (from ONNX metadata or the engine sidecar;
            ``unknown`` when a foreign artifact does not say).
        device: where inference runs: ``cpu``, ``cuda:0``, ...
        semantics: how its figures are computed
            (:data:`~hardnet_export.artifacts.metadata.SEMANTICS`): this host's kernels on a
            CPU, the device's kernels on a GPU, unless the backend says otherwise.
        magnification: support region of ``compute``, in units of ``KeyPoint.size``.
        choice: how ``runtime.load`` chose to run it here
            (:class:`~hardnet_export.artifacts.tuning.Choice`: backend, options, chunk size,
            and for a tuned choice the measured speed and accuracy); None when it was built
            directly rather than loaded.
    """

    backend: ClassVar[str] = ""
    #: What the describer takes (:data:`hardnet_export.artifacts.metadata.GRAPH_KINDS`).
    graph_kind: ClassVar[str] = "patches"

    def __init__(
        self,
        artifact: Path | None,
        *,
        precision: str,
        device: str,
        semantics: str | None = None,
    ) -> None:
        from hardnet_export.geometry import DEFAULT_MAGNIFICATION

        self.artifact = artifact
        self.precision = precision
        self.device = device
        self.semantics = semantics or (SEMANTICS_HOST if device == "cpu" else SEMANTICS_DEVICE)
        self.magnification = DEFAULT_MAGNIFICATION
        self.choice: Choice | None = None

    @classmethod
    @abc.abstractmethod
    def open(
        cls, path: Path | None, *, device: str | None = None, max_batch: int | None = None
    ) -> KeypointDescriber:
        """Load the artifact at ``path``; backends add their own keyword options.

        ``runtime.load`` calls this on the class its backend's record names for the
        artifact's graph kind.
        """

    @abc.abstractmethod
    def compute(
        self,
        image: np.ndarray,
        keypoints: KeypointsLike,
        *,
        magnification: float | None = None,
        out_of_bounds: str = "reject",
    ) -> tuple[KeypointsLike, np.ndarray]:
        """Describe an image at keypoints, in the shape of OpenCV's ``Feature2D.compute``.

        Shape:
            - image: (H, W) or (H, W, 3) uint8.
            - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4) float.
            - Output: (keypoints, (K, 128) float32); rows of out-of-bounds keypoints are 0.
        """

    def close(self) -> None:
        """Release device memory, streams and graphs now (no-op where there are none)."""
        return None

    def __enter__(self) -> KeypointDescriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(artifact={self.artifact}, precision={self.precision!r}, "
            f"device={self.device!r})"
        )


def kind_class(backend: str, kind: str, artifact: Path) -> Any:
    """The describer class ``backend``'s record names for graph kind ``kind`` (a backend's
    ``open`` that reads the kind itself builds that class).

    Raises:
        InputError: the backend has no class for ``kind``; the message names who does.
    """
    record = get_backend(backend)
    if kind not in record.kinds:
        raise InputError(record.refusal(kind, str(artifact)))
    return record.describer_class(kind)


def patch_describer(describer: KeypointDescriber, purpose: str = "this") -> Describer:
    """``describer`` where patches are needed; an image graph is refused in one sentence.

    Raises:
        InputError: ``describer`` runs an image graph, which cuts its own patches.
    """
    if isinstance(describer, Describer):
        return describer
    raise InputError(
        f"{describer.artifact} is an image graph (inputs image and keypoints): it takes no "
        f"patches, which {purpose} needs; call compute(image, keypoints), or use the patch "
        "graph it was exported beside"
    )


class Describer(KeypointDescriber):
    """A loaded patch descriptor model: ``describe`` patches, ``compute`` at OpenCV keypoints.

    Subclasses implement ``_infer`` on one validated host batch of at most ``max_batch``
    patches and may override ``_describe_torch`` / ``_describe_cuda_array`` to keep device
    input on the device. This class validates input, chunks large batches and handles N = 0.

    Attributes:
        artifact: the file the model came from (None for an in-memory model).
        precision: ``fp32``, ``fp16`` or ``int8`` (from ONNX metadata or the engine sidecar;
            ``unknown`` when a foreign artifact does not say).
        device: where inference runs: ``cpu``, ``cuda:0``, ...
        max_batch: the largest batch one inference call takes; larger inputs are chunked.
        input_dtype: the patch dtype the artifact consumes (``uint8`` or ``float32``).
        magnification: default support region of ``compute``, in units of ``KeyPoint.size``.
    """

    graph_kind: ClassVar[str] = "patches"

    def __init__(
        self,
        artifact: Path | None,
        *,
        precision: str,
        device: str,
        max_batch: int | None,
        input_dtype: str = "float32",
        semantics: str | None = None,
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise InputError(f"max_batch must be a positive integer, got {max_batch}")
        super().__init__(artifact, precision=precision, device=device, semantics=semantics)
        self.max_batch = max_batch
        self.input_dtype = input_dtype

    #: The one batch a graph exported with a fixed batch takes (smaller inputs are padded to
    #: it); None: any batch up to ``max_batch``.
    _fixed_batch: int | None = None
    #: Where calls (and chunks) of at most ``small.max_batch`` patches go instead
    #: (:meth:`use_for_small_batches`); None: every call runs here.
    small: Describer | None = None

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed_batch

    def use_chunks(self, size: int) -> None:
        """Describe large inputs in chunks of ``size`` patches (where the artifact does not
        fix its batch: then the chunk is that batch)."""
        if size < 1:
            raise InputError(f"chunk size must be a positive integer, got {size}")
        if self.fixed_batch is None:
            self.max_batch = size

    def use_for_small_batches(self, describer: Describer) -> None:
        """Run calls (and chunks) of at most ``describer.max_batch`` patches on
        ``describer``, another path of the same artifact (the policy's ``small_batches``:
        one that is faster for a few patches and computes them exactly).

        Raises:
            InputError: ``describer`` takes another input dtype or has no ``max_batch``.
        """
        if describer.max_batch is None or describer.input_dtype != self.input_dtype:
            raise InputError(
                f"a small-batch path needs a max_batch and {self.input_dtype} input, got "
                f"max_batch={describer.max_batch} and {describer.input_dtype} input"
            )
        self.small = describer

    def _infer_routed(self, batch: np.ndarray) -> np.ndarray:
        small = self.small
        if small is not None and small.max_batch is not None and len(batch) <= small.max_batch:
            return small._infer(batch)
        return self._infer(batch)

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Descriptors of one batch.

        Shape:
            - batch: (n, 1, 32, 32) uint8 or float32, 1 <= n <= max_batch.
            - Output: (n, 128) float32.
        """

    def describe(self, patches: Any, *, stream: Any = None) -> Any:
        """128-D unit descriptors of 32x32 patches.

        Args:
            patches: numpy array (or anything ``np.asarray`` reads), torch tensor (CPU or
                CUDA) or CUDA device array (``__cuda_array_interface__``).
            stream: optional CUDA stream (torch/CuPy/cuda-python stream or int handle) for
                device input; backends that run on the GPU enqueue their work on it.

        Returns:
            (N, 128) float32 numpy array, or a torch tensor on the input's device when the
            input is a torch tensor. Float patches given to an artifact with a uint8 input
            (``input_dtype``) are rounded to the nearest grey level first.

        Raises:
            ValueError: wrong shape, NaN/inf or float values outside 0..255.
            TypeError: a dtype other than uint8/float or an unreadable object.

        Shape:
            - patches: (N, 32, 32) or (N, 1, 32, 32), uint8 or float (0..255); any N >= 0.
            - Output: (N, 128) float32.
        """
        if is_torch_tensor(patches):
            return self._describe_torch(patches, stream)
        if cuda_array_interface(patches) is not None:
            return self._describe_cuda_array(patches, stream)
        return self._describe_host(as_patch_batch(patches))

    def _describe_host(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        chunks = [
            self._infer_routed(batch[rows]) for rows in batch_slices(len(batch), self.max_batch)
        ]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def describe_timed(self, patches: Any) -> tuple[np.ndarray, float | None]:
        """``describe`` for host patches, plus the device's own compute time in seconds.

        For benchmarks: host clocks around this call give the end-to-end latency (copies to
        and from the device included); the second value is what CUDA events measured around
        the inference alone, summed over chunks. ``None`` where the backend has no device
        clock (every CPU backend).

        Shape:
            - patches: (N, 32, 32) or (N, 1, 32, 32), uint8 or float (0..255); N >= 0.
            - Output: ((N, 128) float32, seconds or None).
        """
        batch = as_patch_batch(patches)
        if len(batch) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32), None
        chunks, total = [], 0.0
        timed = True
        for rows in batch_slices(len(batch), self.max_batch):
            out, seconds = self._infer_timed(batch[rows])
            chunks.append(out)
            timed = timed and seconds is not None
            total += seconds or 0.0
        out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return out, (total if timed else None)

    def _infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, float | None]:
        """``_infer`` and its device compute time in seconds; GPU backends override this.

        Shape:
            - batch: (n, 1, 32, 32) uint8 or float32, 1 <= n <= max_batch.
            - Output: ((n, 128) float32, seconds or None).
        """
        return self._infer_routed(batch), None

    def _describe_torch(self, patches: Any, stream: Any) -> Any:
        """Default for torch input: validate on its device, run on the host, return torch."""
        import torch

        batch = validate_torch_patches(patches)
        host = batch.detach().to("cpu")
        array = host.numpy() if host.dtype == torch.uint8 else host.float().numpy()
        out = self._describe_host(as_patch_batch(array))
        return torch.from_numpy(out).to(patches.device)

    def _describe_cuda_array(self, patches: Any, stream: Any) -> Any:
        """Default for CUDA device arrays: one copy to the host, then the host path."""
        iface = cuda_array_interface(patches)
        assert iface is not None
        shape, dtype = device_patch_shape(iface)
        host = np.empty(shape, dtype)
        if host.nbytes:
            from hardnet_export.runtime.cudart import copy_device_to_host

            copy_device_to_host(host, int(iface["data"][0]))
        return self._describe_host(as_patch_batch(host))

    def compute(
        self,
        image: np.ndarray,
        keypoints: KeypointsLike,
        *,
        magnification: float | None = None,
        out_of_bounds: str = "reject",
    ) -> tuple[KeypointsLike, np.ndarray]:
        """Describe an image at keypoints, in the shape of OpenCV's ``Feature2D.compute``.

        Every keypoint gets a descriptor (none is dropped, border ones included), so the
        keypoints come back as given. Keypoints must lie in the bound of
        :func:`~hardnet_export.geometry.keypoints_in_bounds` (size at most the image
        diagonal, centre within one support radius ``magnification * size / 2`` of the
        image): by default one outside raises; with ``out_of_bounds="zero"`` it gets an
        all-zero descriptor row, which no real (unit-norm) descriptor is. The time taken
        depends on the number of keypoints, not on their values.

        Args:
            image: grayscale (H, W) or BGR (H, W, 3) uint8 image.
            keypoints: a sequence of ``cv2.KeyPoint`` or an array of (x, y[, size, angle]).
            magnification: support region in units of ``KeyPoint.size`` (see
                :func:`~hardnet_export.geometry.extract_patches`), in (0, 64]; defaults to
                ``self.magnification``.
            out_of_bounds: ``reject`` (an InputError naming the first keypoint outside and
                the count) or ``zero`` (a zero descriptor row).

        Raises:
            ValueError: bad image or keypoint shape, NaN/inf keypoints, out-of-bounds
                keypoints with ``reject``, a bad magnification or ``out_of_bounds``.
            TypeError: not a uint8 image, not keypoints.

        Shape:
            - image: (H, W) or (H, W, 3) uint8.
            - keypoints: K ``cv2.KeyPoint`` or (K, 2) / (K, 4) float.
            - Output: (keypoints, (K, 128) float32); rows of out-of-bounds keypoints are 0.
        """
        from hardnet_export.geometry import extract_patches_with_mask

        scale = self.magnification if magnification is None else magnification
        patches, valid = extract_patches_with_mask(
            image, keypoints, magnification=scale, out_of_bounds=out_of_bounds
        )
        return keypoints, self.describe_extracted(patches, valid)

    def describe_extracted(self, patches: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The inference half of :meth:`compute`: descriptors of patches cut by
        :func:`~hardnet_export.geometry.extract_patches_with_mask`, zero rows where ``valid``
        is False. A pipeline that cuts patches in one thread runs this in another.

        Shape:
            - patches: (K, 32, 32) uint8.
            - valid: (K,) bool.
            - Output: (K, 128) float32.
        """
        if valid.all():
            return self._describe_host(patches[:, None])
        descriptors = np.zeros((len(patches), DESCRIPTOR_SIZE), np.float32)
        # Zero patches would still give unit-norm descriptors: only the valid ones are run.
        descriptors[valid] = self._describe_host(patches[valid][:, None])
        return descriptors

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(artifact={self.artifact}, precision={self.precision!r}, "
            f"device={self.device!r}, max_batch={self.max_batch})"
        )
