"""How a quantised graph was made and gated, as one typed record in its metadata.

:class:`Quantisation` is what an exported graph of a quantised variant says about its
quantisation: the scheme, the flavour, the int8 kernels it was made for, its settings, the
calibration set, the per-layer sensitivity report and the accuracy gates, each a
:class:`GateResult` keyed by the backend that ran the graph for it (:data:`GATE_BACKENDS`).
It lives in the floor, torch-free, because the runtime, ``check``, the CLI and the TensorRT
builder all read it back; the export (:mod:`hardnet_export.export.int8`) and the gate
(:mod:`hardnet_export.calibration.gate`) write it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from hardnet_export.errors import InputError, InputTypeError
from hardnet_export.validate import check_bool, check_float, check_int, check_str

# How a figure of a quantised graph was computed (the "semantics" field of gate, parity, check).
#: The graph's exact Q/DQ semantics: ONNX Runtime with graph optimisations off, so Quantize-
#: and DequantizeLinear run as written and the convs in float: what TensorRT computes, equal
#: on every host.
SEMANTICS_EXACT = "exact-qdq"
#: This host's fused int8 kernels (ONNX Runtime with all optimisations): what a CPU runs.
SEMANTICS_HOST = "host-kernels"
#: A GPU backend's kernels (TensorRT, ONNX Runtime CUDA): what ``check`` measures on a GPU.
SEMANTICS_DEVICE = "device-kernels"
SEMANTICS = (SEMANTICS_EXACT, SEMANTICS_HOST, SEMANTICS_DEVICE)

#: The export's own gate, the one that decides whether the graph is written: ONNX Runtime
#: runs the graph in the semantics the gate records (exact Q/DQ for a graph made for
#: TensorRT or another CPU's kernels, this host's kernels otherwise).
GATE_REFERENCE = "onnxruntime"
#: The same gate with the graph run by OpenVINO (the ``cpu`` flavour, where OpenVINO was
#: installed at export): recorded, not decisive; OpenVINO refuses a graph that failed it.
GATE_OPENVINO = "openvino"
#: The backends a gate may be keyed by, in the order they are reported; the export gates
#: on each backend whose record (:mod:`hardnet_export.artifacts.backends`) lists the flavour
#: in ``gate_targets``, under the backend's name.
GATE_BACKENDS = (GATE_REFERENCE, GATE_OPENVINO)
#: How reports name a gate's backend (a backend not listed: its record's name).
GATE_LABELS = {GATE_REFERENCE: "ONNX Runtime", GATE_OPENVINO: "OpenVINO"}

#: The gate's default limits: FPR95 may rise by 1 percentage point, NN accuracy fall by 2,
#: and the worst textured patch keep a cosine of 0.98 to FP32.
DEFAULT_MAX_FPR95_LOSS = 1.0
DEFAULT_MAX_NN_ACCURACY_LOSS = 2.0
DEFAULT_MIN_COSINE = 0.98
#: The stricter worst cosine INT8 graphs are held to where there is a choice: the export keeps
#: its lighter float-layer set only where the gate reaches it, and OpenVINO's bf16 float
#: parts run an INT8 graph only where their gate does (issue 24's bar for INT8 graphs).
INT8_TARGET_COSINE = 0.99


@dataclass(frozen=True)
class GateResult:
    """FP32 (reference) vs a candidate on the same held-out pairs; rates in percent."""

    pairs: int
    source: str
    fpr95_reference: float
    fpr95_candidate: float
    fpr95_loss_pp: float
    nn_accuracy_reference: float
    nn_accuracy_candidate: float
    nn_accuracy_loss_pp: float
    min_cosine: float
    mean_cosine: float
    max_fpr95_loss_pp: float
    max_nn_accuracy_loss_pp: float
    passed: bool
    forced: bool
    min_cosine_limit: float = -1.0
    nn_agreement: float = float("nan")
    semantics: str = SEMANTICS_HOST
    #: Over every patch, flat ones included (``min_cosine`` is over textured patches).
    min_cosine_all: float = float("nan")
    flat_patches: int = 0
    host: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the gate") -> GateResult:
        """The gate a JSON object records (fields this version does not know are ignored).

        Raises:
            InputError: a field missing or of the wrong kind; the message names ``source``.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"{source} must be a JSON object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        missing = []
        for item in fields(cls):
            if item.name not in data:
                if item.default is MISSING and item.default_factory is MISSING:
                    missing.append(item.name)
                continue
            values[item.name] = _check_gate_field(item.name, data[item.name], source)
        if missing:
            raise InputError(f"{source} lacks the gate fields {', '.join(missing)}")
        return cls(**values)

    def failures(self) -> list[str]:
        """The limits this result exceeds, one phrase each (empty when it passed)."""
        found = []
        if self.fpr95_loss_pp > self.max_fpr95_loss_pp:
            found.append(
                f"FPR95 rose by {self.fpr95_loss_pp:.2f} pp (limit {self.max_fpr95_loss_pp:g})"
            )
        if self.nn_accuracy_loss_pp > self.max_nn_accuracy_loss_pp:
            found.append(
                f"NN accuracy fell by {self.nn_accuracy_loss_pp:.2f} points "
                f"(limit {self.max_nn_accuracy_loss_pp:g})"
            )
        if not self.min_cosine >= self.min_cosine_limit:
            found.append(
                f"the worst patch's cosine to FP32 is {self.min_cosine:.4f} "
                f"(limit {self.min_cosine_limit:g})"
            )
        return found

    def summary(self) -> str:
        verdict = "passed" if self.passed else ("FAILED (forced)" if self.forced else "FAILED")
        return (
            f"INT8 gate {verdict} ({self.semantics}) on {self.pairs} held-out pairs: FPR95 "
            f"{self.fpr95_reference:.2f}% -> {self.fpr95_candidate:.2f}% "
            f"({self.fpr95_loss_pp:+.2f} pp, limit {self.max_fpr95_loss_pp:g}), NN accuracy "
            f"{self.nn_accuracy_reference:.2f}% -> {self.nn_accuracy_candidate:.2f}% "
            f"({-self.nn_accuracy_loss_pp:+.2f} pp, limit {self.max_nn_accuracy_loss_pp:g}), "
            f"cosine min {self.min_cosine:.4f} mean {self.mean_cosine:.4f}{self._flat_note()}"
        )

    def _flat_note(self) -> str:
        if not self.flat_patches:
            return ""
        return (
            f" (min over textured patches; {self.flat_patches} flat, min over all "
            f"{self.min_cosine_all:.4f})"
        )


def _check_gate_field(name: str, value: Any, source: str) -> Any:
    # A value of the wrong type in a file is bad content (InputError), as metadata's other
    # fields report it, not a caller's type mistake.
    try:
        return _check_gate_value(name, value, source)
    except InputTypeError as exc:
        raise InputError(str(exc)) from None


def _check_gate_value(name: str, value: Any, source: str) -> Any:
    if name in ("pairs", "flat_patches"):
        return check_int(name, value, low=0, source=source)
    if name in ("passed", "forced"):
        return check_bool(name, value, source=source)
    if name == "source":
        return check_str(name, value, source=source)
    if name == "semantics":
        return check_str(name, value, choices=SEMANTICS, source=source)
    if name == "host":
        return _check_object(name, value, source)
    return check_float(name, value, source=source)


def _check_object(name: str, value: Any, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{source}: {name} must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True, kw_only=True)
class Quantisation:
    """How a quantised graph was made, and how it measured against FP32.

    Attributes:
        flavour: the variant's flavour (``tensorrt``, ``cpu`` for INT8): which backend's
            kernels the graph is shaped for.
        scheme: how the graph carries its quantisation: ``qdq`` (explicit Quantize- and
            DequantizeLinear around the quantised ops).
        isa: the int8 kernel kind a CPU flavour was made for (a key of
            :data:`hardnet_export.host.INT8_ISAS`); None for a flavour no CPU changes.
        settings: ``{"activations", "per_channel_weights", "float_layers", ...}``.
        calibration: the calibration set: ``{"source", "size", "seed", "sha256", "method"}``.
        sensitivity: the per-layer sensitivity report
            (:class:`hardnet_export.export.sensitivity.SensitivityReport`), when one was made.
        gates: the accuracy gates, keyed by the backend that ran the graph
            (:data:`GATE_REFERENCE`, :data:`GATE_OPENVINO`).
    """

    flavour: str
    scheme: str = "qdq"
    isa: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    sensitivity: dict[str, Any] | None = None
    gates: dict[str, GateResult] = field(default_factory=dict)

    @property
    def gate(self) -> GateResult | None:
        """The export's own gate (:data:`GATE_REFERENCE`), which decided the export."""
        return self.gates.get(GATE_REFERENCE)

    @property
    def calibration_sha256(self) -> str | None:
        """The sha256 of the calibration set's ``.npy`` bytes."""
        found = (self.calibration or {}).get("sha256")
        return found if isinstance(found, str) else None

    def failed_on(self, backend: str) -> bool:
        """Whether the export measured the graph on ``backend`` and it failed the gate there."""
        gate = self.gates.get(backend)
        return gate is not None and not gate.passed

    def summary_lines(self) -> list[str]:
        """The gates (the export's own first), the calibration set's hash and the layers
        kept float, one line each, as ``hardnet-export onnx`` reports them."""
        lines = []
        if self.gate is not None:
            lines.append(self.gate.summary())
            for backend, gate in self.gates.items():
                if backend != GATE_REFERENCE:
                    lines.append(f"on {GATE_LABELS.get(backend, backend)}: {gate.summary()}")
            if (self.calibration or {}).get("method") == "qat":
                lines.append(
                    "scales from quantisation-aware training (ranges sha256 "
                    f"{self.calibration_sha256})"
                )
            else:
                lines.append(f"calibration set sha256 {self.calibration_sha256}")
        if self.settings:
            floats = self.settings.get("float_layers") or {}
            kept = ", ".join(f"{k} {v}" for k, v in floats.items()) or "none"
            for backend in self.gates:
                # The export keeps float the layers a gated backend's kernels get wrong.
                added = self.settings.get(f"{backend}_float_layers")
                if added:
                    label = GATE_LABELS.get(backend, backend)
                    kept += f" ({', '.join(added)}: {label}'s int8 kernels get it wrong here)"
            isa = f", for {self.isa} int8 kernels" if self.isa else ""
            lines.append(f"float layers: {kept}{isa}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record (None fields omitted)."""
        data: dict[str, Any] = {
            "flavour": self.flavour,
            "scheme": self.scheme,
            "isa": self.isa,
            "settings": self.settings,
            "calibration": self.calibration,
            "sensitivity": self.sensitivity,
            "gates": {key: gate.to_dict() for key, gate in self.gates.items()},
        }
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "quantisation") -> Quantisation:
        """The record a JSON object holds.

        Raises:
            InputError: a field missing or of the wrong kind; the message names ``source``.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"{source} must be a JSON object, got {type(data).__name__}")
        if "flavour" not in data:
            raise InputError(f"{source} lacks its flavour")
        try:
            return cls._from_dict(data, source)
        except InputTypeError as exc:
            raise InputError(str(exc)) from None

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any], source: str) -> Quantisation:
        isa = data.get("isa")
        gates = data.get("gates") or {}
        return cls(
            flavour=check_str("flavour", data["flavour"], source=source),
            scheme=check_str("scheme", data.get("scheme", "qdq"), source=source),
            isa=None if isa is None else check_str("isa", isa, source=source),
            settings=_check_object("settings", data.get("settings") or {}, source),
            calibration=_optional_object("calibration", data.get("calibration"), source),
            sensitivity=_optional_object("sensitivity", data.get("sensitivity"), source),
            gates={
                check_str("gate key", key, source=source): GateResult.from_dict(
                    gate, source=f"{source}: gate {key!r}"
                )
                for key, gate in _check_object("gates", gates, source).items()
            },
        )

    @classmethod
    def from_legacy_props(
        cls, values: Mapping[str, Any], *, source: str = "the graph"
    ) -> Quantisation | None:
        """The record of a graph exported before this one existed, from its separate
        ``int8_target``, ``int8_isa``, ``int8_settings``, ``calibration_sha256``,
        ``calibration``, ``int8_gate``, ``int8_gate_openvino`` and ``int8_sensitivity``
        values (decoded); None when the graph has no ``int8_target``.

        Raises:
            InputError: a gate that is not one.
        """
        flavour = values.get("int8_target")
        if flavour is None:
            return None
        calibration = values.get("calibration")
        sha256 = values.get("calibration_sha256")
        if sha256 is not None:
            calibration = {**(calibration or {}), "sha256": sha256}
        gates = {}
        for key, name in ((GATE_REFERENCE, "int8_gate"), (GATE_OPENVINO, "int8_gate_openvino")):
            if values.get(name) is not None:
                gates[key] = GateResult.from_dict(
                    values[name], source=f"{source}: metadata {name!r}"
                )
        return cls(
            flavour=flavour,
            isa=values.get("int8_isa"),
            settings=values.get("int8_settings") or {},
            calibration=calibration,
            sensitivity=values.get("int8_sensitivity"),
            gates=gates,
        )


def _optional_object(name: str, value: Any, source: str) -> dict[str, Any] | None:
    return None if value is None else _check_object(name, value, source)


# Quantisation-aware training (QAT): what a QAT checkpoint records, and the one formula that
# turns its activation ranges into Q/DQ scales, shared by the fake quantisation that trains
# against them (hardnet_export.train.qat) and the export that writes them into the graph
# (hardnet_export.export.int8), so the graph computes what training saw.

#: The flavours a QAT run may fake-quantise for (``both`` alternates them step by step).
QAT_TARGETS = ("cpu", "tensorrt", "both")
#: The number of 3x3 convs plus the final 8x8 one (``conv0`` ... ``conv6``).
QAT_CONVS = 7
#: The activation points QAT observes: each conv's input (after the Relu) and each conv's
#: output (before it). ONNX Runtime's quantiser puts Q/DQ at both in the ``tensorrt``
#: flavour; the ``cpu`` flavour folds each Relu into its conv's uint8 output, quantised with
#: the next conv's input range, so of the outputs it quantises only the last conv's.
QAT_POINTS = (
    *(f"conv{i}.input" for i in range(QAT_CONVS)),
    *(f"conv{i}.output" for i in range(QAT_CONVS)),
)


#: The first conv's input range under exact input: the grey levels less
#: :data:`EXACT_INPUT_OFFSET`, which the ``cpu`` flavour's uint8 holds at scale 1 and zero point
#: 128 (:func:`activation_qparams`), so every grey level is its own quantisation level.
EXACT_INPUT_OFFSET = 128.0
EXACT_INPUT_RANGE = (-EXACT_INPUT_OFFSET, 255.0 - EXACT_INPUT_OFFSET)


def activation_qparams(low: float, high: float, flavour: str) -> tuple[float, int]:
    """The (scale, zero point) of a per-tensor activation with range ``[low, high]`` in
    ``flavour``, computed exactly as ONNX Runtime's quantiser computes them from a
    calibration range (``compute_scale_zp``): the range widened to include 0; ``cpu``:
    uint8 asymmetric over 255 steps; ``tensorrt``: int8 symmetric, ``max(|low|, |high|)``
    over 127 steps, zero point 0. The scale is computed in float64 and stored as float32.

    Raises:
        InputError: an unknown flavour, or a bound that is not finite.
    """
    import numpy as np

    if flavour not in ("cpu", "tensorrt"):
        raise InputError(f"flavour must be cpu or tensorrt, got {flavour!r}")
    lo = np.float32(check_float("low", low))
    hi = np.float32(check_float("high", high))
    lo, hi = min(lo, np.float32(0)), max(hi, np.float32(0))
    if flavour == "tensorrt":
        absmax = max(abs(lo), abs(hi))
        lo, hi, qmin, qmax = -absmax, absmax, -127, 127
    else:
        qmin, qmax = 0, 255
    scale = (np.float64(hi) - np.float64(lo)) / np.float64(qmax - qmin)
    if scale < np.finfo(np.float32).tiny:
        return 1.0, 0
    zero = 0 if flavour == "tensorrt" else int(np.round(qmin - np.float64(lo) / scale))
    return float(np.float32(scale)), zero


def weight_qmax(flavour: str, reduce_range: bool) -> int:
    """The largest int8 weight magnitude: 127, or 64 for the ``cpu`` flavour's 7-bit weights
    (``reduce_range``, ONNX Runtime's reduced symmetric int8 range)."""
    return 64 if reduce_range and flavour == "cpu" else 127


@dataclass(frozen=True, kw_only=True)
class QatRecord:
    """What a QAT checkpoint says about its fake quantisation (its ``meta["qat"]``).

    Attributes:
        targets: the flavours it was fake-quantised for (``cpu``, ``tensorrt``).
        ranges: each point of :data:`QAT_POINTS` -> its activation range ``[low, high]``,
            the range the graph's Q/DQ scales come from (:func:`activation_qparams`).
        reduce_range: the ``cpu`` flavour trained with 7-bit weights.
        clip: the share of values each observed range left out at each end.
        inner_clip: that share at every point after the first conv's input (the standardised
            patch); equal to ``clip`` in records that do not say.
        observe_steps: steps whose batches set the ranges (an EMA), after which they froze.
        steps: QAT steps run.
        init: the weights QAT started from (as given to ``--init``).
        exact_input: the first conv reads the grey levels themselves, exactly, and the
            per-patch standardisation is applied to its output (``cpu`` flavour only; see
            :mod:`hardnet_export.export.exact_input`); its input range is then
            :data:`EXACT_INPUT_RANGE`.
    """

    targets: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]
    reduce_range: bool = False
    clip: float = 1e-5
    inner_clip: float | None = None
    observe_steps: int = 0
    steps: int = 0
    init: str | None = None
    exact_input: bool = False

    def scales(self, flavour: str) -> dict[str, tuple[float, int]]:
        """Every point's (scale, zero point) in ``flavour``."""
        return {p: activation_qparams(lo, hi, flavour) for p, (lo, hi) in self.ranges.items()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record, with the scales of each target for readers."""
        return {
            "targets": list(self.targets),
            "ranges": {p: [float(lo), float(hi)] for p, (lo, hi) in self.ranges.items()},
            "reduce_range": self.reduce_range,
            "clip": self.clip,
            "inner_clip": self.clip if self.inner_clip is None else self.inner_clip,
            "observe_steps": self.observe_steps,
            "steps": self.steps,
            "init": self.init,
            "exact_input": self.exact_input,
            "scales": {t: {p: list(s) for p, s in self.scales(t).items()} for t in self.targets},
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "the QAT record") -> QatRecord:
        """The record a JSON object holds (its ``scales`` are recomputed, not read).

        Raises:
            InputError: a field missing or of the wrong kind; the message names ``source``.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"{source} must be a JSON object, got {type(data).__name__}")
        try:
            targets = data.get("targets")
            if not isinstance(targets, list) or not targets:
                raise InputError(f"{source}: targets must be a non-empty list of flavours")
            for target in targets:
                check_str("target", target, choices=("cpu", "tensorrt"), source=source)
            ranges = _check_object("ranges", data.get("ranges"), source)
            if set(ranges) != set(QAT_POINTS):
                raise InputError(
                    f"{source}: ranges must name exactly {', '.join(QAT_POINTS)}, got "
                    f"{', '.join(map(str, ranges)) or 'none'}"
                )
            parsed = {}
            for point in QAT_POINTS:
                pair = ranges[point]
                if not isinstance(pair, list) or len(pair) != 2:
                    raise InputError(f"{source}: range of {point} must be [low, high]")
                low = check_float(f"{point} low", pair[0], source=source)
                high = check_float(f"{point} high", pair[1], low=low, source=source)
                parsed[point] = (low, high)
            init = data.get("init")
            exact_input = check_bool("exact_input", data.get("exact_input", False), source=source)
            if exact_input and "tensorrt" in targets:
                raise InputError(
                    f"{source}: exact_input is a cpu-flavour form (TensorRT's symmetric int8 "
                    "holds no grey level range at scale 1), but targets name tensorrt"
                )
            if exact_input and parsed[QAT_POINTS[0]] != EXACT_INPUT_RANGE:
                raise InputError(
                    f"{source}: with exact_input, {QAT_POINTS[0]}'s range must be "
                    f"{list(EXACT_INPUT_RANGE)}, got {list(parsed[QAT_POINTS[0]])}"
                )
            return cls(
                targets=tuple(targets),
                ranges=parsed,
                reduce_range=check_bool(
                    "reduce_range", data.get("reduce_range", False), source=source
                ),  # fmt: skip
                clip=check_float(
                    "clip", data.get("clip", 1e-5), low=0.0, high=0.5, source=source
                ),  # fmt: skip
                inner_clip=check_float(
                    "inner_clip",
                    data.get("inner_clip", data.get("clip", 1e-5)),
                    low=0.0,
                    high=0.5,
                    source=source,
                ),  # fmt: skip
                observe_steps=check_int(
                    "observe_steps", data.get("observe_steps", 0), low=0, source=source
                ),  # fmt: skip
                steps=check_int("steps", data.get("steps", 0), low=0, source=source),
                init=None if init is None else check_str("init", init, source=source),
                exact_input=exact_input,
            )
        except InputTypeError as exc:
            raise InputError(str(exc)) from None
