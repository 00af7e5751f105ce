"""Per-layer INT8 sensitivity: each conv quantised alone, the rest float, against FP32.

A layer whose int8 version alone moves the worst patch's descriptor far from FP32 is a
candidate to keep float (mixed precision). The report ranks layers most sensitive first
(lowest worst-patch cosine over textured patches, as the gate takes it, then lowest mean
cosine) and gives each layer's share of the network's multiply-adds, so
:meth:`SensitivityReport.within_budget` can keep the most sensitive layers float for a
bounded cost. Figures are computed in the semantics the graph
is gated in (exact Q/DQ for the ``tensorrt`` flavour, this host's kernels for ``cpu``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export.artifacts.describe import describe_in_batches
from hardnet_export.calibration.gate import worst_cosine
from hardnet_export.errors import InputError
from hardnet_export.evaluation.metrics import compare_descriptors
from hardnet_export.evaluation.pairs import pair_metrics

if TYPE_CHECKING:
    import onnx

    from hardnet_export.data.types import MatchedPairs
    from hardnet_export.export.int8 import Quantizer

BATCH = 256


@dataclass(frozen=True)
class LayerSensitivity:
    """One conv quantised alone: its cost and its effect on held-out pairs."""

    layer: str
    multiply_adds: int
    share: float
    min_cosine: float
    mean_cosine: float
    nn_accuracy: float
    nn_accuracy_loss_pp: float
    fpr95: float


@dataclass(frozen=True)
class SensitivityReport:
    """Every conv's :class:`LayerSensitivity`, most sensitive first."""

    target: str
    method: str
    semantics: str
    pairs: int
    source: str
    nn_accuracy_reference: float
    fpr95_reference: float
    layers: tuple[LayerSensitivity, ...]

    def ranking(self) -> list[str]:
        """Layer names, most sensitive first."""
        return [layer.layer for layer in self.layers]

    def within_budget(self, budget: float) -> tuple[str, ...]:
        """The most sensitive layers whose multiply-adds together stay within ``budget``
        (a share of the network's, 0..1), taken in ranking order, skipping any that would
        overflow it; returned in graph order."""
        if not 0.0 <= budget <= 1.0:
            raise InputError(f"float budget must lie in 0..1, got {budget}")
        chosen, used = [], 0.0
        for layer in self.layers:
            if used + layer.share <= budget + 1e-9:
                chosen.append(layer.layer)
                used += layer.share
        order = {name: i for i, name in enumerate(sorted(self.ranking(), key=_layer_index))}
        return tuple(sorted(chosen, key=order.__getitem__))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [asdict(layer) for layer in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityReport:
        """Inverse of :meth:`to_dict` (as stored in an INT8 graph's metadata)."""
        try:
            layers = tuple(LayerSensitivity(**row) for row in data["layers"])
            return cls(**{**data, "layers": layers})
        except (KeyError, TypeError) as exc:
            raise InputError(f"not an INT8 sensitivity report ({exc})") from exc

    def format(self) -> str:
        """A fixed-width table for printing."""
        lines = [
            f"INT8 sensitivity ({self.target}, {self.method} calibration, {self.semantics}) on "
            f"{self.pairs} held-out pairs from {self.source}; FP32 NN accuracy "
            f"{self.nn_accuracy_reference:.2f}%",
            "each layer quantised alone, the rest float; most sensitive first",
            f"{'layer':<7} {'MAC share':>9} {'min cos':>8} {'mean cos':>9} {'NN acc %':>9} "
            f"{'NN loss':>8}",
        ]
        for row in self.layers:
            lines.append(
                f"{row.layer:<7} {100 * row.share:>8.1f}% {row.min_cosine:>8.4f} "
                f"{row.mean_cosine:>9.5f} {row.nn_accuracy:>9.2f} {row.nn_accuracy_loss_pp:>+8.2f}"
            )
        return "\n".join(lines)


def _layer_index(name: str) -> int:
    return int(name[len("conv") :]) if name[len("conv") :].isdigit() else 0


def conv_multiply_adds(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-adds per patch of each conv of a HardNet graph (32x32 input)."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in [*inferred.graph.value_info, *inferred.graph.output]
    }
    weights = {init.name: numpy_helper.to_array(init).shape for init in model.graph.initializer}
    counts = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        c_out, c_in, kh, kw = weights[node.input[1]]
        out_shape = shapes.get(node.output[0], [])
        if len(out_shape) != 4 or not all(out_shape[2:]):
            raise InputError(f"cannot infer the output size of {node.name}")
        counts[node.name] = int(c_out * c_in * kh * kw * out_shape[2] * out_shape[3])
    return counts


def layer_sensitivity(
    quantizer: Quantizer, pairs: MatchedPairs, *, semantics: str, progress: bool = False
) -> SensitivityReport:
    """Quantise each conv of ``quantizer``'s graph alone and compare it with FP32 on ``pairs``.

    Shape:
        - pairs.anchors, pairs.positives: (n, 32, 32) uint8.
    """
    from hardnet_export._progress import track
    from hardnet_export.runtime.onnxruntime_backend import ort_describe

    patches = np.concatenate([pairs.anchors, pairs.positives])[:, None]
    n = len(pairs)
    reference = describe_in_batches(ort_describe(quantizer.fp32), patches, BATCH)
    reference_metrics = pair_metrics(reference[:n], reference[n:])
    macs = conv_multiply_adds(quantizer.fp32)
    total = sum(macs.values())
    rows = []
    for layer in track(quantizer.layers, len(quantizer.layers), "sensitivity", "layer", progress):
        others = [name for name in quantizer.layers if name != layer]
        graph = quantizer.build(keep_float=others)
        candidate = describe_in_batches(ort_describe(graph, semantics=semantics), patches, BATCH)
        agreement = compare_descriptors(reference, candidate)
        metrics = pair_metrics(candidate[:n], candidate[n:])
        rows.append(
            LayerSensitivity(
                layer=layer,
                multiply_adds=macs[layer],
                share=macs[layer] / total,
                min_cosine=worst_cosine(reference, candidate, patches),
                mean_cosine=agreement["mean_cosine"],
                nn_accuracy=100 * metrics["nn_accuracy"],
                nn_accuracy_loss_pp=100
                * (reference_metrics["nn_accuracy"] - metrics["nn_accuracy"]),
                fpr95=100 * metrics["fpr95"],
            )
        )
    rows.sort(key=lambda row: (row.min_cosine, row.mean_cosine))
    return SensitivityReport(
        target=quantizer.target,
        method=quantizer.method,
        semantics=semantics,
        pairs=n,
        source=pairs.name,
        nn_accuracy_reference=100 * reference_metrics["nn_accuracy"],
        fpr95_reference=100 * reference_metrics["fpr95"],
        layers=tuple(rows),
    )


def report_path(graph: str | Path) -> Path:
    """Where :func:`write_report` puts the report of ``graph``: ``GRAPH.sensitivity.json``."""
    graph = Path(graph)
    return graph.with_name(graph.name + ".sensitivity.json")


def write_report(report: SensitivityReport, graph: str | Path) -> Path:
    """Write ``report`` beside ``graph`` as JSON, atomically (:func:`report_path`)."""
    from hardnet_export._io import atomic_write_text

    path = report_path(graph)
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
    return path
