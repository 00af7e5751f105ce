from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from hardnet_export.artifacts.metadata import SEMANTICS_EXACT, SEMANTICS_HOST
from hardnet_export.calibration.dataset import CalibrationSet
from hardnet_export.data.types import MatchedPairs
from hardnet_export.export.int8 import Quantizer
from hardnet_export.export.sensitivity import (
    LayerSensitivity,
    SensitivityReport,
    conv_multiply_adds,
    layer_sensitivity,
)
from hardnet_export.runtime.onnxruntime_backend import ort_describe


def ruin_layer(model: onnx.ModelProto, layer: int, factor: float = 1000.0) -> onnx.ModelProto:
    """The same function, but conv ``layer`` cannot be quantised: channel 0 of its input is
    ``factor`` times larger (the previous conv's filter and bias scaled up) and its weights
    from that channel ``factor`` times smaller. ReLU(a x) = a ReLU(x) for a > 0, so FP32 is
    unchanged, while one per-tensor int8 scale for that input now crushes every other
    channel to zero."""
    ruined = onnx.ModelProto()
    ruined.CopyFrom(model)
    inits = {init.name: init for init in ruined.graph.initializer}
    convs = [n for n in ruined.graph.node if n.op_type == "Conv"]
    before, after = convs[layer - 1], convs[layer]

    def update(name: str, change: object) -> None:
        array = numpy_helper.to_array(inits[name]).copy()
        change(array)  # type: ignore[operator]
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    update(before.input[1], lambda w: w.__setitem__(0, w[0] * factor))
    update(before.input[2], lambda b: b.__setitem__(0, b[0] * factor))
    update(after.input[1], lambda w: w.__setitem__((slice(None), 0), w[:, 0] / factor))
    return ruined


@pytest.fixture(scope="module")
def small_pairs(gate_pairs: MatchedPairs) -> MatchedPairs:
    return MatchedPairs(gate_pairs.anchors[:150], gate_pairs.positives[:150], name="held-out")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "semantics"), [("tensorrt", SEMANTICS_EXACT), ("cpu", SEMANTICS_HOST)]
)
def test_ruined_layer_is_ranked_first(
    fp32_graph: onnx.ModelProto,
    calibration: CalibrationSet,
    small_pairs: MatchedPairs,
    target: str,
    semantics: str,
) -> None:
    ruined = ruin_layer(fp32_graph, 4)
    patches = small_pairs.anchors[:32, None]
    np.testing.assert_allclose(
        ort_describe(ruined)(patches), ort_describe(fp32_graph)(patches), atol=1e-4
    )
    with Quantizer(ruined, calibration, target=target, method="minmax") as quantizer:
        report = layer_sensitivity(quantizer, small_pairs, semantics=semantics)
    # The ruined tensor is conv3's output, which conv4 reads (Q/DQ on its input). The CPU
    # flavour quantises conv3's Relu output with conv3 too, so both are ruined, in an order
    # that is a tie (min cosine -0.3895 vs -0.3893 on an AMX machine, flipped on AVX2); the
    # TensorRT flavour puts no Q/DQ on a Conv's output (it would split the Conv+ReLU
    # fusion), so only conv4 is.
    ruined_layers = ["conv4"] if target == "tensorrt" else ["conv3", "conv4"]
    top = len(ruined_layers)
    assert sorted(report.ranking()[:top]) == ruined_layers, report.format()
    assert report.layers[top - 1].min_cosine < 0.5 < report.layers[top].min_cosine
    assert min(layer.nn_accuracy_loss_pp for layer in report.layers[:top]) > 30
    assert sorted(report.ranking()) == [f"conv{i}" for i in range(7)]
    assert report.semantics == semantics and report.pairs == 150
    assert abs(sum(layer.share for layer in report.layers) - 1.0) < 1e-9
    assert report.format().splitlines()[3].split()[0] in ruined_layers


def test_multiply_adds_of_hardnet(fp32_graph: onnx.ModelProto) -> None:
    macs = conv_multiply_adds(fp32_graph)
    assert list(macs) == [f"conv{i}" for i in range(7)]
    assert macs["conv0"] == 32 * 9 * 32 * 32 and macs["conv6"] == 128 * 128 * 64
    assert sum(macs.values()) == 39_092_224  # the paper's "about 39.1 M" per patch


def _report(shares: dict[str, float], order: list[str]) -> SensitivityReport:
    rows = tuple(
        LayerSensitivity(name, int(1e6 * shares[name]), shares[name], 0.9 + i / 100, 0.99, 95, 1, 0)
        for i, name in enumerate(order)
    )
    return SensitivityReport("tensorrt", "minmax", SEMANTICS_EXACT, 10, "x", 96, 0, rows)


def test_within_budget_takes_the_most_sensitive_that_fit() -> None:
    shares = {"conv0": 0.01, "conv1": 0.24, "conv2": 0.12, "conv3": 0.24, "conv4": 0.39}
    report = _report(shares, ["conv3", "conv4", "conv0", "conv2", "conv1"])
    assert report.within_budget(0.0) == ()
    assert report.within_budget(0.25) == ("conv0", "conv3")  # conv4 does not fit
    assert report.within_budget(0.40) == ("conv0", "conv2", "conv3")
    assert report.within_budget(1.0) == ("conv0", "conv1", "conv2", "conv3", "conv4")
    with pytest.raises(ValueError, match="0..1"):
        report.within_budget(1.5)


def test_report_round_trip_and_bad_input() -> None:
    report = _report({"conv0": 0.5, "conv1": 0.5}, ["conv1", "conv0"])
    assert SensitivityReport.from_dict(report.to_dict()) == report
    with pytest.raises(ValueError, match="not an INT8 sensitivity report"):
        SensitivityReport.from_dict({"layers": [{"layer": "conv0"}]})


def test_the_report_file_is_written_beside_the_graph(tmp_path: Path) -> None:
    import json

    from hardnet_export.export.sensitivity import report_path, write_report

    report = _report({"conv0": 0.5, "conv1": 0.5}, ["conv1", "conv0"])
    graph = tmp_path / "m.int8-cpu.onnx"
    path = write_report(report, graph)
    assert path == report_path(graph) == tmp_path / "m.int8-cpu.onnx.sensitivity.json"
    assert SensitivityReport.from_dict(json.loads(path.read_text())) == report
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
