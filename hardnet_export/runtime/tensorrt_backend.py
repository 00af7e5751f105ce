"""TensorRT backend: ``.engine`` / ``.plan`` files (TensorRT 10 and 11) through cuda-python.

Loading checks, in this order, before any TensorRT object exists: the file, a CUDA device,
the TensorRT installation, and the engine's JSON sidecar (``X.engine.json``,
:class:`hardnet_export.artifacts.sidecar.EngineSidecar`, which the builder writes) against the
running TensorRT version and GPU. A mismatch raises
:class:`~hardnet_export.artifacts.sidecar.EngineMismatchError` with the command that rebuilds
the engine; that check needs neither TensorRT nor a GPU.

At run time the engine is deserialised once into one execution context with its own CUDA
stream, device buffers (``cudaMalloc``) and pinned host buffers (``cudaHostAlloc``) sized for
``max_batch``. A batch of exactly ``max_batch`` host patches replays a CUDA graph of the
whole copy-in, ``execute_async_v3``, copy-out sequence; other sizes are enqueued directly.
Device input (a CUDA torch tensor or any ``__cuda_array_interface__`` object) is read in
place, and a torch tensor gets its descriptors written straight into a new CUDA tensor.

Thread safety: one execution context serves all calls, so every enqueue runs under a lock,
and an event orders work across the streams callers pass in. ``describe`` may be called
from any number of threads; calls are serialised on the GPU.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export._cuda import device_properties, require_tensorrt
from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE
from hardnet_export.artifacts.sidecar import (
    EngineMismatchError,
    EngineSidecar,
    read_sidecar,
    rebuild_command,
)
from hardnet_export.errors import (
    DeviceError,
    InputError,
    InputTypeError,
    MissingFileError,
    StateError,
)
from hardnet_export.geometry import PATCH_SIZE, to_uint8
from hardnet_export.runtime import cudart
from hardnet_export.runtime.base import (
    Describer,
    cuda_array_interface,
    device_patch_shape,
    stream_handle,
    validate_torch_patches,
)

if TYPE_CHECKING:
    import tensorrt as trt

PATCH_PIXELS = PATCH_SIZE * PATCH_SIZE


def _device_index(device: str | None) -> int:
    if device is None or device == "cuda":
        return 0
    kind, _, index = device.partition(":")
    if kind != "cuda" or not index.isdigit():
        raise InputError(f"the tensorrt backend runs on 'cuda' or 'cuda:N', got {device!r}")
    return int(index)


class TensorRTDescriber(Describer):
    """A HardNet TensorRT engine.

    Options (``runtime.load(..., **options)``):
        cuda_graph: replay a CUDA graph for batches of exactly ``max_batch`` (default True).
        dla_core: run on this DLA core (Jetson; the engine must have been built for DLA);
            default: the core recorded in the sidecar, if any.
    """

    backend = "tensorrt"

    def __init__(
        self,
        engine: trt.ICudaEngine,
        artifact: Path,
        *,
        device_index: int,
        max_batch: int | None,
        precision: str,
        cuda_graph: bool = True,
    ) -> None:
        import tensorrt as trt

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(
                f"{artifact} is not a HardNet engine: expected one input and one output, "
                f"got inputs {inputs} and outputs {outputs}"
            )
        self._input, self._output = inputs[0], outputs[0]
        in_dtype = engine.get_tensor_dtype(self._input)
        if in_dtype == trt.DataType.UINT8:
            input_dtype = "uint8"
        elif in_dtype == trt.DataType.FLOAT:
            input_dtype = "float32"
        else:
            raise InputError(f"{artifact}: input dtype {in_dtype} is not uint8 or float32")
        if engine.get_tensor_dtype(self._output) != trt.DataType.FLOAT:
            raise InputError(f"{artifact}: output {self._output!r} is not float32")
        dims = engine.get_tensor_shape(self._input)
        shape = tuple(int(dims[i]) for i in range(len(dims)))
        if len(shape) != 4 or shape[1:] != (1, PATCH_SIZE, PATCH_SIZE):
            raise InputError(
                f"{artifact} is not a HardNet engine: input shape {shape}, "
                f"expected (N, 1, {PATCH_SIZE}, {PATCH_SIZE})"
            )
        if shape[0] == -1:
            low, _, high = engine.get_tensor_profile_shape(self._input, 0)
            min_batch, profile_max = int(low[0]), int(high[0])
        else:
            min_batch = profile_max = int(shape[0])
        if max_batch is not None and not min_batch <= max_batch <= profile_max:
            raise InputError(
                f"max_batch={max_batch} is outside the engine's profile "
                f"[{min_batch}, {profile_max}]; rebuild the engine with a larger profile"
            )
        super().__init__(
            artifact,
            precision=precision,
            device=f"cuda:{device_index}",
            max_batch=max_batch or profile_max,
            input_dtype=input_dtype,
        )
        self.min_batch = min_batch
        self.profile_max_batch = profile_max
        self.engine = engine
        self._device_index = device_index
        self._np_in = np.dtype(input_dtype)
        batch = self.max_batch or profile_max
        self._lock = threading.Lock()
        self.context: trt.IExecutionContext = engine.create_execution_context()
        if self.context is None:
            raise DeviceError(f"TensorRT could not create an execution context for {artifact}")
        self.stream = cudart.Stream()
        self._event = cudart.Event()
        self._d_in = cudart.DeviceBuffer(batch * PATCH_PIXELS * self._np_in.itemsize)
        self._d_out = cudart.DeviceBuffer(batch * DESCRIPTOR_SIZE * 4)
        self._h_in = cudart.PinnedBuffer((batch, 1, PATCH_SIZE, PATCH_SIZE), self._np_in)
        self._h_out = cudart.PinnedBuffer((batch, DESCRIPTOR_SIZE), np.float32)
        self._graph: cudart.Graph | None = None
        self._timing: tuple[cudart.Event, cudart.Event] | None = None
        self._shape_set: int | None = None
        self._keep: tuple[Any, ...] = ()
        self.sidecar: EngineSidecar | None = None
        if cuda_graph:
            self._capture_graph(batch)

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        device: str | None = None,
        max_batch: int | None = None,
        cuda_graph: bool = True,
        dla_core: int | None = None,
    ) -> TensorRTDescriber:
        """Check and deserialise an engine (see the module docstring for the order of checks).

        Raises:
            FileNotFoundError: no engine file.
            MissingDependencyError (a RuntimeError): no CUDA device or no TensorRT.
            EngineMismatchError: built for another TensorRT version or GPU, or unreadable.
        """
        if path is None:
            raise InputError(
                "the tensorrt backend needs an engine path; build one with "
                "'hardnet-export trt MODEL.onnx -o model.engine'"
            )
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"TensorRT engine not found: {path}")
        index = _device_index(device)
        # No TensorRT object may exist without a CUDA device (it can crash the process
        # later): require_tensorrt checks the device and the installation, creating nothing.
        require_tensorrt(index, purpose="running a TensorRT engine")
        import tensorrt as trt

        cudart.set_device(index)
        gpu = device_properties(index)
        sidecar = read_sidecar(path)
        if sidecar is not None:
            sidecar.check(
                path,
                tensorrt_version=trt.__version__,
                gpu_name=gpu["name"],
                compute_capability=gpu["compute_capability"],
            )
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        if dla_core is None and sidecar is not None and sidecar.dla_core is not None:
            dla_core = sidecar.dla_core  # an engine built for a DLA core runs there
        if dla_core is not None:
            runtime.DLA_core = dla_core
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            rebuild = sidecar.rebuild_command(path) if sidecar else rebuild_command(path)
            raise EngineMismatchError(
                f"TensorRT {trt.__version__} could not deserialise {path} on {gpu['name']} (it is "
                "corrupt, or was built for another TensorRT version or GPU; see the TensorRT "
                f"log above). Rebuild it: {rebuild}"
            )
        describer = cls(
            engine,
            path,
            device_index=index,
            max_batch=max_batch,
            precision=sidecar.precision if sidecar else "unknown",
            cuda_graph=cuda_graph,
        )
        describer._keep = (logger, runtime)  # the engine must not outlive its runtime
        describer.sidecar = sidecar
        return describer

    # -- enqueueing (callers hold self._lock) -------------------------------------------

    def _enqueue(
        self, n: int, in_ptr: int, out_ptr: int, stream: int, *, order: bool = True
    ) -> None:
        """Queue one inference of ``n`` patches from ``in_ptr`` into ``out_ptr`` on ``stream``.

        ``order`` makes ``stream`` wait for the previous inference on any stream (the
        context's scratch memory is shared) and marks this one; it is off while capturing a
        graph, where waiting on an event recorded outside the capture is not allowed.
        """
        if order:
            self._event.wait_on(stream)
        if self._shape_set != n:
            if not self.context.set_input_shape(self._input, (n, 1, PATCH_SIZE, PATCH_SIZE)):
                raise DeviceError(f"TensorRT rejected input shape ({n}, 1, 32, 32)")
            self._shape_set = n
        self.context.set_tensor_address(self._input, in_ptr)
        self.context.set_tensor_address(self._output, out_ptr)
        if not self.context.execute_async_v3(stream):
            raise DeviceError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        if order:
            self._event.record(stream)

    def _enqueue_host(self, n: int, *, order: bool = True) -> None:
        """Copy ``n`` staged patches in, infer, copy descriptors out, on the own stream."""
        stream = int(self.stream)
        in_bytes = n * PATCH_PIXELS * self._np_in.itemsize
        cudart.memcpy_async(self._d_in.ptr, self._h_in.ptr, in_bytes, "h2d", stream)
        self._enqueue(n, self._d_in.ptr, self._d_out.ptr, stream, order=order)
        out_bytes = n * DESCRIPTOR_SIZE * 4
        cudart.memcpy_async(self._h_out.ptr, self._d_out.ptr, out_bytes, "d2h", stream)

    def _capture_graph(self, batch: int) -> None:
        # TensorRT needs one execution with the final shapes before a capture, so that its
        # deferred shape-dependent setup is not recorded into the graph.
        self._h_in.array[:] = 0
        self._enqueue_host(batch)
        self.stream.synchronize()
        graph = cudart.Graph(self.stream)
        graph.begin()
        try:
            self._enqueue_host(batch, order=False)
        finally:
            graph.end()
        self._graph = graph

    # -- Describer -------------------------------------------------------------------------

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._infer_locked(batch)

    def _check_open(self) -> None:
        if not self._d_in.ptr:
            raise StateError(f"{self.artifact}: this describer was closed; load it again")

    def _infer_locked(self, batch: np.ndarray) -> np.ndarray:
        self._check_open()
        if batch.dtype != self._np_in:
            batch = to_uint8(batch) if self._np_in == np.uint8 else batch.astype(self._np_in)
        n = len(batch)
        run = max(n, self.min_batch)  # a profile minimum above n: zero patches fill the rest
        self._h_in.array[:n] = batch
        self._h_in.array[n:run] = 0
        if self._graph is not None and run == self.max_batch:
            if self._shape_set != run:
                self.context.set_input_shape(self._input, (run, 1, PATCH_SIZE, PATCH_SIZE))
                self._shape_set = run
            self._event.wait_on(int(self.stream))
            self._graph.launch()
            self._event.record(int(self.stream))
        else:
            self._enqueue_host(run)
        self.stream.synchronize()
        return self._h_out.array[:n].copy()

    def _infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Copy in, infer, copy out on the own stream with timing events around the inference
        alone. The CUDA graph is not replayed here: it holds the copies and the inference as
        one unit, and this call exists to tell them apart."""
        if batch.dtype != self._np_in:
            batch = to_uint8(batch) if self._np_in == np.uint8 else batch.astype(self._np_in)
        n = len(batch)
        run = max(n, self.min_batch)
        stream = int(self.stream)
        with self._lock:
            if self._timing is None:
                self._timing = (cudart.Event(timing=True), cudart.Event(timing=True))
            start, end = self._timing
            self._h_in.array[:n] = batch
            self._h_in.array[n:run] = 0
            in_bytes = run * PATCH_PIXELS * self._np_in.itemsize
            cudart.memcpy_async(self._d_in.ptr, self._h_in.ptr, in_bytes, "h2d", stream)
            start.record(stream)
            self._enqueue(run, self._d_in.ptr, self._d_out.ptr, stream)
            end.record(stream)
            out_bytes = run * DESCRIPTOR_SIZE * 4
            cudart.memcpy_async(self._h_out.ptr, self._d_out.ptr, out_bytes, "d2h", stream)
            self.stream.synchronize()
            return self._h_out.array[:n].copy(), cudart.elapsed_seconds(start, end)

    def _describe_device(
        self, n: int, in_ptr: int, itemsize: int, out_ptr: int | None, stream: int
    ) -> np.ndarray | None:
        """Infer ``n`` device patches at ``in_ptr`` in chunks of ``max_batch`` on ``stream``.

        With ``out_ptr`` the descriptors go there (device) and nothing is returned;
        without it they come back to the host.
        """
        step = self.max_batch or n
        host = None if out_ptr is not None else np.empty((n, DESCRIPTOR_SIZE), np.float32)
        with self._lock:
            self._check_open()
            for start in range(0, n, step):
                m = min(step, n - start)
                if m < self.min_batch:  # too few for the profile: go through the host path
                    staged = np.empty((m, 1, PATCH_SIZE, PATCH_SIZE), self._np_in)
                    cudart.stream_synchronize(stream)
                    cudart.copy_device_to_host(staged, in_ptr + start * PATCH_PIXELS * itemsize)
                    part = self._infer_locked(staged)
                    if out_ptr is None:
                        assert host is not None
                        host[start : start + m] = part
                    else:
                        target = out_ptr + start * DESCRIPTOR_SIZE * 4
                        cudart.memcpy_async(target, part.ctypes.data, part.nbytes, "h2d", stream)
                        cudart.stream_synchronize(stream)
                    continue
                src = in_ptr + start * PATCH_PIXELS * itemsize
                if out_ptr is not None:
                    self._enqueue(m, src, out_ptr + start * DESCRIPTOR_SIZE * 4, stream)
                else:
                    assert host is not None
                    self._enqueue(m, src, self._d_out.ptr, stream)
                    cudart.memcpy_async(
                        self._h_out.ptr, self._d_out.ptr, m * DESCRIPTOR_SIZE * 4, "d2h", stream
                    )
                    cudart.stream_synchronize(stream)
                    host[start : start + m] = self._h_out.array[:m]
        return host

    def _describe_torch(self, patches: Any, stream: Any) -> Any:
        import torch

        if patches.device.type != "cuda":
            return super()._describe_torch(patches, stream)
        if patches.device.index not in (None, self._device_index):
            raise InputError(
                f"patches are on {patches.device}, the engine runs on cuda:{self._device_index}"
            )
        batch = validate_torch_patches(patches)
        torch_dtype = torch.uint8 if self.input_dtype == "uint8" else torch.float32
        if batch.dtype != torch_dtype:
            # geometry.to_uint8's rule (round half to even), on the device.
            batch = batch.round() if torch_dtype == torch.uint8 else batch
            batch = batch.to(torch_dtype)
        batch = batch.contiguous()  # a no-op for contiguous input: read in place
        n = batch.shape[0]
        out = torch.empty((n, DESCRIPTOR_SIZE), dtype=torch.float32, device=patches.device)
        if n == 0:
            return out
        handle = stream_handle(stream)
        if handle is None:
            handle = torch.cuda.current_stream(patches.device).cuda_stream
        else:
            # Tell torch's caching allocator these tensors are in use on the caller's stream.
            external = torch.cuda.ExternalStream(handle, device=patches.device)
            batch.record_stream(external)
            out.record_stream(external)
        self._describe_device(n, batch.data_ptr(), batch.element_size(), out.data_ptr(), handle)
        return out

    def _describe_cuda_array(self, patches: Any, stream: Any) -> Any:
        iface = cuda_array_interface(patches)
        assert iface is not None
        shape, dtype = device_patch_shape(iface)
        if dtype != self.input_dtype:
            raise InputTypeError(
                f"this engine takes {self.input_dtype} patches; device input is read in place, "
                f"so convert it on the device first (got {dtype})"
            )
        n = shape[0]
        if n == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        ptr = int(iface["data"][0])
        owner = cudart.pointer_device(ptr)
        if owner is None:
            raise InputError("__cuda_array_interface__ points to memory that is not on a GPU")
        if owner != self._device_index:
            raise InputError(f"patches are on cuda:{owner}, the engine runs on {self.device}")
        handle = stream_handle(stream)
        if handle is None:
            producer = iface.get("stream")
            if isinstance(producer, int) and producer not in (0,):
                # The producer's stream (1 = legacy default, 2 = per-thread default) must
                # finish writing the array before the engine reads it.
                cudart.stream_synchronize(producer)
            handle = int(self.stream)
        host = self._describe_device(n, ptr, np.dtype(dtype).itemsize, None, handle)
        return host

    def close(self) -> None:
        """Free the graph, buffers and stream now rather than at garbage collection."""
        with self._lock:
            if self._graph is not None:
                self._graph.destroy()
                self._graph = None
            for buffer in (self._d_in, self._d_out, self._h_in, self._h_out):
                buffer.free()
            self._event.destroy()
            for event in self._timing or ():
                event.destroy()
            self._timing = None
            self.stream.destroy()
