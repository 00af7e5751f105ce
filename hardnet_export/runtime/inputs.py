"""Patch input handling shared by every backend: shape, dtype and range checks, torch tensors
and CUDA device arrays recognised without importing torch, graph signatures and inputs.

torch is never imported at module level: a torch tensor is recognised by
``type(x).__module__``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE
from hardnet_export.errors import InputError, InputTypeError
from hardnet_export.geometry import PATCH_SIZE, to_uint8

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


def graph_input(
    batch: np.ndarray, input_dtype: str, fixed_batch: int | None, multiple: int = 1
) -> np.ndarray:
    """A validated host batch in the dtype a graph's input declares, padded with zero patches
    to the graph's batch when it has a fixed one, or up to a ``multiple`` of patches (a
    packed graph's, :mod:`hardnet_export.runtime.packing`); the caller keeps the first
    ``len(batch)``.

    Shape:
        - batch: (n, 1, 32, 32) uint8 or float32.
        - Output: (max(n, fixed_batch), 1, 32, 32), or (n rounded up to ``multiple``, 1,
          32, 32), of ``input_dtype``.
    """
    if input_dtype == "uint8" and batch.dtype != np.uint8:
        # A uint8 graph holds integer grey levels: round float input to them.
        batch = to_uint8(batch)
    elif input_dtype == "float32" and batch.dtype != np.float32:
        batch = batch.astype(np.float32)
    n = len(batch)
    size = fixed_batch if fixed_batch is not None else -(-n // multiple) * multiple
    if n < size:
        padded = np.zeros((size, *batch.shape[1:]), batch.dtype)
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


#: cudaStream_t values that name a default stream rather than a stream of the caller's own:
#: 0 and cudaStreamLegacy (1) the legacy default stream, cudaStreamPerThread (2) the
#: per-thread one (CUDA Runtime API, "Stream synchronization behavior"). TensorRT's
#: enqueueV3 synchronises extra on a default stream (its log: "Using default stream in
#: enqueueV3() may lead to performance issues due to additional calls to
#: cudaStreamSynchronize()"), so no backend hands one to TensorRT.
DEFAULT_STREAM_HANDLES = (0, 1, 2)


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
