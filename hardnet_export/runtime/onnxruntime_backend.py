"""ONNX Runtime backend: ``.onnx`` graphs on the CPU, CUDA or ONNX Runtime's TensorRT provider.

Providers by ``device``: ``"cpu"`` -> CPU; ``"cuda"`` / ``"cuda:N"`` -> CUDA, then CPU;
``"tensorrt"`` -> TensorRT, then CUDA, then CPU; ``None`` -> CUDA when the installed ONNX
Runtime has it and a CUDA device is present, else CPU (the TensorRT provider builds an
engine on first use, which takes minutes, so it is only used when asked for). ``device``
reports the provider that actually took the graph.

Precision comes from the graph's ``metadata_props`` (``precision``), written by
``hardnet_export.export``. A graph exported with a fixed batch fixes ``max_batch``; smaller
batches are zero-padded to it. ONNX Runtime sessions are thread-safe, so ``describe`` may
be called from several threads at once without a lock.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export.artifacts.describe import DEFAULT_MAX_BATCH, DescribeFn
from hardnet_export.artifacts.metadata import (
    SEMANTICS,
    SEMANTICS_EXACT,
    SEMANTICS_HOST,
    GraphMetadata,
    read_metadata,
)
from hardnet_export.errors import InputError, MissingDependencyError, MissingFileError
from hardnet_export.runtime.base import Describer, kind_class
from hardnet_export.runtime.image import IMAGE_GRAPH_REMEDY, ImageDescriber, check_image_inputs
from hardnet_export.runtime.inputs import (
    DEFAULT_STREAM_HANDLES,
    check_graph_signature,
    graph_input,
)
from hardnet_export.runtime.packing import (
    check_pack_channels,
    packed_graph_file,
    packing_candidates,
)
from hardnet_export.validate import check_bool, device_name, parse_device

if TYPE_CHECKING:
    import onnx

_PROVIDER_DEVICE = {
    "TensorrtExecutionProvider": "tensorrt",
    "CUDAExecutionProvider": "cuda",
    "CPUExecutionProvider": "cpu",
}
_ONNX_DTYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}
_OPT_LEVELS = ("disable", "basic", "extended", "all")


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "the onnxruntime backend (.onnx) needs ONNX Runtime: pip install "
            "'hardnet-export[cpu]' (or 'hardnet-export[gpu]' for CUDA; never both)"
        ) from exc
    return onnxruntime


def tuning_candidates(metadata: GraphMetadata, flags: frozenset[str]) -> list[dict[str, Any]]:
    """What ``hardnet-export tune`` times on ONNX Runtime's CPU provider: the graph as written
    (its float layers in f32, or f16 in an FP16 graph), with every optimisation; also with
    its narrow convs packed where it has some (:func:`packing_candidates`). An INT8 graph
    whose sums the fused int8 kernels of a CPU with ``flags`` can clip
    (:func:`~hardnet_export.host.int8_kernels_fit`) runs unfused only, in its exact Q/DQ
    arithmetic: a gate on natural patches would not see the clipping."""
    from hardnet_export.host import int8_isa

    fit = metadata.int8_kernels_fit(int8_isa(flags))
    return packing_candidates(metadata, [{} if fit else {"graph_optimization_level": "disable"}])


def choose_providers(
    device: str | None,
    available: list[str],
    *,
    cuda_devices: int,
    provider_options: dict[str, dict[str, Any]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers, in order of preference, for ``device``.

    Raises:
        ValueError: an unknown device name.
        RuntimeError: a GPU provider asked for that this ONNX Runtime does not have.
    """
    options = dict(provider_options or {})
    parsed = parse_device(device)
    gpu_options = {"device_id": parsed.index} if parsed and parsed.index is not None else {}
    if parsed is None:
        wanted = ["CUDAExecutionProvider"] if cuda_devices > 0 else []
    elif parsed.kind == "cpu":
        wanted = []
    elif parsed.kind == "cuda":
        wanted = ["CUDAExecutionProvider"]
    elif parsed.kind == "tensorrt":
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    else:
        raise InputError(
            f"the onnxruntime backend runs on 'cpu', 'cuda[:N]' or 'tensorrt[:N]', got {device!r}"
        )
    if parsed is not None and wanted and wanted[0] not in available:
        raise MissingDependencyError(
            f"device={device!r} needs ONNX Runtime's {wanted[0]}, but this ONNX Runtime has "
            f"{available}; install onnxruntime-gpu (instead of onnxruntime)"
        )
    chosen = [p for p in wanted if p in available] + ["CPUExecutionProvider"]
    return [
        (p, {**(gpu_options if p != "CPUExecutionProvider" else {}), **options.get(p, {})})
        for p in chosen
    ]


#: ONNX Runtime's TensorRT provider builds against one TensorRT major; TensorRT 11 needs this
#: ONNX Runtime or later (older ones look for TensorRT 10's libraries and drop the provider).
ORT_FOR_TENSORRT_11 = (1, 27)
_PRELOADED = False


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in str(version).split("."):
        digits = "".join(c for c in part if c.isdigit())  # "1.27.0rc1", "1.28.0+cu12"
        if not digits:
            break
        parts.append(int(digits))
        if digits != part:
            break
    return tuple(parts)


def check_tensorrt_provider(
    ort_version: str, tensorrt_version: str | None, options: dict[str, Any]
) -> list[str]:
    """Whether ONNX Runtime's TensorRT provider can run with this TensorRT and these options.

    ``tensorrt_version`` is the installed ``tensorrt`` Python package's (None when there is
    none: the provider may still find TensorRT libraries elsewhere, and is not judged).

    Returns:
        Warnings to show: ``trt_fp16_enable`` is a no-op on TensorRT 11, whose networks are
        always strongly typed (precision comes from the graph: export an FP16 graph).

    Raises:
        MissingDependencyError: TensorRT 11 with an ONNX Runtime older than 1.27.
    """
    notes: list[str] = []
    major = _version_tuple(tensorrt_version)[:1] if tensorrt_version else ()
    if major and major[0] >= 11:
        if _version_tuple(ort_version)[:2] < ORT_FOR_TENSORRT_11:
            need = ".".join(map(str, ORT_FOR_TENSORRT_11))
            raise MissingDependencyError(
                f"ONNX Runtime's TensorRT provider needs onnxruntime-gpu >= {need} for "
                f"TensorRT {tensorrt_version}, got onnxruntime {ort_version}; upgrade "
                "onnxruntime-gpu, or use the tensorrt backend (an engine from build_engine)"
            )
        if options.get("trt_fp16_enable"):
            notes.append(
                f"trt_fp16_enable has no effect with TensorRT {tensorrt_version}: its networks "
                "are strongly typed, so precision comes from the graph; load an FP16 graph "
                "(variant fp16) instead"
            )
    return notes


#: The options that make ONNX Runtime's TensorRT provider honour a graph's precision on
#: TensorRT 10, whose networks it builds weakly typed: without them TensorRT may run an FP16
#: graph's float16 layers, and a Q/DQ graph's float16 layers, in FP32 (ONNX Runtime's
#: "TensorRT Execution Provider" page, trt_fp16_enable and trt_int8_enable; TensorRT 10 runs
#: a Q/DQ graph's int8 layers only with INT8 enabled in a weakly typed network). The
#: tensorrt-flavour INT8 graph keeps its first convs in float16, hence both for int8.
TENSORRT_PRECISION_OPTIONS: dict[str, dict[str, bool]] = {
    "fp16": {"trt_fp16_enable": True},
    "int8": {"trt_int8_enable": True, "trt_fp16_enable": True},
}


def tensorrt_provider_options(
    precision: str, tensorrt_version: str | None, given: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The TensorRT provider's options for a graph of ``precision``: the precision flags of
    :data:`TENSORRT_PRECISION_OPTIONS` under the caller's own (which win), on TensorRT 10 or an
    unknown TensorRT (ONNX Runtime's provider links TensorRT 10); TensorRT 11 builds strongly
    typed networks, where the flags do nothing. A ``user_compute_stream`` that is a default
    stream's handle is dropped: ONNX Runtime would pass it to TensorRT's enqueue, which warns
    that a default stream costs extra synchronisation; without it the provider runs on a
    stream of its own.

    Returns:
        The options, and notes (warnings) on what was dropped.
    """
    major = _version_tuple(tensorrt_version)[:1] if tensorrt_version else ()
    weakly_typed = not major or major[0] < 11
    options = {**(TENSORRT_PRECISION_OPTIONS.get(precision, {}) if weakly_typed else {}), **given}
    notes: list[str] = []
    stream = options.get("user_compute_stream")
    if stream is not None:
        try:
            handle = int(stream)
        except (TypeError, ValueError):
            handle = None
        if handle in DEFAULT_STREAM_HANDLES:
            options.pop("user_compute_stream")
            options.pop("has_user_compute_stream", None)
            notes.append(
                f"user_compute_stream={stream!r} is a CUDA default stream; it was dropped, so "
                "ONNX Runtime's TensorRT provider runs on a stream of its own (TensorRT "
                "synchronises extra on a default stream)"
            )
    return options, notes


def preload_gpu_libraries(ort: Any) -> None:
    """Let ONNX Runtime load the CUDA and cuDNN libraries of the nvidia-* pip packages before a
    CUDA session is made (``onnxruntime.preload_dlls``, ONNX Runtime >= 1.21; without it the
    CUDA provider may not find them and silently drops to the CPU). Once per process; a no-op
    where the function does not exist."""
    global _PRELOADED
    preload = getattr(ort, "preload_dlls", None)
    if _PRELOADED or preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a partial CUDA install: let the session report what is missing
        warnings.warn(
            f"onnxruntime.preload_dlls() failed ({type(exc).__name__}: {exc}); the CUDA "
            "provider will look for CUDA and cuDNN on the library path",
            RuntimeWarning,
            stacklevel=3,
        )
    _PRELOADED = True


def check_active_providers(device: str | None, asked: list[str], active: list[str]) -> None:
    """ONNX Runtime drops a provider it cannot start (missing CUDA or TensorRT libraries) and
    falls back with only a log line; say so instead.

    Raises:
        RuntimeError: ``device`` names CUDA and the CUDA provider is not running.

    Warns:
        RuntimeWarning: ``device="tensorrt"`` fell back to CUDA or the CPU (allowed, as
            documented), or ``device=None`` chose CUDA and got the CPU.
    """
    parsed = parse_device(device)
    if parsed is not None and parsed.kind == "cuda" and "CUDAExecutionProvider" not in active:
        raise MissingDependencyError(
            f"device={device!r}: ONNX Runtime could not start its CUDA provider (running "
            f"{active}); check the CUDA and cuDNN libraries onnxruntime-gpu needs"
        )
    if asked[0] != "CPUExecutionProvider" and asked[0] not in active:
        warnings.warn(
            f"ONNX Runtime could not start {asked[0]}; running on {active[0]}",
            RuntimeWarning,
            stacklevel=3,
        )


def int8_kernel_warning(path: Path, metadata: GraphMetadata, isa: str | None = None) -> str | None:
    """Why ONNX Runtime's int8 kernels on a CPU of kind ``isa`` (default: this one) would not
    compute an INT8 graph as it was checked, or None when they would.

    ONNX Runtime's u8 x s8 kernels on x86 without VNNI sum pairs of products in saturating 16
    bits (:mod:`hardnet_export.host`). The ``tensorrt`` flavour (symmetric int8 activations,
    8-bit weights) was checked in exact Q/DQ semantics, and a ``cpu`` graph made for VNNI
    kernels has 8-bit weights: on such a CPU both can clip silently.
    """
    from hardnet_export import host

    if metadata.precision != "int8":
        return None
    isa = isa or host.int8_isa()
    if not host.saturates(isa):
        return None
    target = metadata.flavour
    if target == "tensorrt":
        return (
            f"{path.name} is the TensorRT flavour of INT8, checked in exact Q/DQ semantics; "
            f"ONNX Runtime's int8 kernels on this CPU ({isa}: {host.INT8_ISAS[isa]}) compute "
            "something else and may lose accuracy. On this CPU use the cpu flavour "
            "(variant int8-cpu), or graph_optimization_level='disable' for exact (slower) "
            "results; check_artifact measures the difference."
        )
    made_for = metadata.made_for
    if target == "cpu" and not host.int8_kernels_fit(isa, target, made_for):
        return (
            f"{path.name} was made for {made_for} int8 kernels (8-bit weights); this CPU has "
            f"{isa} ({host.INT8_ISAS[isa]}), where such weights can saturate. Re-export it "
            f"for this CPU: the int8-cpu variant with for_isa={isa!r}."
        )
    return None


def session_device(session: Any) -> str:
    """Where a session runs: ``cpu``, ``cuda:N``, ``tensorrt:N`` (its first provider's)."""
    provider = session.get_providers()[0]
    device = _PROVIDER_DEVICE.get(provider, provider)
    options = session.get_provider_options().get(provider, {})
    if device != "cpu" and "device_id" in options:
        device = f"{device}:{options['device_id']}"
    return str(device)


def ort_session(
    proto_or_path: onnx.ModelProto | str | Path,
    *,
    semantics: str = SEMANTICS_HOST,
    threads: int = 0,
) -> Any:
    """An ONNX Runtime CPU session for a graph in memory or on disk (``threads``: intra-op
    threads, 0 = ONNX Runtime's default).

    ``semantics``: ``host-kernels`` (all graph optimisations: ONNX Runtime fuses Q/DQ into
    this CPU's int8 kernels) or ``exact-qdq`` (optimisations off: the graph as written).
    """
    onnxruntime = _import_onnxruntime()

    if semantics not in SEMANTICS:
        raise InputError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
    source = (
        str(proto_or_path)
        if isinstance(proto_or_path, (str, Path))
        else proto_or_path.SerializeToString()
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    if semantics == SEMANTICS_EXACT:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def ort_describe(
    proto_or_path: onnx.ModelProto | str | Path,
    *,
    semantics: str = SEMANTICS_HOST,
    threads: int = 0,
) -> DescribeFn:
    """A describe function running a HardNet graph on ONNX Runtime CPU in ``semantics`` (see
    :func:`ort_session`); casts the input to the graph's input dtype (uint8 patches in,
    whatever the graph takes)."""
    session = ort_session(proto_or_path, semantics=semantics, threads=threads)
    graph_input = session.get_inputs()[0]
    dtype = np.uint8 if graph_input.type == "tensor(uint8)" else np.float32

    def describe(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {graph_input.name: batch.astype(dtype, copy=False)})[0]

    return describe


class OnnxRuntimeDescriber(Describer):
    """A HardNet ONNX graph in an ONNX Runtime session.

    Options (``runtime.load(..., **options)``):
        intra_op_num_threads, inter_op_num_threads: ONNX Runtime thread pools (0 = default).
        graph_optimization_level: ``disable``, ``basic``, ``extended`` or ``all`` (default).
            ``disable`` runs an INT8 graph in its exact Q/DQ semantics (what TensorRT
            computes), independent of this CPU's int8 kernels, at float speed.
        provider_options: ``{provider name: {option: value}}``, e.g.
            ``{"TensorrtExecutionProvider": {"trt_engine_cache_enable": True}}``.
            ``trt_fp16_enable`` only matters with TensorRT 10; TensorRT 11 (which needs
            ONNX Runtime >= 1.27 here) ignores it: precision comes from the graph.
        pack_channels: run the graph's narrow float convs on several patches at once, up to
            this many channels (0: as written; :mod:`hardnet_export.runtime.packing`, needs
            the onnx package). The same descriptors; faster for narrow widths on some CPUs,
            which ``hardnet-export tune`` measures.
        allow_spinning: let the worker threads spin for more work after a run (ONNX
            Runtime's default, ``session.intra_op.allow_spinning``). False for a session
            that shares the cores with other work between its calls: the spinning threads
            made the next OpenVINO call of 256 patches take 1.7x as long on an AMX Xeon.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        session: Any,
        artifact: Path,
        metadata: GraphMetadata,
        *,
        max_batch: int | None,
        semantics: str = SEMANTICS_HOST,
        pack: tuple[int, ...] = (),
        unpacked: Any = None,
    ) -> None:
        """``semantics``: ``host-kernels`` (ONNX Runtime fuses Q/DQ into this CPU's int8
        kernels) or ``exact-qdq`` (graph optimisations off: the graph as written). ``pack``:
        a packed graph's groups (:class:`~hardnet_export.runtime.packing.PackedGraph`);
        ``unpacked``: a session of the graph as written, for batches smaller than the
        pack's multiple."""
        inputs, outputs = session.get_inputs(), session.get_outputs()
        spec = inputs[0] if inputs else None
        out_spec = outputs[0] if outputs else None
        fixed = check_graph_signature(
            artifact,
            n_inputs=len(inputs),
            n_outputs=len(outputs),
            input_name=spec.name if spec is not None else "",
            input_shape=list(spec.shape) if spec is not None else [],
            input_type=_ONNX_DTYPES.get(spec.type, spec.type) if spec is not None else "",
            output_name=out_spec.name if out_spec is not None else "",
            output_shape=list(out_spec.shape) if out_spec is not None else [],
            max_batch=max_batch,
        )
        assert spec is not None and out_spec is not None
        super().__init__(
            artifact,
            precision=metadata.precision,
            device=session_device(session),
            max_batch=fixed or max_batch or DEFAULT_MAX_BATCH,
            input_dtype=_ONNX_DTYPES[spec.type],
            semantics=semantics,
        )
        self.session = session
        self.metadata = metadata
        self.providers: list[str] = list(session.get_providers())
        self._fixed_batch = fixed
        self._input_name = spec.name
        self._output_name = out_spec.name
        #: Patches per packed row of each packed conv (empty: the graph as written).
        self.pack = pack
        self._multiple = math.lcm(*pack) if pack else 1
        self._unpacked = unpacked

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        device: str | None = None,
        max_batch: int | None = None,
        intra_op_num_threads: int = 0,
        inter_op_num_threads: int = 0,
        graph_optimization_level: str = "all",
        provider_options: dict[str, dict[str, Any]] | None = None,
        pack_channels: int = 0,
        allow_spinning: bool = True,
    ) -> Describer:
        """Open an ONNX graph in a new session; the describer class is the registry's entry
        for the graph's kind (an image graph gives an :class:`OnnxRuntimeImageDescriber`).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a readable ONNX graph, or not a HardNet graph.
        """
        if path is None:
            raise InputError("the onnxruntime backend needs an .onnx path")
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"ONNX model not found: {path}")
        if graph_optimization_level not in _OPT_LEVELS:
            raise InputError(
                f"graph_optimization_level must be one of {_OPT_LEVELS}, "
                f"got {graph_optimization_level!r}"
            )
        device = device_name(device)
        pack_channels = check_pack_channels(pack_channels)
        allow_spinning = check_bool("allow_spinning", allow_spinning)
        ort = _import_onnxruntime()
        from hardnet_export._cuda import cuda_device_count

        source: str | bytes = str(path)
        pack: tuple[int, ...] = ()
        if pack_channels:
            packed = packed_graph_file(path, pack_channels)
            source, pack = packed.model.SerializeToString(), packed.groups

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = inter_op_num_threads
        level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization_level]
        options.graph_optimization_level = level
        if not allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = list(ort.get_available_providers())
        cuda = cuda_device_count() if device is None else 0
        chosen = choose_providers(
            device, available, cuda_devices=cuda, provider_options=provider_options
        )
        names = [name for name, _ in chosen]
        if "TensorrtExecutionProvider" in names:
            from hardnet_export._cuda import tensorrt_status

            trt_module, _ = tensorrt_status()
            trt_version = str(trt_module.__version__) if trt_module is not None else None
            index = names.index("TensorrtExecutionProvider")
            given = dict(chosen[index][1])
            for note in check_tensorrt_provider(ort.__version__, trt_version, given):
                warnings.warn(note, RuntimeWarning, stacklevel=2)
            precision = read_metadata(path).precision
            trt_options, notes = tensorrt_provider_options(precision, trt_version, given)
            for note in notes:
                warnings.warn(note, RuntimeWarning, stacklevel=2)
            chosen[index] = ("TensorrtExecutionProvider", trt_options)
        if "CUDAExecutionProvider" in names or "TensorrtExecutionProvider" in names:
            preload_gpu_libraries(ort)

        def session_of(given: str | bytes) -> Any:
            return ort.InferenceSession(
                given,
                sess_options=options,
                providers=[name for name, _ in chosen],
                provider_options=[opts for _, opts in chosen],
            )

        try:
            session = session_of(source)
            # Fewer patches than one packed row run unpacked: padding them costs more.
            small = session_of(str(path)) if pack else None
        except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InputError(
                f"{path} is not a readable ONNX model ({type(exc).__name__}: {first_line})"
            ) from exc
        check_active_providers(device, [name for name, _ in chosen], session.get_providers())
        metadata = GraphMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
        # Both kinds' classes take (session, artifact, metadata, *, max_batch, semantics).
        make: Any = kind_class(cls.backend, metadata.kind, path)
        semantics = SEMANTICS_EXACT if graph_optimization_level == "disable" else SEMANTICS_HOST
        more = {"pack": pack, "unpacked": small} if pack else {}
        describer = make(session, path, metadata, max_batch=max_batch, semantics=semantics, **more)
        if describer.device == "cpu" and describer.semantics == SEMANTICS_HOST:
            warning = int8_kernel_warning(path, describer.metadata)
            if warning:
                warnings.warn(warning, RuntimeWarning, stacklevel=2)
        return describer

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        small = self._unpacked is not None and n < self._multiple
        session = self._unpacked if small else self.session
        batch = graph_input(
            batch, self.input_dtype, self._fixed_batch, 1 if small else self._multiple
        )
        (out,) = session.run([self._output_name], {self._input_name: batch})
        return np.ascontiguousarray(out[:n], dtype=np.float32)


class OnnxRuntimeImageDescriber(ImageDescriber):
    """An image graph in an ONNX Runtime session (the registry's ``image`` entry of this
    backend): ``compute(image, keypoints)`` sends image and keypoints in one ``session.run``;
    ``describe`` is refused. Opened, with the same options, by :meth:`OnnxRuntimeDescriber.open`;
    ``max_batch`` does not apply (one call takes every keypoint) and is ignored."""

    backend = "onnxruntime"

    def __init__(
        self,
        session: Any,
        artifact: Path,
        metadata: GraphMetadata,
        *,
        max_batch: int | None,
        semantics: str = SEMANTICS_HOST,
    ) -> None:
        super().__init__(
            artifact,
            metadata,
            device=session_device(session),
            remedy=IMAGE_GRAPH_REMEDY,
            semantics=semantics,
        )
        check_image_inputs(artifact, [i.name for i in session.get_inputs()])
        self.session = session
        self.metadata = metadata
        self.providers: list[str] = list(session.get_providers())
        self._output_name = session.get_outputs()[0].name

    @classmethod
    def open(cls, path: Path | None, **options: Any) -> Describer:
        return OnnxRuntimeDescriber.open(path, **options)

    def _run_image(self, gray: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self._output_name], {"image": gray, "keypoints": keypoints})
        return np.asarray(out, dtype=np.float32)
