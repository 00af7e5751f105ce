"""OpenVINO backend: ``.onnx`` graphs (with ``backend="openvino"``) and OpenVINO IR
(``.xml`` + ``.bin``) on the CPU.

An IR saved by OpenVINO from one of this project's ONNX graphs (``ov.save_model``) keeps the
graph's metadata (precision, weights hash, INT8 gate) in its ``rt_info``, so ``check`` and
the benchmark read it the same way as from the ONNX file. Inference runs in FP32 unless
``inference_precision`` says otherwise: OpenVINO's CPU plugin would otherwise pick bf16 on
CPUs that have it, and a descriptor must not change with the machine it runs on. One infer
request is reused behind a lock, so ``describe`` may be called from several threads.

Image graphs (``graph_kind`` ``image``) compile too, with their dynamic image and keypoint
axes (OpenVINO has GridSample, opset 9, with the reflection padding the graph uses):
:class:`OpenVINOImageDescriber` runs ``compute(image, keypoints)`` in one inference, in f32
only (a bf16 or f16 hint would round the sampling coordinates too).
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.artifacts.describe import DEFAULT_MAX_BATCH
from hardnet_export.artifacts.metadata import SEMANTICS_HOST, GraphMetadata
from hardnet_export.artifacts.quantisation import GATE_OPENVINO
from hardnet_export.errors import InputError, MissingDependencyError, MissingFileError
from hardnet_export.host import (
    BF16_FLAGS,
    INT8_ISAS,
    has_bf16,
    has_fp16,
    int8_isa,
)
from hardnet_export.runtime.base import Describer, kind_class
from hardnet_export.runtime.image import IMAGE_GRAPH_REMEDY, ImageDescriber, check_image_inputs
from hardnet_export.runtime.inputs import check_graph_signature, graph_input
from hardnet_export.runtime.packing import (
    check_pack_channels,
    packed_graph_file,
    packing_candidates,
)
from hardnet_export.shipped import PATCH_SIZE
from hardnet_export.validate import check_int, check_str, device_name

PERFORMANCE_HINTS = ("latency", "throughput")
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
_OV_DTYPES = {"u8": "uint8", "f32": "float32"}

#: The tensor name of the one-value output :func:`keep_standardisation_f32` adds.
STANDARDISATION_PROBE = "hardnet_export.standardisation_probe"

#: The ops a graph's first layer is made of: a float conv, or the FakeQuantize OpenVINO makes
#: of an INT8 graph's first QuantizeLinear/DequantizeLinear pair.
_FIRST_LAYER_OPS = ("Convolution", "GroupConvolution", "FakeQuantize")


def keep_standardisation_f32(model: Any) -> Any:
    """``model`` (changed in place) with its in-graph per-patch standardisation kept in f32
    when it is compiled with a bf16 or f16 inference precision: a one-value slice of the
    first layer's input becomes an extra output (:data:`STANDARDISATION_PROBE`; the
    descriptors stay output 0).

    Why: under a reduced precision hint, OpenVINO's CPU plugin runs every float op in it
    except those that feed only the graph's outputs past the last conv or matmul, which it
    keeps in f32 "to maintain accuracy" (the plugin's ``Graph::EnforceInferencePrecision``,
    openvino ``src/plugins/intel_cpu/src/graph.cpp``). The standardisation of uint8 patches
    in bf16 rounds each patch's mean to a whole grey level (bf16 keeps 8 significant bits),
    an offset that is a large part of a low-contrast patch's signal; made to feed an output,
    it runs in f32 and the convs still in bf16. Measured on a 2-core Xeon with AMX
    (OpenVINO 2026.4, 2000 held-out textured patches, worst cosine to f32, whole batches /
    one patch per call): ``hardnet`` FP32 0.9941 / 0.9809 before, 0.9998 / 0.9998 after;
    ``hardnet-fast`` FP32 0.9871 / 0.9609 before, 0.9997 / 0.9997 after; the float parts of
    ``hardnet-fast``'s and ``hardnet-half``'s INT8 graphs 0.984-0.987 / 0.961-0.977 before,
    1.0000 / 1.0000 after; for 0-10 % more time per patch. A graph whose first layer reads
    its input directly (no standardisation in it) is left as it is.
    """
    if any(STANDARDISATION_PROBE in output.get_names() for output in model.outputs):
        return model
    first = next(
        (
            op for op in model.get_ordered_ops()
            if op.get_type_name() in _FIRST_LAYER_OPS and _from_input(op.input_value(0))
        ),
        None,
    )  # fmt: skip
    if first is None:
        return model
    source = first.input_value(0)
    if source.get_node().get_type_name() == "Parameter":
        return model
    from openvino import opset8

    rank = source.get_partial_shape().rank.get_length()
    axes = np.arange(1, rank, dtype=np.int64)
    ones = np.ones(rank - 1, dtype=np.int64)
    probe = opset8.slice(source, ones * 0, ones, ones, axes)
    probe.output(0).get_tensor().set_names({STANDARDISATION_PROBE})
    model.add_results([opset8.result(probe)])
    return model


def _from_input(value: Any) -> bool:
    """Whether a node output depends on a graph input (and is not computed from constants)."""
    seen: set[int] = set()
    stack = [value.get_node()]
    while stack:
        node = stack.pop()
        if node.get_type_name() == "Parameter":
            return True
        if node.get_instance_id() in seen:
            continue
        seen.add(node.get_instance_id())
        stack.extend(v.get_node() for v in node.input_values())
    return False


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError(
            "the openvino backend (.xml, or .onnx with backend='openvino') needs OpenVINO: "
            "pip install openvino (or hardnet-export[openvino])"
        ) from exc
    return openvino


_core_lock = threading.Lock()
_core: list[Any] = []  # the process's one Core, once created


def core() -> Any:
    """The process's one ``openvino.Core``, created on first use (thread-safe); every
    OpenVINO call of the project (describers, INT8 gates, metadata reads, benchmarks) goes
    through it.

    Why one: each Core's CPU plugin installs its own alternate signal stack and, when freed,
    restores the one it found. Cores freed in creation order leave the process on an unmapped
    stack, and the next handled signal (Ctrl-C, SIGTERM, a DataLoader's SIGCHLD) becomes a
    SIGSEGV (seen with OpenVINO 2026.4). This one is never freed before the process ends.
    Code that makes Cores of its own beside it should keep them alive for the life of the
    process (or free them in reverse creation order), or use this one.
    """
    with _core_lock:
        if not _core:
            _core.append(_import_openvino().Core())
        return _core[0]


def read_model(path: Path) -> Any:
    """An ``openvino.Model`` of an ``.xml`` IR (its ``.bin`` beside it) or of any other file
    as ONNX, read by that format's front end alone.

    ``Core.read_model`` would offer a file its own front end cannot parse to every other
    front end, and TensorFlow's then writes its text-format parse errors to stderr (absl log
    lines) before the read fails.

    Raises:
        InputError: not a readable model; one line saying why.
    """
    ir = path.suffix.lower() == ".xml"
    kind = "OpenVINO IR" if ir else "ONNX model"
    try:
        from openvino.frontend import FrontEndManager

        front_end = FrontEndManager().load_by_framework("ir" if ir else "onnx")
        return front_end.convert(front_end.load(str(path)))
    except Exception as exc:  # OpenVINO raises with a multi-line report of source locations
        raise InputError(f"{path} is not a readable {kind} ({_reason(exc)})") from None


def _read_onnx_bytes(data: bytes, path: Path) -> Any:
    """An ``openvino.Model`` of an ONNX graph in memory (a rewrite of the graph at ``path``)."""
    try:
        return core().read_model(data)
    except Exception as exc:
        raise InputError(f"OpenVINO cannot read the rewritten {path} ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """OpenVINO's own reason in an exception's report, without its source locations."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [
        line for line in lines
        if not line.startswith(("Exception from ", "Check '", "FrontEnd API failed"))
    ]  # fmt: skip
    reason = said[-1] if said else (lines[-1] if lines else type(exc).__name__)
    if "Model can't be parsed" in reason:
        return "OpenVINO cannot parse it: a truncated file, or not an ONNX model"
    if "tags mismatch" in reason or "No document element" in reason:
        return f"not valid XML: {reason}"
    return reason


def _metadata(model: Any, artifact: Path) -> GraphMetadata:
    """The ONNX ``metadata_props`` OpenVINO keeps under ``rt_info["framework"]``."""
    info = model.get_rt_info()
    props: dict[str, str] = {}
    if "framework" in info:
        framework = info["framework"]
        if isinstance(framework, dict):
            props = {str(k): v.astype(str) for k, v in framework.items()}
    return GraphMetadata.from_props(props, str(artifact))


def _dims(port: Any) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]


def read_graph_metadata(path: Path) -> GraphMetadata:
    """A graph's metadata, read by OpenVINO without compiling it (empty metadata for a graph
    that OpenVINO cannot read: the backend that opens it then reports why)."""
    _import_openvino()  # a missing OpenVINO is the caller's to know, not an empty metadata
    try:
        return _metadata(read_model(Path(path)), path)
    except InputError:
        return GraphMetadata()


def failed_openvino_gate(metadata: GraphMetadata) -> bool:
    """Whether the export measured this INT8 graph on OpenVINO and it failed the gate there."""
    quantisation = metadata.quantisation
    return quantisation is not None and quantisation.failed_on(GATE_OPENVINO)


def tuning_candidates(metadata: GraphMetadata, flags: frozenset[str]) -> list[dict[str, Any]]:
    """What ``hardnet-export tune`` times on OpenVINO: the graph's float layers in f32, and
    in bf16 or f16 (not for an INT8 graph) where this CPU computes them natively (``flags``);
    each also with its narrow convs packed where the graph has some
    (:func:`packing_candidates`). None for an INT8 graph whose sums its int8 kernels on such
    a CPU can clip (:func:`~hardnet_export.host.int8_kernels_fit`)."""
    if not metadata.int8_kernels_fit(int8_isa(flags)):
        return []
    precisions = ["f32"]
    if has_bf16(flags):
        precisions.append("bf16")
    if has_fp16(flags) and metadata.precision != "int8":  # refused by open(): it says why
        precisions.append("f16")
    return packing_candidates(metadata, [{"inference_precision": p} for p in precisions])


def ov_describe(proto_or_path: Any, *, inference_precision: str = "f32") -> Any:
    """A describe function running a HardNet graph (an ``onnx.ModelProto`` or a path) on
    OpenVINO's CPU plugin in one latency-hinted request, as :class:`OpenVINODescriber`
    does (its standardisation in f32 under a reduced precision,
    :func:`keep_standardisation_f32`); uint8 patches in (cast to the graph's input dtype)."""
    ov_core = core()
    if isinstance(proto_or_path, (str, Path)):
        model = ov_core.read_model(str(proto_or_path))
    else:
        model = ov_core.read_model(proto_or_path.SerializeToString())
    if inference_precision != "f32":
        keep_standardisation_f32(model)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": inference_precision}
    compiled = ov_core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    dtype = np.dtype(_OV_DTYPES[compiled.inputs[0].get_element_type().get_type_name()])

    def describe(batch: np.ndarray) -> np.ndarray:
        batch = graph_input(batch, str(dtype), None, 1)
        out = request.infer({0: np.ascontiguousarray(batch)})[0]
        return np.array(out, dtype=np.float32, copy=True)

    return describe


def int8_kernel_warning(path: Path, metadata: GraphMetadata, isa: str | None = None) -> str | None:
    """Why OpenVINO's int8 kernels on a CPU of kind ``isa`` (default: this one) may clip an
    INT8 graph's sums, or None when they compute it as checked.

    On x86 without VNNI they add u8 x s8 product pairs in saturating 16 bits
    (:mod:`hardnet_export.host`): the ``tensorrt`` flavour and ``cpu`` graphs with 8-bit
    weights can clip there. OpenVINO has no unfused mode; ONNX Runtime's has.
    """
    isa = isa or int8_isa()
    if metadata.int8_kernels_fit(isa):
        return None
    weights = "symmetric int8 activations" if metadata.flavour == "tensorrt" else "8-bit weights"
    return (
        f"{path.name} has {weights}, whose product pairs OpenVINO's int8 kernels on this CPU "
        f"({isa}: {INT8_ISAS[isa]}) can clip. runtime.load without a backend runs it in its "
        "exact Q/DQ arithmetic on ONNX Runtime (graph_optimization_level='disable'); for "
        f"speed here, re-export it for this CPU (the int8-cpu variant with for_isa={isa!r})"
    )


class OpenVINODescriber(Describer):
    """A HardNet graph compiled by OpenVINO for the CPU: full chunks on a copy compiled for
    the chunk's batch, other batches on the graph's own dynamic batch axis
    (:meth:`_static_request` says why).

    Options (``runtime.load(..., backend="openvino", **options)``):
        num_threads: inference threads (0 = OpenVINO's default: all cores).
        performance_hint: ``latency`` (default: one stream, every thread on one call) or
            ``throughput`` (several streams; pays off only with concurrent callers).
        inference_precision: ``f32`` (default), ``bf16`` or ``f16`` where the CPU has them.
        pack_channels: run an ``.onnx`` graph's narrow float convs on several patches at
            once, up to this many channels (0: as written; :mod:`hardnet_export.runtime.packing`,
            needs the onnx package). The same descriptors; on a Zen 4 in bf16,
            ``hardnet-eighth`` 1.3x faster, which ``hardnet-export tune`` measures per CPU.
    """

    backend = "openvino"

    def __init__(
        self,
        compiled: Any,
        artifact: Path,
        metadata: GraphMetadata,
        *,
        max_batch: int | None,
        inference_precision: str = "f32",
        pack: tuple[int, ...] = (),
        unpacked: tuple[Any, dict[str, Any]] | None = None,
        reshapable: tuple[Any, dict[str, Any]] | None = None,
    ) -> None:
        """``pack``: a packed graph's groups; ``unpacked``: the graph as written and its
        compile config, compiled at the first batch smaller than a packed row, which runs on
        it; ``reshapable``: the ``openvino.Model`` ``compiled`` came from and its compile
        config, from which full chunks get a graph compiled for their batch
        (:meth:`_static_request`)."""
        inputs, outputs = compiled.inputs, compiled.outputs
        spec = inputs[0] if inputs else None
        out = outputs[0] if outputs else None
        dtype = spec.get_element_type().get_type_name() if spec is not None else ""
        fixed = check_graph_signature(
            artifact,
            n_inputs=len(inputs),
            n_outputs=len(outputs),
            input_name=spec.get_any_name() if spec is not None else "",
            input_shape=_dims(spec) if spec is not None else [],
            input_type=_OV_DTYPES.get(dtype, dtype),
            output_name=out.get_any_name() if out is not None else "",
            output_shape=_dims(out) if out is not None else [],
            max_batch=max_batch,
        )
        super().__init__(
            artifact,
            precision=metadata.precision,
            device="cpu",
            max_batch=fixed or max_batch or DEFAULT_MAX_BATCH,
            input_dtype=_OV_DTYPES[dtype],
            # OpenVINO fuses Q/DQ into this CPU's int8 kernels, as ONNX Runtime does.
            semantics=SEMANTICS_HOST,
        )
        self.metadata = metadata
        #: The arithmetic OpenVINO runs the float layers in (``precision`` is the graph's).
        self.inference_precision = inference_precision
        self.compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self._fixed_batch = fixed
        self._output = compiled.outputs[0]
        #: Patches per packed row of each packed conv (empty: the graph as written).
        self.pack = pack
        #: Batches are padded to a multiple of this many patches: whole packed rows. A
        #: smaller batch runs on the graph as written (``unpacked``).
        self.multiple = math.lcm(*pack)
        self._unpacked_source = None if fixed is not None else unpacked
        self._unpacked: Any = None
        self._reshapable = None if fixed is not None else reshapable
        #: Requests of the graph compiled for one batch size: full chunks', one patch's.
        self._static: dict[int, Any] = {}

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        device: str | None = None,
        max_batch: int | None = None,
        num_threads: int = 0,
        performance_hint: str = "latency",
        inference_precision: str = "f32",
        pack_channels: int = 0,
    ) -> Describer:
        """Read and compile an ``.onnx`` graph or an ``.xml`` IR (its ``.bin`` beside it); the
        describer class is the registry's entry for the graph's kind (an image graph gives an
        :class:`OpenVINOImageDescriber`).

        Raises:
            FileNotFoundError: no file at ``path`` (or an IR without its ``.bin``).
            ValueError: not a readable model, not a HardNet graph, or a bad option.
        """
        if path is None:
            raise InputError("the openvino backend needs an .onnx or .xml path")
        path = Path(path)
        if device_name(device) not in (None, "cpu"):
            raise InputError(f"the openvino backend runs on 'cpu', got device={device!r}")
        check_int("num_threads", num_threads, low=0, high=4096)
        check_str("performance_hint", performance_hint, choices=PERFORMANCE_HINTS)
        check_str("inference_precision", inference_precision, choices=INFERENCE_PRECISIONS)
        pack_channels = check_pack_channels(pack_channels)
        if not path.is_file():
            raise MissingFileError(f"model not found: {path}")
        weights = path.with_suffix(".bin")
        if path.suffix.lower() == ".xml" and not weights.is_file():
            raise MissingFileError(f"OpenVINO IR {path} needs its weights file {weights}")
        ov_core = core()
        model = plain = read_model(path)
        metadata = _metadata(model, path)
        pack: tuple[int, ...] = ()
        if pack_channels:
            packed = packed_graph_file(path, pack_channels)
            model = _read_onnx_bytes(packed.model.SerializeToString(), path)
            pack = packed.groups
        # An unopened kind fails before compiling.
        make: Any = kind_class(cls.backend, metadata.kind, path)
        if getattr(make, "graph_kind", None) == "image" and inference_precision != "f32":
            # The precision hint would take the sampling coordinates too: bf16 keeps 8
            # significant bits, so x = 800 is off by up to 2 pixels (on an 800x640 frame, 90 %
            # of the descriptors of 500 SIFT keypoints had a cosine under 0.9 to f32's).
            raise InputError(
                f"{path} is an image graph, which OpenVINO runs in f32 only, got "
                f"inference_precision={inference_precision!r}: in {inference_precision} its "
                "sampling coordinates lose whole pixels across a frame. Use 'f32', or the "
                f"patch graph with compute() for {inference_precision}"
            )
        if inference_precision == "f16" and metadata.precision == "int8":
            raise InputError(
                f"{path} is an INT8 graph, whose float parts OpenVINO runs in f32 or bf16, got "
                "inference_precision='f16': in f16 its int8 convolutions' outputs move on in "
                "f16, and on an AVX512-FP16 Xeon (OpenVINO 2026.4) the worst held-out patch "
                "fell to a cosine of 0.81 to FP32 (hardnet-half's INT8 graph). Use 'f32' or "
                "'bf16' (gated), or f16 on the FP32 graph"
            )
        if failed_openvino_gate(metadata):
            assert metadata.quantisation is not None
            gate = metadata.quantisation.gates[GATE_OPENVINO]
            raise InputError(
                f"{path} failed the INT8 accuracy gate on OpenVINO when it was exported "
                f"(NN accuracy {gate.nn_accuracy_reference:.2f}% in FP32 -> "
                f"{gate.nn_accuracy_candidate:.2f}% on OpenVINO, worst "
                f"cosine {gate.min_cosine:.4f}): OpenVINO computes it "
                "differently from ONNX Runtime. Load it with backend='onnxruntime' (where it "
                "passed), or export it again without keep_float so that the export keeps "
                "float the layers OpenVINO gets wrong"
            )
        warning = int8_kernel_warning(path, metadata)
        if warning:
            warnings.warn(warning, RuntimeWarning, stacklevel=2)
        if inference_precision == "bf16" and not has_bf16():
            raise InputError(
                "inference_precision='bf16' needs a CPU with native bf16 (AVX512-BF16 or AMX; "
                f"flags {', '.join(BF16_FLAGS)}), which this one lacks: OpenVINO would run f32. "
                "Use 'f32', or an INT8 graph for speed on this CPU"
            )
        if inference_precision != "f32":
            keep_standardisation_f32(model)
            if plain is not model:  # the unpacked graph that packing keeps for small batches
                keep_standardisation_f32(plain)
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": performance_hint.upper(),
            "INFERENCE_PRECISION_HINT": inference_precision,
        }
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = num_threads
        try:
            compiled = ov_core.compile_model(model, "CPU", config)
        except Exception as exc:
            reason = _reason(exc)
            raise InputError(f"OpenVINO cannot compile {path} for the CPU ({reason})") from None
        # Both kinds' classes take (compiled, artifact, metadata, *, max_batch, precision).
        more: dict[str, Any] = {}
        if make is cls:
            more.update(reshapable=(model, config), pack=pack)
            if pack:
                # Fewer patches than a packed row: padding them costs more.
                more["unpacked"] = (plain, config)
        describer: Describer = make(
            compiled,
            path,
            metadata,
            max_batch=max_batch,
            inference_precision=inference_precision,
            **more,
        )
        return describer

    @property
    def static_batch(self) -> int | None:
        """The batch of the graph compiled for full chunks (:meth:`_static_request`); None
        before the first full chunk, or where there is none."""
        return self.max_batch if self.max_batch in self._static else None

    @property
    def static_batches(self) -> tuple[int, ...]:
        """The batch sizes with a graph compiled for them so far (:meth:`_static_request`)."""
        return tuple(sorted(self._static))

    def _static_request(self, n: int) -> Any:
        """The request of the graph compiled for a batch of exactly ``n`` (the chunk size, or
        one patch), or None where there is none (a graph with its own fixed batch, or ``n``
        that is not a whole number of packed rows). Compiled on the first such call and kept
        (the chunk size's until the chunk size changes).

        Why: OpenVINO's CPU plugin runs a graph with a dynamic batch axis on kernels that
        serve any batch; compiled for one batch, the same graph ran 2 to 13 % faster per
        2048 patches in chunks of 256 on a 2-core Zen 4 (``hardnet-fast``'s INT8 graph 8 %
        with float layers in bf16, 13 % in f32; the FP32 ``hardnet`` 0.1 %). The CPU
        plugin's guide says why: dynamic shapes introduce "additional overhead on memory
        management and may limit internal runtime optimizations" (docs.openvino.ai, CPU
        Device, "Dynamic Shapes"). The tail of a chunked input keeps the dynamic graph, so a
        batch of 1 pays for one patch, not a padded chunk. A call of one patch, the latency
        case, has its own: on a 2-core Xeon with AMX (OpenVINO 2026.4, interleaved) it took
        0.167 against 0.215 ms for ``hardnet``'s FP32 graph in bf16 (0.41 against 0.46 in
        f32), 0.070 against 0.101 for ``hardnet-fast``'s, 0.090 against 0.120 for
        ``hardnet-half``'s INT8 graph.
        """
        if self._reshapable is None or n % self.multiple:
            return None
        if n not in self._static:
            model, config = self._reshapable
            try:
                shaped = model.clone()
                shaped.reshape({shaped.inputs[0]: [n, 1, PATCH_SIZE, PATCH_SIZE]})
                compiled = core().compile_model(shaped, "CPU", config)
            except Exception:  # a graph whose batch will not reshape keeps its dynamic form
                self._reshapable = None
                return None
            # One chunk size at a time (use_chunks may change it), and one patch.
            self._static = {k: v for k, v in self._static.items() if 1 in (k, n)}
            self._static[n] = compiled.create_infer_request()
        return self._static[n]

    def _unpacked_request(self) -> Any:
        """The request of the graph as written, compiled on the first batch smaller than
        :attr:`multiple` (a packed row) and kept."""
        if self._unpacked is None:
            assert self._unpacked_source is not None
            model, config = self._unpacked_source
            self._unpacked = core().compile_model(model, "CPU", config).create_infer_request()
        return self._unpacked

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        small = self._unpacked_source is not None and n < self.multiple
        batch = graph_input(
            batch, self.input_dtype, self._fixed_batch, 1 if small else self.multiple
        )
        with self._lock:
            request = self._unpacked_request() if small else self._request
            if n == self.max_batch or n == 1:
                request = self._static_request(n) or request
            out = request.infer({0: batch})[0]
            # The request owns its output buffer: copy before the next call reuses it.
            return np.array(out[:n], dtype=np.float32, copy=True)


class OpenVINOImageDescriber(ImageDescriber):
    """An image graph compiled by OpenVINO for the CPU (the registry's ``image`` entry of this
    backend): ``compute(image, keypoints)`` in one inference of the reused request, behind a
    lock; ``describe`` is refused. Opened, with the same options, by
    :meth:`OpenVINODescriber.open`; ``max_batch`` does not apply and is ignored."""

    backend = "openvino"

    def __init__(
        self,
        compiled: Any,
        artifact: Path,
        metadata: GraphMetadata,
        *,
        max_batch: int | None,
        inference_precision: str = "f32",
    ) -> None:
        super().__init__(
            artifact,
            metadata,
            device="cpu",
            remedy=IMAGE_GRAPH_REMEDY,
            semantics=SEMANTICS_HOST,
        )
        check_image_inputs(artifact, [port.get_any_name() for port in compiled.inputs])
        self.metadata = metadata
        #: Always ``f32``: :meth:`OpenVINODescriber.open` refuses the others for image graphs.
        self.inference_precision = inference_precision
        self.compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self._output = compiled.outputs[0]

    @classmethod
    def open(cls, path: Path | None, **options: Any) -> Describer:
        return OpenVINODescriber.open(path, **options)

    def _run_image(self, gray: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self._request.infer({"image": gray, "keypoints": keypoints})[self._output]
            # The request owns its output buffer: copy before the next call reuses it.
            return np.array(out, dtype=np.float32, copy=True)
