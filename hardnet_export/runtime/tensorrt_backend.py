"""TensorRT backend: ``.engine`` / ``.plan`` files (TensorRT 10 and 11) through cuda-python.

Loading checks, in this order, before any TensorRT object exists: the file, a CUDA device,
the TensorRT installation, and the engine's JSON sidecar (``X.engine.json``,
:class:`hardnet_export.artifacts.sidecar.EngineSidecar`, which the builder writes) against the
running TensorRT version and GPU. A mismatch raises
:class:`~hardnet_export.artifacts.sidecar.EngineMismatchError` with the command that rebuilds
the engine; that check needs neither TensorRT nor a GPU. Those checks are one function,
:func:`load_engine`, for engines of every graph kind: the sidecar's ``graph_kind`` then picks
the describer class from the registry's kind table (an image graph's engine goes to
:class:`~hardnet_export.runtime.tensorrt_image.TensorRTImageDescriber`).

At run time the engine is deserialised once, with its own non-blocking CUDA stream, device
buffers (``cudaMalloc``) and pinned host buffers (``cudaHostAlloc``) sized for ``max_batch``.
A batch of exactly ``max_batch`` host patches replays a CUDA graph of the whole copy-in,
``execute_async_v3``, copy-out sequence; that graph has an execution context of its own,
which nothing else touches: a graph is bound to the shapes and tensor addresses its context
had at capture (TensorRT Best Practices, "CUDA Graphs"), and every other call (partial
batches, device input, timing) goes through a second context whose shape changes freely.
Device input (a CUDA torch tensor or any ``__cuda_array_interface__`` object) is read in
place, and a torch tensor gets its descriptors written straight into a new CUDA tensor.

Thread safety: every enqueue runs under a lock, which also makes the engine's device current
for the calling thread (``cudaSetDevice`` is per thread), and an event orders work across
the streams callers pass in. ``describe`` may be called from any number of threads; calls
are serialised on the GPU.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export._cuda import device_properties, require_tensorrt
from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE, batch_slices
from hardnet_export.artifacts.sidecar import (
    EngineMismatchError,
    EngineSidecar,
    read_sidecar,
    rebuild_remedy,
    sidecar_path,
)
from hardnet_export.errors import (
    DeviceError,
    InputError,
    InputTypeError,
    MissingFileError,
    Remedy,
    StateError,
)
from hardnet_export.geometry import PATCH_SIZE, to_uint8
from hardnet_export.runtime import cudart
from hardnet_export.runtime.base import Describer, kind_class
from hardnet_export.runtime.inputs import (
    DEFAULT_STREAM_HANDLES,
    cuda_array_interface,
    device_patch_shape,
    stream_handle,
    validate_torch_patches,
)
from hardnet_export.validate import parse_device

if TYPE_CHECKING:
    import tensorrt as trt

PATCH_PIXELS = PATCH_SIZE * PATCH_SIZE


def _device_index(device: str | None) -> int:
    parsed = parse_device(device)
    if parsed is None:
        return 0
    if parsed.kind != "cuda":
        raise InputError(f"the tensorrt backend runs on 'cuda' or 'cuda:N', got {device!r}")
    return parsed.index or 0


@dataclass(frozen=True)
class LoadedEngine:
    """A deserialised engine and what came with it: its sidecar (None for a foreign engine),
    device, DLA core, and the TensorRT logger and runtime the engine must not outlive."""

    path: Path
    engine: Any
    sidecar: EngineSidecar | None
    device_index: int
    dla_core: int | None
    keep: tuple[Any, ...]

    @property
    def kind(self) -> str:
        """The graph kind the engine was built from (``patches`` without a sidecar)."""
        return self.sidecar.graph_kind if self.sidecar is not None else "patches"


def load_engine(
    path: Path | str | None,
    *,
    device: str | None = None,
    dla_core: int | None = None,
    trust_host_code: bool = False,
) -> LoadedEngine:
    """Check and deserialise an engine, for any graph kind: the file, a CUDA device and
    TensorRT (before any TensorRT object exists), the sidecar against this TensorRT and GPU,
    then ``deserialize_cuda_engine`` on device ``device`` (made current).

    Raises:
        FileNotFoundError: no engine file.
        MissingDependencyError (a RuntimeError): no CUDA device or no TensorRT.
        EngineMismatchError: built for another TensorRT version or GPU, or unreadable.
    """
    if path is None:
        raise InputError(
            "the tensorrt backend needs an engine path; build one: {remedy}",
            remedy=Remedy(
                stage="trt",
                function="hardnet_export.export.tensorrt.build_engine",
                arguments=("MODEL.onnx",),
                options={"out": "model.engine"},
            ),
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
    host_code = trust_host_code or (sidecar is not None and sidecar.version_compatible)
    if host_code:
        # A version-compatible plan embeds the lean runtime that runs it, which is host
        # code; TensorRT refuses to deserialise it unless the runtime is told to trust it
        # (TensorRT developer guide, "Version Compatibility"; IRuntime
        # engine_host_code_allowed, default False).
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        rebuild = sidecar.rebuild_remedy(path) if sidecar else rebuild_remedy(path)
        hint = (
            ""
            if host_code
            else " If it is a version-compatible plan from a trusted source, load it "
            "with trust_host_code=True."
        )
        raise EngineMismatchError(
            f"TensorRT {trt.__version__} could not deserialise {path} on {gpu['name']} (it is "
            "corrupt, or was built for another TensorRT version or GPU; see the TensorRT "
            f"log above).{hint} Rebuild it: {{remedy}}",
            remedy=rebuild,
        )
    return LoadedEngine(path, engine, sidecar, index, dla_core, (logger, runtime))


def io_tensors(engine: Any) -> tuple[list[str], list[str]]:
    """An engine's input and output tensor names, in the engine's order."""
    import tensorrt as trt

    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    return inputs, outputs


def _patch_engine_io(engine: Any, artifact: Path) -> tuple[str, str, str]:
    """A patch engine's input and output names and its input dtype (``uint8`` or
    ``float32``); an image engine without its sidecar, or anything else, is refused."""
    import tensorrt as trt

    inputs, outputs = io_tensors(engine)
    if sorted(inputs) == ["image", "keypoints"]:
        raise InputError(
            f"{artifact} takes image and keypoints (an engine of an image graph), but has "
            f"no sidecar saying so ({sidecar_path(artifact)}), which holds the graph's "
            "magnification and profile; rebuild it: {remedy}",
            remedy=rebuild_remedy(artifact),
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(
            f"{artifact} is not a HardNet engine: expected one input and one output, "
            f"got inputs {inputs} and outputs {outputs}"
        )
    in_dtype = engine.get_tensor_dtype(inputs[0])
    if in_dtype == trt.DataType.UINT8:
        input_dtype = "uint8"
    elif in_dtype == trt.DataType.FLOAT:
        input_dtype = "float32"
    else:
        raise InputError(f"{artifact}: input dtype {in_dtype} is not uint8 or float32")
    if engine.get_tensor_dtype(outputs[0]) != trt.DataType.FLOAT:
        raise InputError(f"{artifact}: output {outputs[0]!r} is not float32")
    return inputs[0], outputs[0], input_dtype


def _profile_batches(engine: Any, input_name: str, artifact: Path) -> tuple[int, int]:
    """The smallest and largest batch the engine's profile takes (one fixed batch for a
    static engine), after checking its input is a batch of 32x32 patches."""
    dims = engine.get_tensor_shape(input_name)
    shape = tuple(int(dims[i]) for i in range(len(dims)))
    if len(shape) != 4 or shape[1:] != (1, PATCH_SIZE, PATCH_SIZE):
        raise InputError(
            f"{artifact} is not a HardNet engine: input shape {shape}, "
            f"expected (N, 1, {PATCH_SIZE}, {PATCH_SIZE})"
        )
    if shape[0] != -1:
        return int(shape[0]), int(shape[0])
    low, _, high = engine.get_tensor_profile_shape(input_name, 0)
    return int(low[0]), int(high[0])


class TensorRTDescriber(Describer):
    """A HardNet TensorRT engine.

    Options (``runtime.load(..., **options)``):
        cuda_graph: replay a CUDA graph for batches of exactly ``max_batch`` (default: on,
            except on DLA, where trtexec turns graphs off too; a failed capture falls back to
            direct enqueues with a warning naming the cause).
        dla_core: run on this DLA core (Jetson; the engine must have been built for DLA);
            default: the core recorded in the sidecar, if any.
        trust_host_code: deserialise a plan that carries host code (a version-compatible
            plan's lean runtime) although no sidecar says it is one of ours; only for plans
            from a trusted source. Plans whose sidecar says ``version_compatible`` are
            trusted without it.
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
        cuda_graph: bool | None = None,
        dla_core: int | None = None,
    ) -> None:
        self._input, self._output, input_dtype = _patch_engine_io(engine, artifact)
        min_batch, profile_max = _profile_batches(engine, self._input, artifact)
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
        self.engine: Any = engine
        self.dla_core = dla_core
        self._device_index = device_index
        self._np_in = np.dtype(input_dtype)
        batch = self.max_batch or profile_max
        self._lock = threading.Lock()
        self.context: Any = engine.create_execution_context()
        if self.context is None:
            raise DeviceError(f"TensorRT could not create an execution context for {artifact}")
        self._allocate(batch)
        self._graph: cudart.Graph | None = None
        self._graph_context: Any = None
        #: Why no CUDA graph is replayed (None while one is, or none was asked for).
        self.cuda_graph_off: str | None = None
        self._timing: tuple[cudart.Event, cudart.Event] | None = None
        self._shape_set: int | None = None
        self._keep: tuple[Any, ...] = ()
        self.sidecar: EngineSidecar | None = None
        if dla_core is not None:
            # trtexec turns CUDA graphs off for DLA engines: DLA work is not launched as
            # capturable CUDA kernels.
            self.cuda_graph_off = "the engine runs on DLA, where CUDA graphs are not used"
            if cuda_graph:
                warnings.warn(
                    f"{artifact}: cuda_graph=True ignored: {self.cuda_graph_off}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        elif cuda_graph is None or cuda_graph:
            self._capture_graph(batch)

    def _allocate(self, batch: int) -> None:
        """The stream, the events that order it against callers' streams, and pinned and
        device buffers for ``batch`` patches and descriptors."""
        self.stream = cudart.Stream()
        self._event = cudart.Event()  # the last inference, on whichever stream it ran
        self._ready = cudart.Event()  # a producer's stream, joined before we read its input
        self._done = cudart.Event()  # our stream, joined by the caller's before it reads
        self._d_in = cudart.DeviceBuffer(batch * PATCH_PIXELS * self._np_in.itemsize)
        self._d_out = cudart.DeviceBuffer(batch * DESCRIPTOR_SIZE * 4)
        self._h_in = cudart.PinnedBuffer((batch, 1, PATCH_SIZE, PATCH_SIZE), self._np_in)
        self._h_out = cudart.PinnedBuffer((batch, DESCRIPTOR_SIZE), np.float32)

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        device: str | None = None,
        max_batch: int | None = None,
        cuda_graph: bool | None = None,
        dla_core: int | None = None,
        trust_host_code: bool = False,
    ) -> Describer:
        """Check and deserialise an engine (see the module docstring for the order of checks);
        the describer class is the registry's entry for the sidecar's ``graph_kind`` (an
        image engine gives a
        :class:`~hardnet_export.runtime.tensorrt_image.TensorRTImageDescriber`).

        Raises:
            FileNotFoundError: no engine file.
            MissingDependencyError (a RuntimeError): no CUDA device or no TensorRT.
            EngineMismatchError: built for another TensorRT version or GPU, or unreadable.
        """
        loaded = load_engine(
            path, device=device, dla_core=dla_core, trust_host_code=trust_host_code
        )
        # Both kinds' classes take (loaded, *, max_batch, cuda_graph).
        make: Any = kind_class(cls.backend, loaded.kind, loaded.path)
        return make.from_engine(loaded, max_batch=max_batch, cuda_graph=cuda_graph)

    @classmethod
    def from_engine(
        cls, loaded: LoadedEngine, *, max_batch: int | None, cuda_graph: bool | None
    ) -> TensorRTDescriber:
        """The describer of a patch engine :func:`load_engine` deserialised."""
        sidecar = loaded.sidecar
        describer = cls(
            loaded.engine,
            loaded.path,
            device_index=loaded.device_index,
            max_batch=max_batch,
            precision=sidecar.precision if sidecar else "unknown",
            cuda_graph=cuda_graph,
            dla_core=loaded.dla_core,
        )
        describer._keep = loaded.keep  # the engine must not outlive its runtime
        describer.sidecar = sidecar
        return describer

    # -- enqueueing (callers hold self._lock) -------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock with the engine's device current for this thread.

        ``cudaSetDevice`` is per host thread, so a thread other than the one that loaded the
        engine would otherwise enqueue on its own current device (cuda:0).
        """
        with self._lock:
            self._check_open()
            cudart.set_device(self._device_index)
            yield

    def _enqueue(
        self, n: int, in_ptr: int, out_ptr: int, stream: int, *, order: bool = True
    ) -> None:
        """Queue one inference of ``n`` patches from ``in_ptr`` into ``out_ptr`` on ``stream``
        through the direct context (never the graph's).

        ``order`` makes ``stream`` wait for the previous inference on any stream (the
        staging buffers are shared) and marks this one.
        """
        if order:
            self._event.wait_on(stream)
        if self._shape_set != n:
            if not self.context.set_input_shape(self._input, (n, 1, PATCH_SIZE, PATCH_SIZE)):
                raise DeviceError(
                    f"TensorRT rejected input shape ({n}, 1, {PATCH_SIZE}, {PATCH_SIZE})"
                )
            self._shape_set = n
        self.context.set_tensor_address(self._input, in_ptr)
        self.context.set_tensor_address(self._output, out_ptr)
        if not self.context.execute_async_v3(stream):
            raise DeviceError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        if order:
            self._event.record(stream)

    def _copy_in(self, n: int, stream: int) -> None:
        nbytes = n * PATCH_PIXELS * self._np_in.itemsize
        cudart.memcpy_async(self._d_in.ptr, self._h_in.ptr, nbytes, "h2d", stream)

    def _copy_out(self, n: int, stream: int) -> None:
        nbytes = n * DESCRIPTOR_SIZE * 4
        cudart.memcpy_async(self._h_out.ptr, self._d_out.ptr, nbytes, "d2h", stream)

    def _enqueue_host(self, n: int) -> None:
        """Copy ``n`` staged patches in, infer, copy descriptors out, on the own stream."""
        stream = int(self.stream)
        self._copy_in(n, stream)
        self._enqueue(n, self._d_in.ptr, self._d_out.ptr, stream)
        self._copy_out(n, stream)

    def _capture_graph(self, batch: int) -> None:
        """Capture copy-in, inference and copy-out of ``batch`` patches into a CUDA graph on a
        context of its own; on failure, run without a graph and warn why."""
        context = self.engine.create_execution_context()
        if context is None:
            self._graph_off("TensorRT could not create a second execution context")
            return
        stream = int(self.stream)
        if not context.set_input_shape(self._input, (batch, 1, PATCH_SIZE, PATCH_SIZE)):
            self._graph_off(
                f"TensorRT rejected input shape ({batch}, 1, {PATCH_SIZE}, {PATCH_SIZE})"
            )
            return
        context.set_tensor_address(self._input, self._d_in.ptr)
        context.set_tensor_address(self._output, self._d_out.ptr)
        # TensorRT Best Practices, "CUDA Graphs": after a shape change, enqueue once before
        # capturing, so TensorRT's deferred shape-dependent work is not recorded.
        self._h_in.array[:] = 0
        self._copy_in(batch, stream)
        if not context.execute_async_v3(stream):
            self._graph_off("execute_async_v3 failed before capture (see the TensorRT log)")
            return
        self._copy_out(batch, stream)
        self.stream.synchronize()
        graph = cudart.Graph(self.stream)
        try:
            graph.begin()
            self._copy_in(batch, stream)
            if not context.execute_async_v3(stream):
                raise DeviceError("execute_async_v3 failed while capturing (see the TensorRT log)")
            self._copy_out(batch, stream)
            graph.end()
        except Exception as exc:  # TensorRT, CUDA: any failure means "no graph", as trtexec
            graph.abort()
            self._graph_off(f"capture failed: {exc}")
            return
        self._graph, self._graph_context = graph, context

    def _graph_off(self, why: str) -> None:
        # trtexec (TensorRT samples, sampleInference.cpp, --useCudaGraph) does the same: warn,
        # clear the CUDA error, and run the engine without a graph.
        self.cuda_graph_off = why
        warnings.warn(
            f"{self.artifact}: no CUDA graph, running with direct enqueues: {why}",
            RuntimeWarning,
            stacklevel=4,
        )

    # -- Describer -------------------------------------------------------------------------

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with self._locked():
            return self._infer_locked(batch)

    def _check_open(self) -> None:
        if not self._d_in.ptr:
            raise StateError(f"{self.artifact}: this describer was closed; load it again")

    def _infer_locked(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self._np_in:
            batch = to_uint8(batch) if self._np_in == np.uint8 else batch.astype(self._np_in)
        n = len(batch)
        run = max(n, self.min_batch)  # a profile minimum above n: zero patches fill the rest
        stream = int(self.stream)
        self._h_in.array[:n] = batch
        self._h_in.array[n:run] = 0
        if self._graph is not None and run == self.max_batch:
            # The graph's own context still has the shape and addresses it was captured with.
            self._event.wait_on(stream)
            self._graph.launch()
            self._event.record(stream)
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
        with self._locked():
            if self._timing is None:
                self._timing = (cudart.Event(timing=True), cudart.Event(timing=True))
            start, end = self._timing
            self._h_in.array[:n] = batch
            self._h_in.array[n:run] = 0
            self._copy_in(run, stream)
            start.record(stream)
            self._enqueue(run, self._d_in.ptr, self._d_out.ptr, stream)
            end.record(stream)
            self._copy_out(run, stream)
            self.stream.synchronize()
            return self._h_out.array[:n].copy(), cudart.elapsed_seconds(start, end)

    def _describe_device(
        self, n: int, in_ptr: int, itemsize: int, out_ptr: int | None, stream: int
    ) -> np.ndarray | None:
        """Infer ``n`` device patches at ``in_ptr`` in chunks of ``max_batch`` on ``stream``.

        With ``out_ptr`` the descriptors go there (device) and nothing is returned;
        without it they come back to the host. The caller holds the lock.
        """
        cudart.check_alignment(in_ptr, "device patches")
        if out_ptr is not None:
            cudart.check_alignment(out_ptr, "the descriptor output")
        host = None if out_ptr is not None else np.empty((n, DESCRIPTOR_SIZE), np.float32)
        for rows in batch_slices(n, self.max_batch):
            start, m = rows.start, rows.stop - rows.start
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
        n = batch.shape[0]
        if n == 0:
            return torch.empty((0, DESCRIPTOR_SIZE), dtype=torch.float32, device=patches.device)
        handle = stream_handle(stream)
        # Torch work (the conversion, the output's allocation) goes on the caller's stream
        # when there is one, so TensorRT, which reads it there, is ordered after it.
        if handle is None:
            work = torch.cuda.current_stream(patches.device)
        elif handle == 0:  # torch.cuda.default_stream(): its cuda_stream is 0
            work = torch.cuda.default_stream(patches.device)
        else:
            work = torch.cuda.ExternalStream(handle, device=patches.device)
        if handle in DEFAULT_STREAM_HANDLES:
            # A default stream passed explicitly is joined by events like no stream at all,
            # rather than handed to TensorRT (see DEFAULT_STREAM_HANDLES).
            handle = None
        torch_dtype = torch.uint8 if self.input_dtype == "uint8" else torch.float32
        with torch.cuda.stream(work):
            if batch.dtype != torch_dtype:
                # geometry.to_uint8's rule (round half to even), on the device.
                batch = batch.round() if torch_dtype == torch.uint8 else batch
                batch = batch.to(torch_dtype)
            batch = batch.contiguous()  # a no-op for contiguous input: read in place
            out = torch.empty((n, DESCRIPTOR_SIZE), dtype=torch.float32, device=patches.device)
        with self._locked():
            if handle is not None:
                # The caching allocator must not hand these to others while the caller's
                # stream still uses them.
                batch.record_stream(work)
                out.record_stream(work)
                self._describe_device(
                    n, batch.data_ptr(), batch.element_size(), out.data_ptr(), handle
                )
                return out
            # No stream given: torch's current stream is usually the legacy default stream,
            # where TensorRT adds synchronisation of its own (its log: "Using default stream
            # in enqueueV3() may lead to performance issues due to additional calls to
            # cudaStreamSynchronize()"). Run on the own stream, joined to torch's by events.
            own = int(self.stream)
            self._ready.record(work.cuda_stream)
            self._ready.wait_on(own)
            self._describe_device(n, batch.data_ptr(), batch.element_size(), out.data_ptr(), own)
            self._done.record(own)
            self._done.wait_on(work.cuda_stream)
            side = torch.cuda.ExternalStream(own, device=patches.device)
            batch.record_stream(side)
            out.record_stream(side)
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
        with self._locked():
            owner = cudart.pointer_device(ptr)
            if owner is None:
                raise InputError("__cuda_array_interface__ points to memory that is not on a GPU")
            if owner != self._device_index:
                raise InputError(f"patches are on cuda:{owner}, the engine runs on {self.device}")
            given = stream_handle(stream)
            if given is not None and given not in DEFAULT_STREAM_HANDLES:
                handle = given
            else:
                # No stream, or a default one (never handed to TensorRT): run on the own
                # stream, joined to the default stream given or to the array's producer.
                handle = int(self.stream)
                producer = given if given is not None else iface.get("stream")
                if isinstance(producer, int) and (producer != 0 or given is not None):
                    # __cuda_array_interface__ v3: the producer's stream (1 = legacy default,
                    # 2 = per-thread default) may still be writing the array; our stream is
                    # non-blocking, so join it explicitly.
                    self._ready.record(producer)
                    self._ready.wait_on(handle)
            return self._describe_device(n, ptr, np.dtype(dtype).itemsize, None, handle)

    def close(self) -> None:
        """Free the graph, execution contexts, engine, buffers and stream now rather than at
        garbage collection."""
        with self._lock:
            if not self._d_in.ptr:
                return
            cudart.set_device(self._device_index)
            # The last inference may have been enqueued on a caller's stream, which our own
            # stream's synchronisation does not cover: wait on its event first, so no
            # enqueued kernel still reads the context, engine or buffers freed below
            # (cudaEventSynchronize waits for the event's most recent record, and returns at
            # once for an event never recorded: CUDA Runtime API, "Event Management").
            self._event.synchronize()
            self.stream.synchronize()
            if self._graph is not None:
                self._graph.destroy()
                self._graph = None
            # Contexts hold activation memory; they go before the engine, the engine before
            # its runtime.
            self._graph_context = None
            self.context = None
            self.engine = None
            self._keep = ()
            for buffer in (self._d_in, self._d_out, self._h_in, self._h_out):
                buffer.free()
            for event in (self._event, self._ready, self._done, *(self._timing or ())):
                event.destroy()
            self._timing = None
            self.stream.destroy()
