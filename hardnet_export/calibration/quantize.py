"""INT8: explicit Q/DQ graphs from ONNX Runtime's static quantiser, named by their target.

``tensorrt``: int8 activations and weights, symmetric (zero points 0), per-channel weights,
float biases (TensorRT's parser rejects int32 bias dequantisation), Q/DQ around Conv only.
``cpu``: uint8 asymmetric activations with each Relu folded into its conv's output range,
ONNX Runtime's fast CPU path (about 1.7x the ``tensorrt`` flavour on x86), int32 biases.
Both start from the FP32 graph (uint8 input, standardisation inside, which stays float) and
both pass the accuracy gate before they are written. ``quant_pre_process`` is skipped: it
crashes on torch's dynamo exporter output.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export.calibration.dataset import DEFAULT_SIZE, CalibrationSet
from hardnet_export.export import metadata as meta_keys

if TYPE_CHECKING:
    import onnx

    from hardnet_export.data.types import MatchedPairs

TARGETS = ("tensorrt", "cpu")
METHODS = ("minmax", "entropy", "percentile")
CALIBRATION_BATCH = 64


@dataclass(frozen=True)
class Int8Options:
    """How to calibrate, quantise and gate an INT8 graph.

    Args:
        target: ``tensorrt`` (symmetric int8, builds on TensorRT) or ``cpu`` (uint8
            asymmetric activations, fastest on ONNX Runtime CPU).
        method: activation range calibration: ``minmax``, ``entropy`` or ``percentile``.
        calibration: ``"builtin"``, a path (``.npy``, PhotoTour, HPatches) or a ready set.
        calibration_size: patches drawn from the source.
        seed: seed of that draw.
        save_calibration: write the calibration set here (``.npy``) for a reproducible build.
        max_fpr95_loss: the gate's limit, in FPR95 percentage points over FP32.
        max_nn_accuracy_loss: the gate's limit on lost NN accuracy, in percentage points.
        force: write the graph even when the gate fails (the failure stays in the metadata).
        gate_pairs: held-out pairs the gate evaluates; default ``gate_size`` pairs from the
            held-out built-in photos.
        gate_size: how many built-in held-out pairs the gate draws when none are given.
        progress: show progress bars.
    """

    target: str = "tensorrt"
    method: str = "minmax"
    calibration: str | Path | CalibrationSet = "builtin"
    calibration_size: int = DEFAULT_SIZE
    seed: int = 0
    save_calibration: Path | None = None
    max_fpr95_loss: float = 1.0
    max_nn_accuracy_loss: float = 2.0
    force: bool = False
    gate_pairs: MatchedPairs | None = None
    gate_size: int = 2000
    progress: bool = False

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(
                f"int8 target must be one of {', '.join(TARGETS)}, got {self.target!r}"
            )
        if self.method not in METHODS:
            raise ValueError(
                f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.gate_size < 2:
            raise ValueError(f"gate_size must be >= 2 pairs, got {self.gate_size}")
        for name in ("max_fpr95_loss", "max_nn_accuracy_loss"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


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


def quantize_qdq(
    fp32: onnx.ModelProto, calibration: CalibrationSet, *, target: str, method: str
) -> onnx.ModelProto:
    """Calibrate ``fp32`` on ``calibration`` and return its Q/DQ graph for ``target``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if target not in TARGETS:
        raise ValueError(f"int8 target must be one of {', '.join(TARGETS)}, got {target!r}")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    if target == "tensorrt":
        activation_type = QuantType.QInt8
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
        op_types = ["Conv"]
    else:
        activation_type = QuantType.QUInt8
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        # Quantising Relu too lets the quantiser fold each Relu into the uint8 range of the
        # conv output (zero point 0): no DQ -> Relu -> Q between convs. Measured on 2 cores
        # (AVX-512 VNNI), batch 512: 1.5x the Conv-only graph, and a closer match to FP32
        # (the Relu outputs get the whole uint8 range instead of half of it).
        op_types = ["Conv", "Relu"]

    class PatchReader(CalibrationDataReader):
        """Feeds the calibration set to the calibrator as uint8 (n, 1, 32, 32) batches."""

        def __init__(self) -> None:
            self.batches = calibration.batches(CALIBRATION_BATCH)
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.position, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self.position: Iterator[np.ndarray] = iter(self.batches)

    input_name = fp32.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="hardnet-int8-") as tmp:
        source, target_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(fp32, source)
        with _quiet_quantiser():
            ranges = (
                _entropy_ranges(source, PatchReader(), Path(tmp)) if method == "entropy" else None
            )
            quantize_static(
                source,
                target_path,
                PatchReader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=True,
                activation_type=activation_type,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                extra_options=extra,
                **({"calibration_cache_path": ranges} if ranges is not None else {}),
            )
        return onnx.load(target_path)


def _entropy_ranges(model: Path, reader: Any, tmp: Path) -> Path | None:
    """Entropy (KL) activation ranges with 2048 histogram bins, as a calibration cache file.

    quantize_static builds its entropy calibrator with 128 bins for 128 quantised bins, which
    leaves the KL search a single candidate, the full range: "entropy" would silently be
    min/max. Where ONNX Runtime can take precomputed ranges (``calibration_cache_path``,
    ``save_tensors_data``), compute them here with TensorRT's 2048 bins; otherwise None.
    """
    import inspect

    from onnxruntime.quantization import calibrate, quantize_static

    if not hasattr(calibrate, "save_tensors_data") or (
        "calibration_cache_path" not in inspect.signature(quantize_static).parameters
    ):
        return None
    calibrator = calibrate.create_calibrator(
        model,
        ["Conv"],
        augmented_model_path=str(tmp / "entropy-augmented.onnx"),
        calibrate_method=calibrate.CalibrationMethod.Entropy,
        extra_options={"num_bins": 2048, "num_quantized_bins": 128},
    )
    calibrator.collect_data(reader)
    cache = tmp / "entropy-ranges.json"
    calibrate.save_tensors_data(calibrator.compute_data(), cache)
    return cache


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


def quantize_int8(
    fp32: onnx.ModelProto, options: Int8Options
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Calibrate, quantise and gate: the INT8 graph and the metadata to store with it.

    Raises:
        Int8GateError: the INT8 graph loses more than ``options.max_fpr95_loss`` FPR95
            percentage points on held-out pairs and ``options.force`` is False.
    """
    from hardnet_export.calibration.gate import evaluate_gate
    from hardnet_export.export.onnx import ort_describe

    calibration = resolve_calibration(options)
    int8 = quantize_qdq(fp32, calibration, target=options.target, method=options.method)
    pairs = options.gate_pairs
    if pairs is None:
        from hardnet_export.data.builtin import validation_pairs

        pairs = validation_pairs(options.gate_size)
    gate = evaluate_gate(
        ort_describe(fp32),
        ort_describe(int8),
        pairs,
        max_fpr95_loss=options.max_fpr95_loss,
        max_nn_accuracy_loss=options.max_nn_accuracy_loss,
        force=options.force,
        label=f"INT8 ({options.target}, {options.method} calibration on {calibration.source})",
    )
    return int8, {
        meta_keys.INT8_TARGET: options.target,
        meta_keys.CALIBRATION_SHA256: calibration.sha256,
        meta_keys.CALIBRATION: {**calibration.describe(), "method": options.method},
        meta_keys.INT8_GATE: gate,
    }
