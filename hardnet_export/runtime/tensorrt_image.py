"""Image engines on TensorRT: ``compute(image, keypoints)`` as one enqueue on the GPU.

An engine built from an image graph (``hardnet-export trt model.image.onnx``; sidecar
``graph_kind`` ``image``) is loaded by the tensorrt backend's ``open``
(:func:`hardnet_export.runtime.tensorrt_backend.load_engine`: the same checks of device,
TensorRT and sidecar as a patch engine), which hands it to :class:`TensorRTImageDescriber`
through the registry's kind table. The host rules (keypoint bounds, the graph's magnification,
smallest side and deepest level) are :class:`~hardnet_export.runtime.image.ImageDescriber`'s;
here, per call and on the describer's own stream: one host-to-device copy of the image
(uint8) and one of the keypoints, both input shapes set within the engine's profile,
``execute_async_v3``, one device-to-host copy of the descriptors. Device buffers grow to the
largest call so far and are freed by :meth:`TensorRTImageDescriber.close`.

Shapes change with every image, so no CUDA graph is captured (a graph is bound to the shapes
its context had at capture: TensorRT Best Practices, "CUDA Graphs"). Thread safety: every
call runs under a lock, which also makes the engine's device current for the calling thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE
from hardnet_export.artifacts.sidecar import KEYPOINT_ROW
from hardnet_export.errors import DeviceError, InputError, StateError
from hardnet_export.runtime import cudart
from hardnet_export.runtime.base import KeypointDescriber
from hardnet_export.runtime.image import IMAGE_GRAPH_REMEDY, ImageDescriber, check_image_inputs
from hardnet_export.runtime.tensorrt_backend import LoadedEngine, TensorRTDescriber, io_tensors

if TYPE_CHECKING:
    import tensorrt as trt

#: What each input and the output must hold, as TensorRT names the types.
_DTYPES = {"image": "UINT8", "keypoints": "FLOAT"}


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


class TensorRTImageDescriber(ImageDescriber):
    """An engine of an image graph (the registry's ``image`` entry of the tensorrt backend).

    Opened by ``runtime.load(engine)`` with the tensorrt backend's options: ``device`` and
    ``trust_host_code`` as for patch engines; ``max_batch`` does not apply (one call takes
    every keypoint up to the profile's maximum) and is ignored; ``cuda_graph=True`` and
    ``dla_core`` are refused.

    Attributes:
        image_profile: ((min height, min width), (max height, max width)) of the engine.
        keypoint_profile: (min K, max K) of the engine.
    """

    backend = "tensorrt"

    def __init__(self, loaded: LoadedEngine) -> None:
        artifact, sidecar = loaded.path, loaded.sidecar
        if sidecar is None:  # load_engine's kind is "patches" without a sidecar
            raise InputError(f"{artifact}: an image engine needs its sidecar")
        super().__init__(
            artifact,
            sidecar,
            device=f"cuda:{loaded.device_index}",
            remedy=IMAGE_GRAPH_REMEDY,
        )
        import tensorrt as trt

        engine = loaded.engine
        inputs, outputs = io_tensors(engine)
        check_image_inputs(artifact, inputs)
        if len(outputs) != 1:
            raise InputError(
                f"{artifact} is not an image engine: expected one output (descriptors), got "
                f"{outputs}"
            )
        self._output = outputs[0]
        for name, wanted in (*_DTYPES.items(), (self._output, "FLOAT")):
            dtype = engine.get_tensor_dtype(name)
            if dtype != getattr(trt.DataType, wanted):
                raise InputError(f"{artifact}: tensor {name!r} is {dtype}, expected {wanted}")
        # Profile 0, the one a new execution context uses (IOptimizationProfile: "the first
        # optimization profile ... will be used ... whenever no optimization profile has been
        # selected explicitly").
        low, _, high = (_dims(d) for d in engine.get_tensor_profile_shape("image", 0))
        k_low, _, k_high = (_dims(d) for d in engine.get_tensor_profile_shape("keypoints", 0))
        if len(low) != 2 or len(k_low) != 2 or k_low[1] != KEYPOINT_ROW:
            raise InputError(
                f"{artifact} is not an image engine: profile shapes image {low}..{high}, "
                f"keypoints {k_low}..{k_high}; expected (H, W) and (K, {KEYPOINT_ROW})"
            )
        self.image_profile: tuple[tuple[int, int], tuple[int, int]] = (
            (low[0], low[1]),
            (high[0], high[1]),
        )
        self.keypoint_profile: tuple[int, int] = (k_low[0], k_high[0])
        self.sidecar = sidecar
        self._path = artifact
        self.engine: Any = engine
        self._keep = loaded.keep  # the engine must not outlive its runtime
        self._device_index = loaded.device_index
        self._lock = threading.Lock()
        self.context: Any = engine.create_execution_context()
        if self.context is None:
            raise DeviceError(f"TensorRT could not create an execution context for {artifact}")
        self.stream = cudart.Stream()
        self._buffers: dict[str, cudart.DeviceBuffer] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._closed = False

    @classmethod
    def from_engine(
        cls, loaded: LoadedEngine, *, max_batch: int | None, cuda_graph: bool | None
    ) -> TensorRTImageDescriber:
        """The describer of an image engine :func:`load_engine` deserialised (``max_batch``
        is ignored: see the class docstring).

        Raises:
            InputError: ``cuda_graph=True``, or an engine on a DLA core.
        """
        if cuda_graph:
            raise InputError(
                f"{loaded.path} is an image engine, whose input shapes change with every "
                "image: it runs without a CUDA graph (drop cuda_graph=True)"
            )
        if loaded.dla_core is not None:
            raise InputError(
                f"{loaded.path} is an image engine: DLA has no dynamic shapes; load it "
                "without dla_core"
            )
        return cls(loaded)

    @classmethod
    def open(cls, path: Path | None, **options: Any) -> KeypointDescriber:
        """Open an engine through the tensorrt backend's patch class, which checks and
        deserialises it and builds this class for an image engine."""
        return TensorRTDescriber.open(path, **options)

    # -- the profile -----------------------------------------------------------------------

    def _check_profile(self, height: int, width: int, count: int) -> None:
        """Raise :class:`InputError` naming the rebuild flags when an image of ``height`` x
        ``width`` or ``count`` keypoints is outside the engine's profile."""
        (min_h, min_w), (max_h, max_w) = self.image_profile
        if not (min_h <= height <= max_h and min_w <= width <= max_w):
            wider = (max(height, max_h), max(width, max_w))
            raise InputError(
                f"{self.artifact} was built for images from {min_w}x{min_h} to {max_w}x{max_h} "
                f"pixels (WIDTHxHEIGHT), got {width}x{height}; rebuild it with a larger "
                "profile: {remedy}",
                remedy=self.sidecar.rebuild_remedy(self._path, max_image=wider),
            )
        low, high = self.keypoint_profile
        if not low <= count <= high:
            raise InputError(
                f"{self.artifact} was built for {low} to {high} keypoints per call, got "
                f"{count} in bounds; describe them in smaller groups, or rebuild it with a "
                "larger profile: {remedy}",
                remedy=self.sidecar.rebuild_remedy(self._path, max_keypoints=max(count, high)),
            )

    # -- one call --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock with the engine's device current for this thread (``cudaSetDevice``
        is per host thread)."""
        with self._lock:
            if self._closed:
                raise StateError(f"{self.artifact}: this describer was closed; load it again")
            cudart.set_device(self._device_index)
            yield

    def _buffer(self, name: str, nbytes: int) -> int:
        """The device buffer of tensor ``name``, grown to at least ``nbytes``; its address.

        Growing frees the old buffer: every call ends with a stream synchronisation, so no
        queued work still reads it.
        """
        buffer = self._buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                buffer.free()
            buffer = self._buffers[name] = cudart.DeviceBuffer(nbytes)
        return buffer.ptr

    def _set_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if self._shapes.get(name) == shape:
            return
        if not self.context.set_input_shape(name, shape):
            raise DeviceError(
                f"TensorRT rejected shape {shape} for {name!r} of {self.artifact} (profile: "
                f"image {self.image_profile}, keypoints {self.keypoint_profile})"
            )
        self._shapes[name] = shape

    def _run_image(self, gray: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Copy in, set shapes and addresses, ``execute_async_v3``, copy out; one stream.

        Shape:
            - gray: (H, W) uint8, C-contiguous, within the engine's image profile.
            - keypoints: (K, 4) float32, C-contiguous, K within the keypoint profile.
            - Output: (K, 128) float32.
        """
        height, width = gray.shape
        count = len(keypoints)
        self._check_profile(height, width, count)
        out = np.empty((count, DESCRIPTOR_SIZE), np.float32)
        with self._locked():
            stream = int(self.stream)
            addresses = {
                "image": self._buffer("image", gray.nbytes),
                "keypoints": self._buffer("keypoints", keypoints.nbytes),
                self._output: self._buffer(self._output, out.nbytes),
            }
            # Pageable host memory: cudaMemcpyAsync stages it before returning (CUDA Runtime
            # API, "API synchronization behavior"), and the stream is synchronised below
            # before `out` is read, so the arrays stay valid throughout.
            cudart.memcpy_async(addresses["image"], gray.ctypes.data, gray.nbytes, "h2d", stream)
            cudart.memcpy_async(
                addresses["keypoints"], keypoints.ctypes.data, keypoints.nbytes, "h2d", stream
            )
            self._set_shape("image", (height, width))
            self._set_shape("keypoints", (count, KEYPOINT_ROW))
            shape = _dims(self.context.get_tensor_shape(self._output))
            if shape != (count, DESCRIPTOR_SIZE):
                raise DeviceError(
                    f"{self.artifact}: TensorRT gives output {self._output!r} shape {shape} for "
                    f"{count} keypoints, expected ({count}, {DESCRIPTOR_SIZE})"
                )
            for name, address in addresses.items():
                # Every tensor's address is set each call (cheap): a grown buffer moves.
                if not self.context.set_tensor_address(name, address):
                    raise DeviceError(f"TensorRT rejected the address of {name!r}")
            if not self.context.execute_async_v3(stream):
                raise DeviceError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            cudart.memcpy_async(out.ctypes.data, addresses[self._output], out.nbytes, "d2h", stream)
            self.stream.synchronize()
        return out

    def close(self) -> None:
        """Free the execution context, engine, device buffers and stream now rather than at
        garbage collection; a later ``compute`` raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cudart.set_device(self._device_index)
            self.stream.synchronize()
            # The context holds activation memory: it goes before the engine, the engine
            # before its runtime.
            self.context = None
            self.engine = None
            self._keep = ()
            for buffer in self._buffers.values():
                buffer.free()
            self._buffers.clear()
            self._shapes.clear()
            self.stream.destroy()
