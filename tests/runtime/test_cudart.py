"""The CUDA runtime wrapper: its no-device errors here, its buffers on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export._cuda import cuda_device_count
from hardnet_export.runtime import cudart

pytest.importorskip("cuda.bindings")
NO_GPU = pytest.mark.skipif(cuda_device_count() > 0, reason="checks the no-GPU path")


@NO_GPU
def test_failures_name_the_call() -> None:
    with pytest.raises(RuntimeError, match=r"cudaMalloc failed: cudaError"):
        cudart.DeviceBuffer(16)
    with pytest.raises(RuntimeError, match=r"cudaHostAlloc failed"):
        cudart.PinnedBuffer((4, 4), np.float32)


class FakeDeviceArray:
    """Claims to be device memory; on a machine without CUDA the copy must fail cleanly."""

    def __init__(self, shape: tuple[int, ...], typestr: str = "|u1", strides: object = None):
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (1 << 20, False),
            "version": 3,
            "strides": strides,
        }


@NO_GPU
def test_device_array_without_a_device(onnx_model: object) -> None:
    d = runtime.load(onnx_model)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="cudaMemcpy failed"):
        d.describe(FakeDeviceArray((2, 32, 32)))


def test_device_array_is_validated_before_any_copy(onnx_model: object) -> None:
    d = runtime.load(onnx_model)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"got \(2, 32, 33\)"):
        d.describe(FakeDeviceArray((2, 32, 33)))
    with pytest.raises(TypeError, match="int16"):
        d.describe(FakeDeviceArray((2, 32, 32), "<i2"))
    with pytest.raises(ValueError, match="C-contiguous"):
        d.describe(FakeDeviceArray((2, 32, 32), "|u1", (1, 64, 2)))
    assert d.describe(FakeDeviceArray((0, 32, 32))).shape == (0, 128)


@pytest.mark.gpu
def test_pinned_and_device_round_trip() -> None:
    host = cudart.PinnedBuffer((3, 5), np.float32)
    host.array[:] = np.arange(15, dtype=np.float32).reshape(3, 5)
    device = cudart.DeviceBuffer(host.nbytes)
    stream = cudart.Stream()
    cudart.memcpy_async(device.ptr, host.ptr, host.nbytes, "h2d", int(stream))
    back = np.empty((3, 5), np.float32)
    stream.synchronize()
    cudart.copy_device_to_host(back, device.ptr)
    np.testing.assert_array_equal(back, host.array)
    assert cudart.pointer_device(device.ptr) == 0
    for resource in (device, host, stream):
        resource.free() if hasattr(resource, "free") else resource.destroy()


@pytest.mark.gpu
def test_own_streams_are_non_blocking() -> None:
    from cuda.bindings import runtime as cuda_runtime

    stream = cudart.Stream()
    flags = cudart.check(cuda_runtime.cudaStreamGetFlags(stream.handle), "cudaStreamGetFlags")
    assert int(flags) & int(cuda_runtime.cudaStreamNonBlocking)
    stream.destroy()


@pytest.mark.gpu
def test_a_failed_capture_is_aborted_and_the_stream_stays_usable() -> None:
    host = cudart.PinnedBuffer((256,), np.float32)
    device = cudart.DeviceBuffer(host.nbytes)
    stream = cudart.Stream()
    graph = cudart.Graph(stream)
    graph.begin()
    with pytest.raises(RuntimeError):
        # A synchronous copy is not allowed while capturing: it invalidates the capture.
        cudart.copy_device_to_host(np.empty(256, np.float32), device.ptr)
        graph.end()
    graph.abort()
    host.array[:] = 3.0
    cudart.memcpy_async(device.ptr, host.ptr, host.nbytes, "h2d", int(stream))
    stream.synchronize()
    back = np.empty(256, np.float32)
    cudart.copy_device_to_host(back, device.ptr)
    assert (back == 3.0).all()


@pytest.mark.gpu
def test_graph_of_one_copy() -> None:
    host = cudart.PinnedBuffer((64,), np.float32)
    device = cudart.DeviceBuffer(host.nbytes)
    stream = cudart.Stream()
    graph = cudart.Graph(stream)
    graph.begin()
    cudart.memcpy_async(device.ptr, host.ptr, host.nbytes, "h2d", int(stream))
    graph.end()
    for value in (1.0, 2.0):
        host.array[:] = value
        graph.launch()
        stream.synchronize()
        back = np.empty(64, np.float32)
        cudart.copy_device_to_host(back, device.ptr)
        assert (back == value).all()
    graph.destroy()
