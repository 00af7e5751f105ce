"""Quantisation-aware fine-tuning: the fake quantisation is the exported graph's exact Q/DQ
semantics, the export puts every conv in int8 with the trained scales, and the CLI refuses
what it cannot do in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from fixture_files import run_main

from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.quantisation import (
    QAT_POINTS,
    QatRecord,
    activation_qparams,
)
from hardnet_export.errors import InputError
from hardnet_export.export.int8 import Int8Options, Quantizer, quantize_int8
from hardnet_export.export.onnx import default_parity_patches, torch_to_onnx
from hardnet_export.model import load_model, read_checkpoint
from hardnet_export.train.config import TrainConfig
from hardnet_export.train.qat import QatHardNet

MODEL = "hardnet-eighth"  # the smallest shipped model: trained statistics, fast


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    return default_parity_patches(300)[0]


@pytest.fixture(scope="module")
def observed(patches: np.ndarray) -> tuple[torch.nn.Module, QatRecord]:
    """The shipped model with QAT ranges observed on real patches, in both flavours."""
    net = load_model(MODEL)
    qat = QatHardNet(net, ("cpu", "tensorrt")).train()
    x = torch.from_numpy(patches[:, None])
    with torch.no_grad():
        for flavour in ("cpu", "tensorrt"):
            qat.flavour = flavour
            qat(x)
    return net, qat.record(observe_steps=2, steps=0, init=MODEL)


@pytest.fixture(scope="module")
def observed_exact(patches: np.ndarray) -> tuple[torch.nn.Module, QatRecord]:
    """The shipped model with the exact-input form's ranges observed on real patches."""
    net = load_model(MODEL)
    qat = QatHardNet(net, ("cpu",), exact_input=True).train()
    with torch.no_grad():
        qat(torch.from_numpy(patches[:, None]))
    return net, qat.record(observe_steps=1, steps=0, init=MODEL)


def _exact(graph: onnx.ModelProto, patches: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, {"patches": patches[:, None]})[0])


@pytest.mark.parametrize(
    "low, high", [(-5.7, 7.5), (0.0, 12.4), (-3.9, 3.8), (0.5, 2.0), (-1e-3, 250.0)]
)
def test_scales_are_onnxruntimes(low: float, high: float) -> None:
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    lo, hi = np.array(low, np.float32), np.array(high, np.float32)
    zero, scale = compute_scale_zp(lo, hi, np.uint8(0), np.uint8(255))
    assert activation_qparams(low, high, "cpu") == (float(scale), int(zero))
    zero, scale = compute_scale_zp(lo, hi, np.int8(-127), np.int8(127), symmetric=True)
    assert activation_qparams(low, high, "tensorrt") == (float(scale), int(zero))


#: Each Q/DQ form: (flavour, exact input).
FORMS = {"cpu": ("cpu", False), "tensorrt": ("tensorrt", False), "cpu-exact": ("cpu", True)}


@pytest.fixture(scope="module")
def graphs(
    observed: tuple[torch.nn.Module, QatRecord],
    observed_exact: tuple[torch.nn.Module, QatRecord],
) -> dict[str, onnx.ModelProto]:
    """Each form's Q/DQ graph of the observed model, built from its QAT ranges."""
    fp32 = torch_to_onnx(observed[0])
    found = {}
    for form, (flavour, exact_input) in FORMS.items():
        isa = "avx512-vnni" if flavour == "cpu" else None
        record = (observed_exact if exact_input else observed)[1]
        with Quantizer(
            fp32, None, target=flavour, method="percentile", isa=isa, qat=record
        ) as quantizer:
            found[form] = quantizer.build()
    return found


@pytest.mark.parametrize("form", list(FORMS))
def test_fake_quantisation_is_the_graphs_exact_semantics(
    form: str,
    observed: tuple[torch.nn.Module, QatRecord],
    observed_exact: tuple[torch.nn.Module, QatRecord],
    graphs: dict[str, onnx.ModelProto],
    patches: np.ndarray,
) -> None:
    flavour, exact_input = FORMS[form]
    net, record = observed_exact if exact_input else observed
    qat = QatHardNet(net, (flavour,), exact_input=exact_input).eval()
    qat.ranges.copy_(torch.tensor([record.ranges[p] for p in QAT_POINTS]))
    with torch.no_grad():
        fake = qat(torch.from_numpy(patches[:, None])).numpy()
    exact = _exact(graphs[form], patches)
    cosine = (fake * exact).sum(axis=1)
    # The weights, biases and scales are bit-identical; float convs summed in another order
    # flip the odd rounding of an activation by one step, which the next layers carry on.
    identical = (np.abs(fake - exact).max(axis=1) < 1e-5).mean()
    assert identical > 0.5, f"{form}: only {identical:.0%} of descriptors identical"
    assert cosine.min() > 0.999 and cosine.mean() > 0.99999, (cosine.min(), cosine.mean())


@pytest.mark.parametrize("form", list(FORMS))
def test_every_conv_is_int8_with_the_trained_scales(
    form: str,
    observed: tuple[torch.nn.Module, QatRecord],
    observed_exact: tuple[torch.nn.Module, QatRecord],
    graphs: dict[str, onnx.ModelProto],
) -> None:
    from onnx import numpy_helper

    flavour, exact_input = FORMS[form]
    _, record = observed_exact if exact_input else observed
    graph = graphs[form]
    produced = {out: node for node in graph.graph.node for out in node.output}
    inits = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    assert len(convs) == 7
    for conv in convs:
        data, weight = (produced[name] for name in conv.input[:2])
        assert data.op_type == weight.op_type == "DequantizeLinear", conv.name
        quantize = produced[data.input[0]]
        assert quantize.op_type == "QuantizeLinear", conv.name
        assert inits[weight.input[0]].dtype == np.int8, conv.name
    # The input's scale is the trained one, to the bit.
    first = produced[produced[convs[0].input[0]].input[0]]
    scale, zero = activation_qparams(*record.ranges["conv0.input"], flavour)
    assert inits[first.input[1]].dtype == np.float32
    assert float(inits[first.input[1]]) == scale and int(inits[first.input[2]]) == zero
    if exact_input:
        # Every grey level its own uint8 level; conv0's accumulation is not rounded.
        assert (scale, zero) == (1.0, 128)
        assert produced[convs[0].output[0]].op_type == "Conv"
        readers = [n.op_type for n in graph.graph.node if convs[0].output[0] in n.input]
        assert readers == ["Sub"], readers


def test_exact_input_graph_is_the_same_function_in_float(patches: np.ndarray) -> None:
    from hardnet_export.export.exact_input import exact_input_graph

    fp32 = torch_to_onnx(load_model(MODEL))
    # Real patches, constant ones (no standard deviation: the form's two terms would not
    # cancel) and one grey level off a constant.
    flat = np.stack([np.full((32, 32), v, np.uint8) for v in (0, 77, 255)])
    almost = flat[1].copy()
    almost[5, 9] += 1
    batch = np.concatenate([patches, flat, almost[None]])
    standard, moved = _exact(fp32, batch), _exact(exact_input_graph(fp32), batch)
    cosine = (standard * moved).sum(axis=1)
    assert cosine.min() > 0.99999, cosine.min()
    assert np.abs(standard[300:303] - moved[300:303]).max() < 1e-5


def test_exact_input_is_the_cpu_flavours_alone(
    observed: tuple[torch.nn.Module, QatRecord],
    observed_exact: tuple[torch.nn.Module, QatRecord],
) -> None:
    net, record = observed_exact
    with pytest.raises(InputError, match="cpu alone"):
        QatHardNet(load_model(MODEL), ("cpu", "tensorrt"), exact_input=True)
    with pytest.raises(InputError, match="qat_target"):
        TrainConfig(qat=True, init=MODEL, qat_exact_input=True)
    with pytest.raises(InputError, match="cpu target"):
        Quantizer(torch_to_onnx(net), None, target="tensorrt", method="minmax", qat=record)
    data = record.to_dict()
    assert QatRecord.from_dict(data).exact_input
    with pytest.raises(InputError, match="x.pth: exact_input"):
        QatRecord.from_dict({**data, "targets": ["cpu", "tensorrt"]}, source="x.pth")
    with pytest.raises(InputError, match="range must be"):
        QatRecord.from_dict({**data, "ranges": observed[1].to_dict()["ranges"]}, source="x.pth")
    # Records from before the form are the standard one.
    old = {k: v for k, v in observed[1].to_dict().items() if k != "exact_input"}
    assert not QatRecord.from_dict(old).exact_input


def test_export_of_qat_ranges_is_gated_and_recorded(
    observed: tuple[torch.nn.Module, QatRecord],
) -> None:
    net, record = observed
    options = Int8Options(qat=record, force=True, gate_size=100)
    _, extra = quantize_int8(torch_to_onnx(net), "tensorrt", options)
    quantisation = extra["quantisation"]
    assert quantisation.settings["float_layers"] == {}
    assert quantisation.settings["qat"]["ranges"]["conv0.input"] == list(
        record.ranges["conv0.input"]
    )
    assert quantisation.calibration["method"] == "qat"
    assert quantisation.gate is not None and quantisation.gate.pairs == 100


def test_qat_needs_init_and_fp32() -> None:
    with pytest.raises(InputError, match="init"):
        TrainConfig(qat=True)
    with pytest.raises(InputError, match="fp32"):
        TrainConfig(qat=True, init=MODEL, precision="bf16")
    with pytest.raises(InputError, match="qat"):
        TrainConfig(qat_target="cpu")
    with pytest.raises(InputError, match="qat_target"):
        TrainConfig(qat=True, init=MODEL, qat_target="gpu")
    with pytest.raises(InputError, match="qat_clip"):
        TrainConfig(qat=True, init=MODEL, qat_clip=0.5)


def test_cli_refuses_qat_without_init_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["train", "--qat", "--out", str(tmp_path / "run")], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--init" in lines[0] and "--qat" in lines[0], err
    assert not (tmp_path / "run").exists()


def test_record_refuses_a_malformed_one() -> None:
    good = QatRecord(targets=("cpu",), ranges=dict.fromkeys(QAT_POINTS, (0.0, 1.0))).to_dict()
    assert QatRecord.from_dict(good).ranges == dict.fromkeys(QAT_POINTS, (0.0, 1.0))
    with pytest.raises(InputError, match="ranges must name"):
        QatRecord.from_dict({**good, "ranges": {"conv0.input": [0, 1]}}, source="x.pth")
    with pytest.raises(InputError, match="x.pth"):
        QatRecord.from_dict({**good, "targets": ["gpu"]}, source="x.pth")


def test_the_inner_clip_leaves_the_inner_ranges_wider(patches: np.ndarray) -> None:
    x = torch.from_numpy(patches[:, None])

    def ranges(**clips: float | None) -> torch.Tensor:
        qat = QatHardNet(load_model(MODEL), ("cpu",), **clips).train()
        with torch.no_grad():
            qat(x)
        return qat.ranges

    tight = ranges(clip=1e-2)
    mixed = ranges(clip=1e-2, inner_clip=0.0)
    # The standardised patch keeps the tight range; every point inside reaches its maximum.
    assert torch.equal(mixed[0], tight[0])
    inner = [i for i, p in enumerate(QAT_POINTS) if p != "conv0.input" and mixed[i, 1] > 0]
    assert inner and all(mixed[i, 1] > tight[i, 1] for i in inner)
    # Records say which share each range left out; older records meant one share for all.
    record = QatRecord(targets=("cpu",), ranges=dict.fromkeys(QAT_POINTS, (0.0, 1.0)), clip=1e-4)
    assert QatRecord.from_dict(record.to_dict()).inner_clip == 1e-4
    old = {k: v for k, v in record.to_dict().items() if k != "inner_clip"}
    assert QatRecord.from_dict(old).inner_clip == 1e-4
    assert QatRecord.from_dict({**old, "inner_clip": 0.0}).inner_clip == 0.0
    with pytest.raises(InputError, match="qat_inner_clip applies to quantisation-aware"):
        TrainConfig(qat_inner_clip=1e-6)


@pytest.mark.slow
def test_tiny_qat_run_exports_and_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hardnet_export import host

    out = tmp_path / "run"
    # The cpu flavour is exported for this host's kernels: 7-bit weights where they saturate.
    reduce_range = host.saturates(host.int8_isa())
    code, _, err = run_main(
        ["train", "--init", MODEL, "--qat", "--steps", "3", "--batch-size", "32",
         "--lr", "0.05", "--dropout", "0", "--qat-observe-steps", "2", "--num-workers", "0",
         "--no-progress", "--device", "cpu", "--out", str(out),
         "--qat-reduce-range" if reduce_range else "--no-qat-reduce-range"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    final = out / "final.pth"
    torch.load(final, weights_only=True)  # loads safely
    record = QatRecord.from_dict(read_checkpoint(final).meta["qat"])
    assert record.targets == ("cpu", "tensorrt") and record.steps == 3
    assert record.reduce_range == reduce_range
    for flavour in ("cpu", "tensorrt"):
        graph = tmp_path / f"model.int8-{flavour}.onnx"
        code, _, err = run_main(
            ["onnx", str(final), "-o", str(graph), "--precision", "int8", "--int8-target",
             flavour, "--gate-pairs", "300", "--no-parity", "--min-cosine", "0.9"],
            capsys,
        )  # fmt: skip
        assert code == 0, err
        quantisation = read_metadata(graph).quantisation
        assert quantisation is not None and quantisation.gate is not None
        assert quantisation.gate.passed
        assert quantisation.settings["float_layers"] == {}
        assert quantisation.settings["qat"]["steps"] == 3


def test_8bit_qat_weights_are_refused_for_saturating_kernels(
    observed: tuple[torch.nn.Module, QatRecord],
) -> None:
    # AVX2 without VNNI sums u8 x s8 pairs in 16 bits: the export makes such graphs with
    # 7-bit weights, which a QAT run with 8-bit weights did not train.
    net, record = observed
    with (
        Quantizer(
            torch_to_onnx(net), None, target="cpu", method="minmax", isa="avx2", qat=record
        ) as quantizer,
        pytest.raises(InputError, match="qat_reduce_range=True"),
    ):
        quantizer.build()
