"""INT8: explicit Q/DQ graphs from ONNX Runtime's static quantiser, named by their target.

``tensorrt``: int8 activations and weights, symmetric (zero points 0), per-channel weights,
float biases (TensorRT's parser rejects int32 bias dequantisation), Q/DQ on each Conv's input
only (none on its output, which would split TensorRT's Conv+ReLU fusion).
Its figures are computed in the graph's **exact Q/DQ semantics** (ONNX Runtime with graph
optimisations off: QuantizeLinear and DequantizeLinear run as written, the convs in float),
which is what TensorRT computes, whatever int8 kernels the exporting CPU has.

``cpu``: uint8 asymmetric activations with each Relu folded into its conv's output range,
ONNX Runtime's fast CPU path, int32 biases. Its settings depend on the int8 kernels of the
CPU it is made for (:data:`CPU_SETTINGS`, :mod:`hardnet_export.host`): on x86 without VNNI
the weights use 7 bits, so that the 16-bit pair sums of ONNX Runtime's and OpenVINO's kernels
cannot saturate. It is gated as this host's kernels run it where they compute it as the
target's do, with no sum clipped (made for this host's kernel kind, or for kernels whose
weights this host does not clip: a 7-bit graph for AVX2 on a VNNI or AMX host, which is then
also gated on OpenVINO and in its bf16 float parts here), and in exact semantics (which equal
the target's kernels, as nothing saturates there) where this host's kernels would clip the
target's weights.

Mixed precision: the layers named in ``keep_float`` (default: :data:`LIGHT_FLOAT_LAYERS`
where they hold the gate at :data:`LIGHT_MIN_COSINE`, else :data:`DEFAULT_FLOAT_LAYERS`;
chosen by measurement) stay float, FP16 in the ``tensorrt`` flavour (a valid strongly typed
graph) and FP32 in the ``cpu`` flavour. ``float_budget`` instead keeps the most sensitive
layers (:mod:`hardnet_export.export.sensitivity`) within a share of the multiply-adds.

Both flavours start from the FP32 graph (uint8 input, standardisation inside, which stays
float) and pass the accuracy gate before they are written. Activation ranges are calibrated
once per export and reused by every graph built from them. ``quant_pre_process`` is skipped:
it crashes on torch's dynamo exporter output.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export import host
from hardnet_export._io import scratch_folder
from hardnet_export.artifacts.backends import Backend, backends
from hardnet_export.artifacts.describe import DescribeFn, remembering
from hardnet_export.artifacts.quantisation import (
    DEFAULT_MAX_FPR95_LOSS,
    DEFAULT_MAX_NN_ACCURACY_LOSS,
    DEFAULT_MIN_COSINE,
    GATE_REFERENCE,
    INT8_TARGET_COSINE,
    QAT_POINTS,
    SEMANTICS_EXACT,
    SEMANTICS_HOST,
    GateResult,
    QatRecord,
    Quantisation,
    activation_qparams,
)
from hardnet_export.artifacts.variants import flavours
from hardnet_export.calibration.dataset import DEFAULT_SIZE, CalibrationSet
from hardnet_export.errors import (
    InputError,
    InputTypeError,
    MissingDependencyError,
    Remedy,
    StateError,
)
from hardnet_export.validate import check_bool, check_float, check_int

if TYPE_CHECKING:
    import onnx

    from hardnet_export.artifacts.variants import Variant
    from hardnet_export.data.types import MatchedPairs

METHODS = ("minmax", "entropy", "percentile")
#: Each INT8 build works in its own temporary folder (see scratch_folder).
SCRATCH_PREFIX = "hardnet-int8-"
CALIBRATION_BATCH = 64
#: Histogram bins of the entropy and percentile calibrators (TensorRT's entropy calibrator
#: uses 2048 too); ONNX Runtime's percentile default (99.999 %) is kept.
HISTOGRAM_BINS = 2048
#: The float16/float32 type each flavour gives the layers it keeps float.
FLOAT_TYPE = {"tensorrt": "fp16", "cpu": "fp32"}
#: Layers kept float by default, chosen by measurement (benchmarks/int8.py,
#: benchmarks/results/int8-*.md): the early full-resolution convs see the heavy tails of
#: per-patch standardisation (a near-flat patch with one brighter pixel has z ~ 30 while the
#: median |z| is 0.6), which one per-tensor int8 scale cannot serve together with flat
#: patches. The worst patches are near-flat ones (std < 2 grey levels). The cpu flavour's
#: uint8 activations (255 levels after ReLU) hold them from conv3 on (worst held-out cosine
#: 0.993 with conv0-2 float, 0.97 without). The tensorrt flavour's symmetric int8 has half
#: as many levels for ReLU outputs: conv0-2 float leaves near-flat patches at 0.986, too
#: close to the 0.98 gate for scenes that were never measured; conv0-3 float holds 0.994.
DEFAULT_FLOAT_LAYERS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("conv0", "conv1", "conv2", "conv3"),
    "cpu": ("conv0", "conv1", "conv2"),
}
#: Where no layers are named, the flavour's lighter set is tried first and kept when its
#: gate's worst patch reaches :data:`LIGHT_MIN_COSINE`; otherwise the default set above.
#: conv0 (one input channel, which int8 kernels do not speed up) stays float. Since the gate
#: leaves out flat patches (standard deviation under 3.5 grey levels), the wide models hold
#: that on a 2-core Zen 4 (percentile calibration, 2000 gate pairs): ``hardnet`` 0.9953,
#: ``hardnet-half`` 0.9957, ``hardnet-fast`` 0.9971, and 0.984-0.993 on held-out seeds 1-4
#: (``check``); the narrow ones do not (``hardnet-quarter`` 0.9635, ``hardnet-eighth``
#: 0.9800) and keep conv0-2. ``hardnet``'s graph then runs in 0.72x the time of the conv0-2
#: one on OpenVINO (bf16 float parts, batch 256). Not for ``tensorrt``: its symmetric int8
#: reached 0.9888 on ``hardnet`` and fails on ``hardnet-half``, and no TensorRT measured it.
LIGHT_FLOAT_LAYERS: dict[str, tuple[str, ...]] = {"cpu": ("conv0",)}
LIGHT_MIN_COSINE = INT8_TARGET_COSINE
DEFAULT_METHOD = "percentile"


@dataclass(frozen=True)
class CpuInt8Settings:
    """How the ``cpu`` flavour is quantised for one int8 kernel kind (ONNX Runtime CPU).

    Args:
        reduce_range: 7-bit weights (|w| <= 64), so that u8 x s8 pair sums fit in 16 bits.
        why: the measurement or rule behind the choice.
    """

    reduce_range: bool
    why: str


_NO_SATURATION = "32-bit accumulation: 8-bit weights are exact and fastest"
_SATURATES = (
    "16-bit saturating pair sums (vpmaddubsw): 7-bit weights cannot overflow them; "
    "measured in benchmarks/results/int8-isa-*.md"
)
#: The ``cpu`` flavour's settings per int8 kernel kind (keys of :data:`host.INT8_ISAS`).
CPU_SETTINGS: dict[str, CpuInt8Settings] = {
    isa: CpuInt8Settings(reduce_range=isa in host.SATURATING_ISAS, why=_SATURATES)
    if isa in host.SATURATING_ISAS
    else CpuInt8Settings(reduce_range=False, why=_NO_SATURATION)
    for isa in host.INT8_ISAS
}


@dataclass(frozen=True)
class Int8Options:
    """How to calibrate, quantise and gate an INT8 graph.

    The flavour (``tensorrt`` or ``cpu``) is the variant's (``int8-tensorrt``,
    ``int8-cpu``), not an option.

    Args:
        method: activation range calibration: ``minmax``, ``entropy`` or ``percentile``.
        calibration: ``"builtin"``, a path (``.npy``, PhotoTour, HPatches) or a ready set.
        calibration_size: patches drawn from the source.
        seed: seed of that draw.
        save_calibration: write the calibration set here (``.npy``) for a reproducible build.
        for_isa: ``cpu`` flavour: the int8 kernel kind of the machine it will run on
            (a key of :data:`hardnet_export.host.INT8_ISAS`); None = this machine's.
        keep_float: layer names (``conv0`` ... ``conv6``) kept in float (FP16 for
            ``tensorrt``, FP32 for ``cpu``); None = :data:`LIGHT_FLOAT_LAYERS` where they
            hold the gate's worst patch at :data:`LIGHT_MIN_COSINE`, else
            :data:`DEFAULT_FLOAT_LAYERS`; ``()`` = every conv in int8. A float layer's
            weights and compute are float; its input is float too, except in the ``cpu``
            flavour right after an int8 layer, whose requantised uint8 output it reads
            (that is how ONNX Runtime's int8 convs end).
        float_budget: instead of ``keep_float``: keep the most sensitive layers float while
            their multiply-adds stay within this share (0..1) of the network's.
        sensitivity: rank every layer's sensitivity (each conv quantised alone) on the gate
            pairs and store the report in the metadata (always done for ``float_budget``).
        max_fpr95_loss: the gate's limit, in FPR95 percentage points over FP32.
        max_nn_accuracy_loss: the gate's limit on lost NN accuracy, in percentage points.
        min_cosine: the gate's limit on the worst patch's cosine to FP32.
        force: write the graph even when the gate fails (the failure stays in the metadata).
        gate_pairs: held-out pairs the gate evaluates; default ``gate_size`` pairs from the
            held-out built-in photos.
        gate_size: how many built-in held-out pairs the gate draws when none are given.
        progress: show progress bars.
        qat: the activation ranges of a quantisation-aware trained checkpoint (its
            ``meta["qat"]``; :func:`~hardnet_export.export.onnx.export_onnx` fills it in
            from such a checkpoint): the graph takes its Q/DQ scales from them instead of a
            calibration, and every conv is int8 unless ``keep_float`` says otherwise.
    """

    method: str = DEFAULT_METHOD
    calibration: str | Path | CalibrationSet = "builtin"
    calibration_size: int = DEFAULT_SIZE
    seed: int = 0
    save_calibration: Path | None = None
    for_isa: str | None = None
    keep_float: tuple[str, ...] | None = None
    float_budget: float | None = None
    sensitivity: bool = False
    max_fpr95_loss: float = DEFAULT_MAX_FPR95_LOSS
    max_nn_accuracy_loss: float = DEFAULT_MAX_NN_ACCURACY_LOSS
    min_cosine: float = DEFAULT_MIN_COSINE
    force: bool = False
    gate_pairs: MatchedPairs | None = None
    gate_size: int = 2000
    progress: bool = False
    qat: QatRecord | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(
                f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        check_int("calibration_size", self.calibration_size, low=1, high=10_000_000)
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        check_int("gate_size", self.gate_size, low=2, high=10_000_000)
        for name in ("max_fpr95_loss", "max_nn_accuracy_loss"):
            check_float(name, getattr(self, name), low=0.0, high=100.0)
        check_float("min_cosine", self.min_cosine, low=-1.0, high=1.0)
        for name in ("sensitivity", "force", "progress"):
            check_bool(name, getattr(self, name))
        if self.for_isa is not None:
            host.check_isa(self.for_isa)
        if self.keep_float is not None and self.float_budget is not None:
            raise InputError("give keep_float (layer names) or float_budget (a share), not both")
        if self.float_budget is not None:
            check_float("float_budget", self.float_budget, low=0.0, high=1.0)
        if self.keep_float is not None:
            object.__setattr__(self, "keep_float", tuple(self.keep_float))
        if self.qat is not None and not isinstance(self.qat, QatRecord):
            raise InputTypeError(f"qat must be a QatRecord, got {type(self.qat).__name__}")
        if self.qat is not None and self.float_budget is not None:
            raise InputError(
                "float_budget ranks layers by their calibrated sensitivity; a QAT graph takes "
                "its ranges from training: give keep_float, or neither"
            )

    def isa(self, target: str) -> str | None:
        """The int8 kernel kind a ``target`` graph is made for: ``for_isa`` or this machine's
        for the ``cpu`` flavour, None for ``tensorrt``.

        Raises:
            InputError: ``for_isa`` given for the ``tensorrt`` flavour.
        """
        check_target(target)
        if target != "cpu":
            if self.for_isa is not None:
                raise InputError(
                    "for_isa applies to the cpu flavour only: the tensorrt flavour is checked "
                    "in exact Q/DQ semantics, which no CPU changes"
                )
            return None
        return self.for_isa or host.int8_isa()

    def semantics(self, target: str) -> str:
        """How a ``target`` graph's gate and parity figures are computed (module docstring)."""
        # Made for this host's kernel kind, or for one whose weights this host does not clip.
        if target == "cpu" and host.int8_kernels_fit(host.int8_isa(), target, self.isa(target)):
            return SEMANTICS_HOST
        return SEMANTICS_EXACT


def check_target(target: str) -> str:
    """``target`` if it is an INT8 flavour of the variants table (``tensorrt``, ``cpu``).

    Raises:
        InputError: anything else.
    """
    known = flavours("int8")
    if target not in known:
        raise InputError(f"int8 target must be one of {', '.join(known)}, got {target!r}")
    return target


def resolve_calibration(options: Int8Options) -> CalibrationSet:
    """The calibration set the options name (drawn, loaded or given), saved if asked."""
    from hardnet_export.calibration.dataset import make_calibration_set

    calibration = options.calibration
    if not isinstance(calibration, CalibrationSet):
        calibration = make_calibration_set(
            calibration, size=options.calibration_size, seed=options.seed, progress=options.progress
        )
    if options.save_calibration is not None:
        calibration.save(options.save_calibration)
    return calibration


def conv_layers(model: onnx.ModelProto) -> list[str]:
    """The conv layer names of a HardNet graph in order (``conv0`` ... ``conv6``)."""
    return [node.name for node in model.graph.node if node.op_type == "Conv"]


def check_layers(model: onnx.ModelProto, names: Sequence[str]) -> tuple[str, ...]:
    """``names`` in graph order, if each is a conv layer of ``model``.

    Raises:
        ValueError: an unknown name; the message lists the layers.
    """
    layers = conv_layers(model)
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise InputError(
            f"no conv layer called {', '.join(unknown)}; the layers are {', '.join(layers)}"
        )
    return tuple(name for name in layers if name in names)


def patch_reader(calibration: CalibrationSet, input_name: str) -> Any:
    """ONNX Runtime's ``CalibrationDataReader`` over a calibration set: uint8
    (n, 1, 32, 32) batches (built here so that importing this module needs no ONNX Runtime)."""
    from onnxruntime.quantization import CalibrationDataReader

    class PatchReader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = calibration.batches(CALIBRATION_BATCH)
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.position, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self.position: Iterator[np.ndarray] = iter(self.batches)

    return PatchReader()


def _op_types(target: str) -> list[str]:
    # Quantising Relu too lets the quantiser fold each Relu into the uint8 range of the conv
    # output (zero point 0): no DQ -> Relu -> Q between convs. Measured on 2 cores (AVX-512
    # VNNI), batch 512: 1.5x the Conv-only graph, and a closer match to FP32.
    return ["Conv"] if target == "tensorrt" else ["Conv", "Relu"]


class Quantizer:
    """Calibrates an FP32 graph once, then builds Q/DQ graphs with any layers kept float.

    Use as a context manager (it holds a temporary folder for the calibrated ranges)::

        with Quantizer(fp32, calibration, target="tensorrt", method="percentile") as q:
            graph = q.build(keep_float=("conv0",))
    """

    def __init__(
        self,
        fp32: onnx.ModelProto,
        calibration: CalibrationSet | None,
        *,
        target: str,
        method: str,
        isa: str | None = None,
        qat: QatRecord | None = None,
    ) -> None:
        check_target(target)
        if calibration is None and qat is None:
            raise InputError("a Quantizer needs a calibration set or a QAT record")
        if method not in METHODS:
            raise InputError(
                f"calibration method must be one of {', '.join(METHODS)}, got {method!r}"
            )
        if target == "cpu":
            isa = host.check_isa(isa or host.int8_isa())
        if qat is not None and qat.exact_input:
            if target != "cpu":
                raise InputError(
                    "this QAT checkpoint trained the exact-input form, which only the cpu "
                    f"flavour takes; export it with the cpu target, not {target}"
                )
            from hardnet_export.export.exact_input import exact_input_graph

            fp32 = exact_input_graph(fp32)
        self.fp32, self.calibration, self.qat = fp32, calibration, qat
        self.target, self.method, self.isa = target, method, isa
        self.layers = conv_layers(fp32)
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._ranges: Path | None = None

    def __enter__(self) -> Quantizer:
        import onnx

        self._tmp = self._stack.enter_context(scratch_folder(SCRATCH_PREFIX))
        onnx.save_model(self.fp32, self._tmp / "fp32.onnx")
        if self.qat is not None:
            self._ranges = self._qat_ranges(self.qat)
        else:
            with _quiet_quantiser():
                self._ranges = self._calibrate()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _qat_ranges(self, qat: QatRecord) -> Path:
        """A calibration cache holding the QAT ranges, keyed by the graph's tensor names:
        each conv's input, each conv's output (the range of the Relu after it, which the
        ``cpu`` flavour folds into the conv's uint8 output) and the last conv's output."""
        import inspect

        from onnxruntime.quantization import calibrate, quantize_static

        assert self._tmp is not None
        if not hasattr(calibrate, "save_tensors_data") or (
            "calibration_cache_path" not in inspect.signature(quantize_static).parameters
        ):
            raise MissingDependencyError(
                "exporting a QAT checkpoint needs an ONNX Runtime whose quantiser takes a "
                "calibration cache (calibration_cache_path); upgrade onnxruntime"
            )
        data = {
            name: calibrate.TensorData(
                lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32)
            )
            for name, (lo, hi) in qat_tensor_ranges(self.fp32, qat, self.target).items()
        }
        cache = self._tmp / "qat-ranges.json"
        # Ranges as they are: "minmax" is the calibration method that takes them unchanged.
        calibrate.save_tensors_data(calibrate.TensorsData(_ort_method("minmax"), data), cache)
        return cache

    @property
    def settings(self) -> CpuInt8Settings | None:
        """The ``cpu`` flavour's settings for its kernel kind; None for ``tensorrt``."""
        return CPU_SETTINGS[self.isa] if self.isa is not None else None

    def _calibrate(self) -> Path | None:
        """Activation ranges of every tensor the quantiser needs, as a calibration cache
        file; None where this ONNX Runtime cannot take one (then each build calibrates).

        quantize_static's own entropy calibrator uses 128 bins for 128 quantised bins, which
        leaves the KL search a single candidate, the full range: "entropy" would silently be
        min/max. The ranges here use TensorRT's 2048 bins.
        """
        import inspect

        from onnxruntime.quantization import calibrate, quantize_static

        assert self._tmp is not None
        if not hasattr(calibrate, "save_tensors_data") or (
            "calibration_cache_path" not in inspect.signature(quantize_static).parameters
        ):
            return None
        extra: dict[str, Any] = {}
        if self.method == "entropy":
            extra = {"num_bins": HISTOGRAM_BINS, "num_quantized_bins": 128}
        elif self.method == "percentile":
            extra = {"num_bins": HISTOGRAM_BINS}
        calibrator = calibrate.create_calibrator(
            self._tmp / "fp32.onnx",
            _op_types(self.target),
            augmented_model_path=str(self._tmp / "augmented.onnx"),
            calibrate_method=_ort_method(self.method),
            extra_options=extra,
        )
        calibrator.collect_data(patch_reader(self.calibration, self.fp32.graph.input[0].name))
        cache = self._tmp / "ranges.json"
        calibrate.save_tensors_data(calibrator.compute_data(), cache)
        return cache

    def build(self, keep_float: Sequence[str] = ()) -> onnx.ModelProto:
        """The Q/DQ graph with the layers ``keep_float`` in float (FP16 for ``tensorrt``)."""
        import onnx
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        if self._tmp is None:
            raise StateError("use Quantizer as a context manager (with Quantizer(...) as q)")
        kept = check_layers(self.fp32, keep_float)
        # A float conv keeps its Relu float too: a Relu quantised alone only adds error.
        excluded = [*kept, *(f"relu{name[len('conv') :]}" for name in kept)]
        if self.target == "tensorrt":
            activation_type = QuantType.QInt8
            extra = {
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
                # Q/DQ at each conv's input only: a pair on a Conv's output would sit between
                # the Conv and its Relu and split the Conv+ReLU fusion (TensorRT developer
                # guide, "Q/DQ Layer-Placement Recommendations": quantise the inputs of
                # weighted layers, not their outputs). The next conv's input Q/DQ follows
                # the Relu, where TensorRT fuses it into the Conv+ReLU's int8 output.
                "OpTypesToExcludeOutputQuantization": ["Conv"],
            }
            reduce_range = False
        else:
            activation_type = QuantType.QUInt8
            extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
            assert self.settings is not None
            reduce_range = self.settings.reduce_range
            if self.qat is not None and self.qat.reduce_range != reduce_range:
                raise InputError(
                    f"this QAT checkpoint was trained with "
                    f"{7 if self.qat.reduce_range else 8}-bit weights, but {self.isa}'s int8 "
                    f"kernels take {7 if reduce_range else 8}-bit ones"
                    + (" (their 16-bit pair sums saturate)" if reduce_range else "")
                    + ": fine-tune it with {qat_reduce_range} set accordingly, or export for "
                    "another {for_isa}",
                    remedies={
                        "qat_reduce_range": Remedy({"qat_reduce_range": reduce_range}),
                        "for_isa": Remedy({"for_isa": ...}),
                    },
                )
        out = self._tmp / f"int8-{len(list(self._tmp.iterdir()))}.onnx"
        with _quiet_quantiser():
            quantize_static(
                self._tmp / "fp32.onnx",
                out,
                None
                if self._ranges is not None
                else patch_reader(self.calibration, self.fp32.graph.input[0].name),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=_op_types(self.target),
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=activation_type,
                weight_type=QuantType.QInt8,
                calibrate_method=_ort_method("minmax" if self.qat else self.method),
                nodes_to_exclude=excluded,
                extra_options=extra,
                **({"calibration_cache_path": self._ranges} if self._ranges is not None else {}),
            )
        model = onnx.load(out)
        out.unlink()
        if self.qat is not None and self.qat.exact_input:
            from hardnet_export.export.exact_input import (
                drop_accumulator_qdq,
                input_side,
                set_weight_sums,
            )

            drop_accumulator_qdq(model)
            set_weight_sums(model, input_side(self.fp32))
        if self.qat is not None:
            check_qat_scales(model, self.fp32, self.qat, self.target)
        if kept and self.target == "tensorrt":
            from hardnet_export.export.fp16 import nodes_to_fp16

            names = {node.name for node in model.graph.node}
            model = nodes_to_fp16(model, [name for name in excluded if name in names])
        return model


def _ort_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def qat_tensor_ranges(
    fp32: onnx.ModelProto, qat: QatRecord, target: str
) -> dict[str, tuple[float, float]]:
    """The QAT record's ranges keyed by the FP32 graph's tensor names: each conv's input,
    and each conv's output: its own range in the ``tensorrt`` flavour (given to the quantiser,
    which quantises no conv output there), the Relu's after it (the next conv's input range)
    in the ``cpu`` flavour, whose uint8 conv outputs fold the Relu in, except the last conv's
    (no Relu)."""
    convs = [node for node in fp32.graph.node if node.op_type == "Conv"]
    count = len(QAT_POINTS) // 2
    if len(convs) != count:
        raise InputError(f"a QAT record fits a graph of {count} convs; this one has {len(convs)}")
    readers: dict[str, list[str]] = {}
    for node in fp32.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    ranges: dict[str, tuple[float, float]] = {}
    for index, conv in enumerate(convs):
        ranges[conv.input[0]] = qat.ranges[QAT_POINTS[index]]
        folded = target == "cpu" and index < count - 1
        if folded and readers.get(conv.output[0]) != ["Relu"]:
            # The exact-input form's conv0 output is its raw accumulation, which the float
            # standardisation reads. The quantiser insists on a range for every conv
            # output; the Q/DQ pair it writes there is removed after (exact_input).
            ranges[conv.output[0]] = (-1.0, 1.0)
            continue
        ranges[conv.output[0]] = qat.ranges[QAT_POINTS[index + 1 if folded else count + index]]
    return ranges


def qat_point_of_tensor(fp32: onnx.ModelProto) -> dict[str, str]:
    """Which QAT point each activation a Q/DQ graph quantises is, by the FP32 graph's
    tensor names (the quantiser keeps them): conv inputs and conv outputs."""
    convs = [node for node in fp32.graph.node if node.op_type == "Conv"]
    found = {conv.input[0]: QAT_POINTS[i] for i, conv in enumerate(convs)}
    found.update({conv.output[0]: QAT_POINTS[len(convs) + i] for i, conv in enumerate(convs)})
    return found


#: How far ONNX Runtime's scale may be from the QAT formula's before the export refuses:
#: both compute the same float64 quotient and round it to float32 once.
QAT_SCALE_RTOL = 1e-6


def check_qat_scales(
    model: onnx.ModelProto, fp32: onnx.ModelProto, qat: QatRecord, target: str
) -> None:
    """Raise unless every activation QuantizeLinear of ``model`` holds the scale and zero
    point QAT trained with (:func:`activation_qparams`), and every Conv reads int8 weights
    and a dequantised input (no conv left float by accident).

    Raises:
        StateError: a scale, zero point or conv that is not what QAT trained.
    """
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    points = qat_point_of_tensor(fp32)
    produced = {out: node for node in model.graph.node for out in node.output}
    seen = set()
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in points:
            continue
        point = points[node.input[0]]
        scale, zero = activation_qparams(*qat.ranges[point], target)
        got_scale, got_zero = float(inits[node.input[1]]), int(inits[node.input[2]])
        if abs(got_scale - scale) > QAT_SCALE_RTOL * scale or got_zero != zero:
            raise StateError(
                f"ONNX Runtime's quantiser wrote scale {got_scale!r}, zero point {got_zero} at "
                f"{point}, where QAT trained with {scale!r}, {zero}"
            )
        # Bit-exact from here on: the graph holds the float32 scale training used.
        inits[node.input[1]][...] = np.float32(scale)
        seen.add(point)
    for tensor in model.graph.initializer:
        if tensor.name in inits and tensor.data_type == 1 and not tensor.dims:
            tensor.CopyFrom(numpy_helper.from_array(inits[tensor.name], tensor.name))
    for conv in (node for node in model.graph.node if node.op_type == "Conv"):
        kinds = [produced.get(name) for name in conv.input[:2]]
        if any(k is None or k.op_type != "DequantizeLinear" for k in kinds):
            return  # a layer kept float on purpose (keep_float): nothing more to check
    inputs = QAT_POINTS[: len(QAT_POINTS) // 2]
    expected = set(inputs) if target == "tensorrt" else {*inputs, QAT_POINTS[-1]}
    if seen != expected:
        raise StateError(
            f"the Q/DQ graph quantises {', '.join(sorted(seen))}; QAT trained "
            f"{', '.join(sorted(expected))}"
        )


def quantize_qdq(
    fp32: onnx.ModelProto,
    calibration: CalibrationSet,
    *,
    target: str,
    method: str,
    isa: str | None = None,
    keep_float: Sequence[str] = (),
) -> onnx.ModelProto:
    """Calibrate ``fp32`` on ``calibration`` and return its Q/DQ graph for ``target``."""
    with Quantizer(fp32, calibration, target=target, method=method, isa=isa) as quantizer:
        return quantizer.build(keep_float)


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    # The quantiser prints calibration chatter to stdout and warns on the root logger that
    # quant_pre_process was skipped (on purpose: it crashes on dynamo exporter output).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def int8_variant(
    fp32: onnx.ModelProto, variant: Variant, options: Int8Options | None = None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """An INT8 variant's graph and metadata (the entry point the variants table names)."""
    if variant.flavour is None:
        raise InputError(f"the {variant.name} variant names no INT8 flavour")
    return quantize_int8(fp32, variant.flavour, options or Int8Options())


def quantize_int8(
    fp32: onnx.ModelProto, target: str, options: Int8Options
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Calibrate, quantise and gate: the ``target`` flavour's INT8 graph and the metadata to
    store with it (:class:`~hardnet_export.artifacts.metadata.GraphMetadata` fields: its
    ``quantisation`` record).

    Raises:
        Int8GateError: the INT8 graph loses more than the gate allows on held-out pairs
            and ``options.force`` is False.
    """
    from hardnet_export.calibration.gate import evaluate_gate
    from hardnet_export.runtime.onnxruntime_backend import ort_describe

    isa = options.isa(target)
    semantics = options.semantics(target)
    if options.keep_float is not None:
        check_layers(fp32, options.keep_float)  # before the slow part: a typo fails at once
    qat = options.qat
    calibration = resolve_calibration(options) if qat is None else None
    pairs = options.gate_pairs
    if pairs is None:
        from hardnet_export.data.builtin import validation_pairs

        pairs = validation_pairs(options.gate_size)
    tried: dict[str, Any] | None = None  # the lighter float set's trial, where made
    # Every gate below compares with the FP32 graph on the same pairs: described once.
    reference = remembering(ort_describe(fp32))
    with Quantizer(
        fp32, calibration, target=target, method=options.method, isa=isa, qat=qat
    ) as quantizer:
        sensitivity = None
        if options.sensitivity or options.float_budget is not None:
            from hardnet_export.export.sensitivity import layer_sensitivity

            sensitivity = layer_sensitivity(
                quantizer, pairs, semantics=semantics, progress=options.progress
            )
        if options.float_budget is not None:
            assert sensitivity is not None
            keep_float = sensitivity.within_budget(options.float_budget)
        elif options.keep_float is None and qat is not None:
            keep_float = ()  # QAT trained every conv in int8: none is kept float
        elif options.keep_float is None:
            keep_float, tried = _default_float_layers(quantizer, reference, target, pairs, options)
        else:
            keep_float = check_layers(fp32, options.keep_float)
        int8 = quantizer.build(keep_float)
        backend_gates: dict[str, GateResult] = {}
        backend_float: dict[str, tuple[str, ...]] = {}
        chosen = options.keep_float is not None or options.float_budget is not None
        # A QAT graph's layers are int8 by training; a backend that computes one wrongly
        # fails its gate (recorded; that backend refuses the graph) rather than turning the
        # graph into a mixed one behind the user's back.
        chosen = chosen or qat is not None
        for backend in gate_backends(target, semantics):
            int8, keep_float, backend_gates[backend.name], added = _gate_on_backend(
                backend, quantizer, reference, int8, keep_float, pairs, options,
                may_add=not chosen,
            )  # fmt: skip
            if added:
                backend_float[backend.name] = added
    label = (
        f"INT8 ({target}, {options.method} calibration on {calibration.source})"
        if calibration is not None
        else f"INT8 ({target}, quantisation-aware trained ranges)"
    )
    gate = evaluate_gate(
        reference,
        ort_describe(int8, semantics=semantics),
        pairs,
        max_fpr95_loss=options.max_fpr95_loss,
        max_nn_accuracy_loss=options.max_nn_accuracy_loss,
        min_cosine=options.min_cosine,
        force=options.force,
        label=label,
        semantics=semantics,
    )
    settings: dict[str, Any] = {
        "per_channel_weights": True,
        "activations": "int8 symmetric" if target == "tensorrt" else "uint8 asymmetric",
        "float_layers": dict.fromkeys(keep_float, FLOAT_TYPE[target]),
    }
    if tried is not None:
        settings["light_float_layers"] = tried
    if isa is not None:
        settings["reduce_range"] = CPU_SETTINGS[isa].reduce_range
    if qat is not None:
        # The record of where the scales came from: QAT, for these flavours, from these
        # ranges (the checkpoint's meta["qat"]).
        settings["qat"] = qat.to_dict()
    for name, added in backend_float.items():
        settings[f"{name}_float_layers"] = list(added)
    gates = {GATE_REFERENCE: gate, **backend_gates}
    quantisation = Quantisation(
        flavour=target,
        scheme="qdq",
        isa=isa,
        settings=settings,
        calibration={**calibration.describe(), "method": options.method}
        if calibration is not None
        else {
            "source": "quantisation-aware training",
            "method": "qat",
            "size": 0,
            # Keys engine caches like a calibration set's hash: other ranges, other graph.
            "sha256": hashlib.sha256(
                json.dumps(qat.to_dict(), sort_keys=True).encode()
            ).hexdigest(),
        },
        sensitivity=sensitivity.to_dict() if sensitivity is not None else None,
        gates=gates,
    )
    return int8, {"quantisation": quantisation}


def _default_float_layers(
    quantizer: Quantizer,
    reference: DescribeFn,
    target: str,
    pairs: MatchedPairs,
    options: Int8Options,
) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """The float layers of an export that names none: :data:`LIGHT_FLOAT_LAYERS` where
    their graph's gate (ONNX Runtime, the export's semantics) passes with a worst patch of
    at least :data:`LIGHT_MIN_COSINE`, else :data:`DEFAULT_FLOAT_LAYERS`; and the record of
    that trial for the metadata (None where the flavour has no lighter set). ``reference``
    describes with the FP32 graph."""
    from hardnet_export.calibration.gate import evaluate_gate
    from hardnet_export.runtime.onnxruntime_backend import ort_describe

    light = LIGHT_FLOAT_LAYERS.get(target)
    if light is None:
        return DEFAULT_FLOAT_LAYERS[target], None
    semantics = options.semantics(target)
    limit = max(options.min_cosine, LIGHT_MIN_COSINE)
    trial = evaluate_gate(
        reference,
        ort_describe(quantizer.build(light), semantics=semantics),
        pairs,
        max_fpr95_loss=options.max_fpr95_loss,
        max_nn_accuracy_loss=options.max_nn_accuracy_loss,
        min_cosine=limit,
        force=True,  # a failed trial is an answer, not an error
        semantics=semantics,
    )
    kept = trial.passed
    record = {
        "layers": list(light),
        "min_cosine": round(trial.min_cosine, 4),
        "limit": limit,
        "kept": kept,
    }
    return (light if kept else DEFAULT_FLOAT_LAYERS[target]), record


#: A layer quantised alone whose descriptors on a gated backend fall below this cosine to
#: ONNX Runtime's (worst probe patch) is one that backend computes differently; kernels that
#: agree measure >= 0.9999 here (OpenVINO's).
BACKEND_AGREEMENT = 0.99
#: Patches that probe each layer for a gated backend's disagreement.
BACKEND_PROBE = 256


def gate_backends(target: str, semantics: str) -> list[Backend]:
    """The backends besides ONNX Runtime that a ``target`` graph is gated on: those whose
    record lists the flavour in ``gate_targets`` and names a ``gate`` describe function,
    where installed (OpenVINO for the ``cpu`` flavour), and only for a graph measured in this
    host's kernels: a graph made for another machine's kernels is not measured where it
    will run."""
    if semantics != SEMANTICS_HOST:
        return []
    return [
        b for b in backends() if target in b.gate_targets and b.gate is not None and b.available()
    ]


def _gate_on_backend(
    backend: Backend,
    quantizer: Quantizer,
    reference: DescribeFn,
    int8: onnx.ModelProto,
    keep_float: Sequence[str],
    pairs: MatchedPairs,
    options: Int8Options,
    *,
    may_add: bool,
) -> tuple[onnx.ModelProto, tuple[str, ...], GateResult, tuple[str, ...]]:
    """The INT8 gate on ``backend``, which ``runtime.load(device="cpu")`` may pick for INT8
    graphs (OpenVINO: its record's ``cpu_rules``).

    OpenVINO fuses the same Q/DQ graph into its own int8 kernels, and they are not always
    right: measured with OpenVINO 2026.4 on a Xeon (AMX), hardnet-eighth's last conv
    (16 -> 128 channels, 8x8 kernel) in int8 gives descriptors unrelated to ONNX Runtime's
    (mean cosine 0.03) while every other layer agrees to 1.0000. When the gate fails there and
    the float layers were the default (``may_add``), each int8 layer is quantised alone and
    those the backend computes differently from ONNX Runtime are kept float too; the graph is
    rebuilt and gated again on both. Otherwise the failure is only recorded, and the backend
    refuses the graph (ONNX Runtime, where it passed, runs it).

    Returns:
        the graph, its float layers, the backend's gate and the layers added for it.
    """
    from hardnet_export.calibration.gate import evaluate_gate
    from hardnet_export.evaluation.metrics import compare_descriptors
    from hardnet_export.runtime.onnxruntime_backend import ort_describe

    describe_on = backend.gate_function()
    assert describe_on is not None  # gate_backends keeps only backends that name one

    def gate_of(graph: onnx.ModelProto) -> GateResult:
        return evaluate_gate(
            reference,
            describe_on(graph),
            pairs,
            max_fpr95_loss=options.max_fpr95_loss,
            max_nn_accuracy_loss=options.max_nn_accuracy_loss,
            min_cosine=options.min_cosine,
            force=True,  # recorded, not raised: ONNX Runtime's gate decides the export
            label=f"INT8 on {backend.name}",
        )

    gate = gate_of(int8)
    if gate.passed or not may_add:
        return int8, tuple(keep_float), gate, ()
    probe = pairs.anchors[:BACKEND_PROBE, None]
    layers = quantizer.layers
    wrong = []
    for layer in (name for name in layers if name not in keep_float):
        alone = quantizer.build([name for name in layers if name != layer])
        agreement = compare_descriptors(ort_describe(alone)(probe), describe_on(alone)(probe))
        if not agreement["min_cosine"] >= BACKEND_AGREEMENT:
            wrong.append(layer)
    if not wrong:
        return int8, tuple(keep_float), gate, ()
    keep_float = tuple(name for name in layers if name in keep_float or name in wrong)
    int8 = quantizer.build(keep_float)
    return int8, keep_float, gate_of(int8), tuple(wrong)
