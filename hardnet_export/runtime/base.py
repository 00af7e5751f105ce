"""The one small base class every backend implements: load once, infer a batch.

Input handling lives here once for every backend: validation (shape, dtype, range, NaN/inf),
chunking to the backend's ``max_batch``, N = 0, and the three kinds of input ``describe``
takes: host arrays (numpy or anything ``np.asarray`` reads), torch tensors (the result is a
torch tensor on the input's device) and CUDA device arrays (``__cuda_array_interface__``:
CuPy, Numba, pycuda GPUArray), which a backend may consume in place.

torch is never imported here: a torch tensor is recognised by ``type(x).__module__``.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE, batch_slices
from hardnet_export.errors import InputError, InputTypeError
from hardnet_export.geometry import (
    DEFAULT_MAGNIFICATION,
    PATCH_SIZE,
    extract_patches_with_mask,
    to_uint8,
)

if TYPE_CHECKING:
    from hardnet_export.geometry import KeypointsLike

_PATCH_DTYPES = ("uint8", "float16", "float32", "float64")


def _shape_error(shape: Any) -> InputError:
    return InputError(
        f"patches must have shape (N, {PATCH_SIZE}, {PATCH_SIZE}) or "
        f"(N, 1, {PATCH_SIZE}, {PATCH_SIZE}), got {tuple(shape)}"
    )


def patch_batch_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The (N, 1, 32, 32) shape that a (N, 32, 32) or (N, 1, 32, 32) input stands for.

    Raises:
        ValueError: any other shape.
    """
    given = tuple(int(s) for s in shape)
    full = (given[0], 1, *given[1:]) if len(given) == 3 else given
    if len(full) != 4 or full[1:] != (1, PATCH_SIZE, PATCH_SIZE):
        raise _shape_error(given)
    return (full[0], 1, PATCH_SIZE, PATCH_SIZE)


def check_patch_dtype(dtype: str) -> None:
    """Raise TypeError unless ``dtype`` (a numpy-style name) is uint8 or floating point."""
    if dtype not in _PATCH_DTYPES:
        raise InputTypeError(f"patches must be uint8 or float (0..255), got dtype {dtype}")


def check_patch_values(low: float, high: float, finite: bool) -> None:
    """Raise ValueError for NaN/inf or values outside 0..255."""
    if not finite:
        raise InputError("patches contain NaN or inf")
    if low < 0.0 or high > 255.0:
        raise InputError(f"float patches must lie in 0..255, got values in [{low}, {high}]")


def as_patch_batch(patches: Any) -> np.ndarray:
    """Validate patches and return them as a contiguous (N, 1, 32, 32) uint8 or float32 array.

    Accepts numpy arrays and anything ``np.asarray`` understands (CPU torch tensors included).

    Shape:
        - Input: (N, 32, 32) or (N, 1, 32, 32); uint8, or float16/32/64 in 0..255.
        - Output: (N, 1, 32, 32), uint8 or float32.
    """
    try:
        array = np.asarray(patches)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(
            f"patches must be an array of shape (N, {PATCH_SIZE}, {PATCH_SIZE}), got "
            f"{type(patches).__name__}"
        ) from exc
    if array.dtype.kind in "OUSV":
        raise InputTypeError(
            f"patches must be a numeric uint8 or float (0..255) array, got "
            f"{type(patches).__name__} of dtype {array.dtype}"
        )
    shape = patch_batch_shape(array.shape)
    check_patch_dtype(array.dtype.name)
    array = array.reshape(shape)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.size:
        # Checked in the input's own dtype: a float64 beyond float32's range would overflow in
        # the cast, with numpy's RuntimeWarning ahead of the error.
        check_patch_values(float(array.min()), float(array.max()), bool(np.isfinite(array).all()))
    return np.ascontiguousarray(array, dtype=np.float32)


def graph_input(batch: np.ndarray, input_dtype: str, fixed_batch: int | None) -> np.ndarray:
    """A validated host batch in the dtype a graph's input declares, padded with zero patches
    to the graph's batch when it has a fixed one (the caller keeps the first ``len(batch)``).

    Shape:
        - batch: (n, 1, 32, 32) uint8 or float32.
        - Output: (max(n, fixed_batch), 1, 32, 32) of ``input_dtype``.
    """
    if input_dtype == "uint8" and batch.dtype != np.uint8:
        # A uint8 graph holds integer grey levels: round float input to them.
        batch = to_uint8(batch)
    elif input_dtype == "float32" and batch.dtype != np.float32:
        batch = batch.astype(np.float32)
    n = len(batch)
    if fixed_batch is not None and n < fixed_batch:
        padded = np.zeros((fixed_batch, *batch.shape[1:]), batch.dtype)
        padded[:n] = batch
        batch = padded
    return batch


def is_torch_tensor(x: Any) -> bool:
    """True for a torch.Tensor, decided without importing torch."""
    module = type(x).__module__
    return (module == "torch" or module.startswith("torch.")) and hasattr(x, "dtype")


def cuda_array_interface(x: Any) -> dict[str, Any] | None:
    """The ``__cuda_array_interface__`` of a device array, or None for anything else."""
    try:
        iface = getattr(x, "__cuda_array_interface__", None)
    except Exception:  # torch raises for CPU tensors; that simply means "not a device array"
        return None
    return iface if isinstance(iface, dict) else None


def device_patch_shape(iface: dict[str, Any]) -> tuple[tuple[int, int, int, int], str]:
    """Check a device array's shape, dtype and layout; return (N, 1, 32, 32) and its dtype.

    Device arrays are read in place, so they must be C-contiguous and already in the dtype
    the backend wants; their values are not inspected (that would need a kernel or a copy).
    """
    shape = patch_batch_shape(tuple(iface["shape"]))
    dtype = np.dtype(iface["typestr"]).name
    check_patch_dtype(dtype)
    strides = iface.get("strides")
    if strides is not None:
        itemsize = np.dtype(iface["typestr"]).itemsize
        expected = tuple(int(s) for s in np.empty(iface["shape"], np.uint8).strides)
        if tuple(strides) != tuple(s * itemsize for s in expected):
            raise InputError(f"device patches must be C-contiguous, got strides {strides}")
    return shape, dtype


def stream_handle(stream: Any) -> int | None:
    """A raw ``cudaStream_t`` from a torch/CuPy/cuda-python stream or an int; None stays None."""
    if stream is None:
        return None
    for attr in ("cuda_stream", "ptr", "handle"):
        value = getattr(stream, attr, None)
        if isinstance(value, int):
            return value
    try:
        return int(stream)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(
            "stream must be a torch.cuda.Stream, cupy Stream, cuda-python cudaStream_t or "
            f"an int handle, got {type(stream).__name__}"
        ) from exc


def check_graph_signature(
    artifact: Path,
    *,
    n_inputs: int,
    n_outputs: int,
    input_name: str,
    input_shape: list[Any],
    input_type: str,
    output_name: str,
    output_shape: list[Any],
    max_batch: int | None,
) -> int | None:
    """Check that a graph a backend opened is a HardNet graph; return its fixed batch size
    (None for a dynamic batch axis). Every graph backend refuses the same things in the
    same words.

    Args:
        input_type: ``uint8`` or ``float32`` when the graph takes one of them; anything
            else is refused, named as the backend calls it.
        input_shape, output_shape: dimensions, None (or a name) where dynamic.

    Raises:
        ValueError: not one input and one output, wrong shapes or dtype, or a fixed batch
            that ``max_batch`` contradicts.
    """
    if n_inputs != 1 or n_outputs < 1:
        raise InputError(
            f"{artifact} is not a HardNet graph: expected one input and one output, got "
            f"{n_inputs} inputs and {n_outputs} outputs"
        )
    shape = list(input_shape)
    if len(shape) != 4 or shape[1:] != [1, PATCH_SIZE, PATCH_SIZE]:
        raise InputError(
            f"{artifact} is not a HardNet graph: its input {input_name!r} has shape {shape}, "
            f"expected (N, 1, {PATCH_SIZE}, {PATCH_SIZE})"
        )
    if not output_shape or output_shape[-1] != DESCRIPTOR_SIZE:
        raise InputError(
            f"{artifact} is not a HardNet graph: output {output_name!r} has shape "
            f"{output_shape}, expected (N, {DESCRIPTOR_SIZE})"
        )
    if input_type not in ("uint8", "float32"):
        raise InputError(
            f"{artifact}: input {input_name!r} is {input_type}, expected uint8 or float32"
        )
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if fixed is not None and max_batch is not None and max_batch != fixed:
        raise InputError(
            f"{artifact} was exported with a fixed batch of {fixed}; max_batch={max_batch} "
            "cannot be used (re-export with a dynamic batch)"
        )
    return fixed


class Describer(abc.ABC):
    """A loaded descriptor model: ``describe`` patches, ``compute`` at OpenCV keypoints.

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

    backend: ClassVar[str] = ""
    #: What the describer takes (:data:`hardnet_export.artifacts.metadata.GRAPH_KINDS`):
    #: ``patches`` for ``describe``, ``image`` for a graph that cuts its own (``compute`` only).
    graph_kind: ClassVar[str] = "patches"

    def __init__(
        self,
        artifact: Path | None,
        *,
        precision: str,
        device: str,
        max_batch: int | None,
        input_dtype: str = "float32",
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise InputError(f"max_batch must be a positive integer, got {max_batch}")
        self.artifact = artifact
        self.precision = precision
        self.device = device
        self.max_batch = max_batch
        self.input_dtype = input_dtype
        self.magnification = DEFAULT_MAGNIFICATION

    @classmethod
    @abc.abstractmethod
    def open(
        cls, path: Path | None, *, device: str | None = None, max_batch: int | None = None
    ) -> Describer:
        """Load the artifact at ``path``; backends add their own keyword options.

        The registry calls this (see ``runtime.load``).
        """

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
        chunks = [self._infer(batch[rows]) for rows in batch_slices(len(batch), self.max_batch)]
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
        return self._infer(batch), None

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

    def close(self) -> None:
        """Release device memory, streams and graphs now (no-op where there are none)."""
        return None

    def __enter__(self) -> Describer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(artifact={self.artifact}, precision={self.precision!r}, "
            f"device={self.device!r}, max_batch={self.max_batch})"
        )


def validate_torch_patches(patches: Any) -> Any:
    """Check a torch tensor of patches on its own device; return it as (N, 1, 32, 32).

    Float values are checked for NaN/inf and the 0..255 range (one small reduction on the
    tensor's device).
    """
    import torch

    shape = patch_batch_shape(tuple(patches.shape))
    if patches.dtype != torch.uint8 and not patches.is_floating_point():
        raise InputTypeError(
            f"patches must be uint8 or float (0..255), got dtype {str(patches.dtype)[6:]}"
        )
    batch = patches.reshape(shape)
    if batch.is_floating_point() and batch.numel():
        finite = bool(torch.isfinite(batch).all())
        low, high = (float(v) for v in torch.aminmax(batch.detach().float()))
        check_patch_values(low, high, finite)
    return batch
