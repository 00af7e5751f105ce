"""The few CUDA runtime calls the GPU backends need, through cuda-python (``cuda.bindings``).

cuda-python returns ``(error, *values)`` tuples; :func:`check` turns a failure into a
RuntimeError naming the call. Everything imports ``cuda.bindings`` lazily, so this module
loads on a machine without it. Device and TensorRT probes live in ``hardnet_export._cuda``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from hardnet_export.errors import DeviceError, InputError, MissingDependencyError


def _runtime() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise MissingDependencyError(
            "CUDA support needs cuda-python: pip install 'hardnet-export[trt]'"
        ) from exc
    return runtime


def check(result: Any, call: str) -> Any:
    """Unwrap a cuda-python result tuple; raise RuntimeError naming ``call`` on failure.

    Returns:
        None for a bare status, the value for one value, a tuple for several.
    """
    runtime = _runtime()
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != int(runtime.cudaError_t.cudaSuccess):
        _, name = runtime.cudaGetErrorName(err)
        _, text = runtime.cudaGetErrorString(err)
        raise DeviceError(f"{call} failed: {name.decode()} ({text.decode()})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def set_device(index: int) -> None:
    check(_runtime().cudaSetDevice(index), "cudaSetDevice")


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc), freed by :meth:`free` or garbage collection."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = 0  # set first: __del__ runs even when the allocation below fails
        self.ptr = int(check(_runtime().cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free(self) -> None:
        if self.ptr:
            _runtime().cudaFree(self.ptr)
            self.ptr = 0

    def __del__(self) -> None:
        self.free()


class PinnedBuffer:
    """Page-locked host memory (cudaHostAlloc) seen as a numpy array of ``shape`` and ``dtype``.

    Pinned memory lets cudaMemcpyAsync run truly asynchronously and at full bus speed.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> None:
        runtime = _runtime()
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.ptr = 0
        self.ptr = int(
            check(
                runtime.cudaHostAlloc(max(self.nbytes, 1), runtime.cudaHostAllocDefault),
                "cudaHostAlloc",
            )
        )
        raw = (ctypes.c_uint8 * max(self.nbytes, 1)).from_address(self.ptr)
        self.array: np.ndarray = np.ctypeslib.as_array(raw)[: self.nbytes].view(self.dtype)
        self.array = self.array.reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = np.empty(0, self.dtype)
            _runtime().cudaFreeHost(self.ptr)
            self.ptr = 0

    def __del__(self) -> None:
        self.free()


class Stream:
    """A CUDA stream of this object's own, non-blocking (``cudaStreamNonBlocking``).

    A blocking stream synchronises with the legacy default stream, so while this stream is
    being captured into a graph, legacy default-stream work from another thread would join
    (and invalidate) the capture; the CUDA Runtime API's "Stream synchronization behavior"
    page documents that non-blocking streams take no part in that implicit
    synchronisation. The price: work from other libraries is not ordered before ours by
    accident, so callers order it explicitly with events (:class:`Event`).
    """

    def __init__(self) -> None:
        runtime = _runtime()
        self.handle: Any = check(
            runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking),
            "cudaStreamCreateWithFlags",
        )

    def __int__(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(_runtime().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.handle is not None:
            _runtime().cudaStreamDestroy(self.handle)
            self.handle = None


def memcpy_async(dst: int, src: int, nbytes: int, kind: str, stream: int) -> None:
    """cudaMemcpyAsync with ``kind`` one of ``"h2d"``, ``"d2h"``, ``"d2d"``."""
    runtime = _runtime()
    kinds = {
        "h2d": runtime.cudaMemcpyKind.cudaMemcpyHostToDevice,
        "d2h": runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost,
        "d2d": runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
    }
    check(runtime.cudaMemcpyAsync(dst, src, nbytes, kinds[kind], stream), "cudaMemcpyAsync")


def copy_device_to_host(host: np.ndarray, ptr: int) -> None:
    """Blocking copy of ``host.nbytes`` bytes from device pointer ``ptr`` into ``host``."""
    runtime = _runtime()
    if not host.flags.c_contiguous:
        raise InputError("host buffer must be C-contiguous")
    check(
        runtime.cudaMemcpy(
            host.ctypes.data, ptr, host.nbytes, runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ),
        "cudaMemcpy",
    )


class Graph:
    """A CUDA graph captured from the work queued on ``stream``.

    Usage: ``graph.begin()``, queue the work on ``stream``, ``graph.end()``; then
    ``graph.launch()`` replays it (same device addresses, same shapes) at a fraction of the
    launch cost. When anything between ``begin`` and ``end`` fails, :meth:`abort` ends the
    capture, drops what was captured and clears the error, so the stream stays usable.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._graph: Any = None
        self._exec: Any = None

    def begin(self) -> None:
        runtime = _runtime()
        # ThreadLocal: other threads' unrelated CUDA calls do not invalidate this capture.
        mode = runtime.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(runtime.cudaStreamBeginCapture(self.stream.handle, mode), "cudaStreamBeginCapture")

    def end(self) -> None:
        runtime = _runtime()
        self._graph = check(runtime.cudaStreamEndCapture(self.stream.handle), "EndCapture")
        self._exec = check(runtime.cudaGraphInstantiate(self._graph, 0), "cudaGraphInstantiate")

    def abort(self) -> None:
        """End a capture that failed part-way, free its pieces, and clear the error.

        The CUDA Programming Guide ("Stream Capture", "Invalidation"): an invalidated capture
        must still be ended with cudaStreamEndCapture, which then returns an error and no
        graph; the error is also left for cudaGetLastError, which reading clears. Never
        raises: it runs while another error is on its way up.
        """
        runtime = _runtime()
        try:
            err, status = runtime.cudaStreamIsCapturing(self.stream.handle)
            active = runtime.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone
            if int(err) == 0 and int(status) != int(active):
                result = runtime.cudaStreamEndCapture(self.stream.handle)
                if int(result[0]) == 0 and result[1] is not None:
                    runtime.cudaGraphDestroy(result[1])
        finally:
            runtime.cudaGetLastError()
            self.destroy()

    def launch(self) -> None:
        check(_runtime().cudaGraphLaunch(self._exec, self.stream.handle), "cudaGraphLaunch")

    def destroy(self) -> None:
        runtime = _runtime()
        if self._exec is not None:
            runtime.cudaGraphExecDestroy(self._exec)
            self._exec = None
        if self._graph is not None:
            runtime.cudaGraphDestroy(self._graph)
            self._graph = None


class Event:
    """A CUDA event: timing-free by default, to order work across streams without a host
    wait; ``timing=True`` for :func:`elapsed_seconds` (benchmarks)."""

    def __init__(self, timing: bool = False) -> None:
        runtime = _runtime()
        flags = runtime.cudaEventDefault if timing else runtime.cudaEventDisableTiming
        self.handle: Any = check(
            runtime.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags"
        )

    def synchronize(self) -> None:
        """Wait on the host until the last recorded point has run."""
        check(_runtime().cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def record(self, stream: Any) -> None:
        check(_runtime().cudaEventRecord(self.handle, stream), "cudaEventRecord")

    def wait_on(self, stream: Any) -> None:
        """Make ``stream`` wait (on the device) until the last recorded point has run."""
        check(_runtime().cudaStreamWaitEvent(stream, self.handle, 0), "cudaStreamWaitEvent")

    def destroy(self) -> None:
        if self.handle is not None:
            _runtime().cudaEventDestroy(self.handle)
            self.handle = None


def elapsed_seconds(start: Event, end: Event) -> float:
    """Device time between two recorded timing events (both created with ``timing=True``)."""
    ms = check(_runtime().cudaEventElapsedTime(start.handle, end.handle), "cudaEventElapsedTime")
    return float(ms) / 1e3


#: The alignment ``set_tensor_address`` needs (TensorRT API reference,
#: IExecutionContext::setTensorAddress: at least 256-byte alignment); cudaMalloc and
#: torch's caching allocator return such pointers, a view at an odd offset may not.
TENSOR_ALIGNMENT = 256


def check_alignment(ptr: int, what: str) -> None:
    """Raise :class:`InputError` unless device pointer ``ptr`` is 256-byte aligned."""
    if ptr % TENSOR_ALIGNMENT:
        raise InputError(
            f"{what} must start on a {TENSOR_ALIGNMENT}-byte boundary for TensorRT, got "
            f"address {ptr:#x} (offset {ptr % TENSOR_ALIGNMENT}); pass a fresh or "
            "contiguous copy instead of a view into another buffer"
        )


def stream_synchronize(stream: Any) -> None:
    check(_runtime().cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def pointer_device(ptr: int) -> int | None:
    """The device index that owns device pointer ``ptr`` (None for host/unregistered memory)."""
    runtime = _runtime()
    attrs = check(runtime.cudaPointerGetAttributes(ptr), "cudaPointerGetAttributes")
    if int(attrs.type) not in (
        int(runtime.cudaMemoryType.cudaMemoryTypeDevice),
        int(runtime.cudaMemoryType.cudaMemoryTypeManaged),
    ):
        return None
    return int(attrs.device)
