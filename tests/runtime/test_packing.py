"""Patch packing (``pack_channels``): the shipped narrow graphs' convs rewritten to run
several patches per row give the graph's own descriptors on ONNX Runtime and OpenVINO, at
every batch size (padded to the pack's multiple), and anything else is refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.models import get_model
from hardnet_export.errors import InputError
from hardnet_export.host import cpu_flags, installed

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hardnet_export.runtime.packing import (  # noqa: E402 (needs onnx)
    PACK_CHANNELS,
    pack_patch_graph,
    packing_candidates,
)

BACKENDS = ["onnxruntime"] + (["openvino"] if installed("openvino") else [])


def textured(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 1, 8, 8))
    smooth = np.kron(coarse, np.ones((1, 1, 4, 4))) + 0.2 * rng.random((n, 1, 32, 32))
    return (smooth / smooth.max() * 255).round().astype(np.uint8)


@pytest.mark.parametrize(
    ("model", "channels", "groups"),
    [
        ("hardnet-eighth", 8, (2, 2)),
        ("hardnet-eighth", 16, (4, 4, 2, 2)),
        ("hardnet-eighth", 32, (8, 8, 4, 4, 2, 2)),
        ("hardnet-quarter", 16, (2, 2)),
        ("hardnet-half", 16, ()),
    ],
)
def test_each_narrow_conv_is_packed_up_to_the_channels(
    model: str, channels: int, groups: tuple[int, ...]
) -> None:
    graph = onnx.load(str(get_model(model).onnx))
    packed = pack_patch_graph(graph, channels)
    assert packed.groups == groups
    # The original is untouched, and the packed graph keeps its metadata and signature.
    before = [n.op_type for n in graph.graph.node]
    assert pack_patch_graph(graph, channels).groups == groups
    assert [n.op_type for n in graph.graph.node] == before
    assert packed.model.metadata_props == graph.metadata_props
    assert packed.model.graph.input == graph.graph.input
    assert packed.model.graph.output == graph.graph.output
    ops = [n.op_type for n in packed.model.graph.node]
    assert ops.count("Conv") == 7
    # One Reshape in per change of the pack, one out after the packed run.
    changes = len({*groups}) if groups else 0
    assert ops.count("Reshape") == before.count("Reshape") + (changes + 1 if groups else 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["hardnet-eighth", "hardnet-quarter"])
def test_packed_graphs_give_the_graphs_own_descriptors(model: str, backend: str) -> None:
    path = get_model(model).onnx
    plain = runtime.load(path, backend=backend, device="cpu")
    packed = runtime.load(path, backend=backend, device="cpu", pack_channels=PACK_CHANNELS)
    assert packed.pack and not getattr(plain, "pack", ())
    patches = textured(261)
    # Batches that are and are not multiples of the pack, the last chunk among them.
    for n in (1, 3, 4, 5, 261):
        want, got = plain.describe(patches[:n]), packed.describe(patches[:n])
        assert got.shape == (n, 128)
        np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.slow
def test_an_int8_graph_packs_only_its_float_prefix(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx

    options = Int8Options(calibration_size=256, gate_size=200)
    graph = export_onnx(
        "hardnet-eighth", tmp_path / "e.int8-cpu.onnx", variant="int8-cpu", options=options,
        parity=False,
    )  # fmt: skip
    packed = pack_patch_graph(onnx.load(str(graph)), PACK_CHANNELS)
    # The float convs before the first quantised one pack (conv0-2 on the CPUs measured so
    # far; the export chooses them per CPU), the quantised convs do not.
    float_layers = read_metadata(graph).quantisation.settings["float_layers"]
    prefix = 0
    while f"conv{prefix}" in float_layers:
        prefix += 1
    assert prefix >= 1 and packed.groups == (4, 4, 2, 2)[:prefix]
    for backend in BACKENDS:
        plain = runtime.load(graph, backend=backend, device="cpu")
        fast = runtime.load(graph, backend=backend, device="cpu", pack_channels=PACK_CHANNELS)
        patches = textured(101, seed=1)
        cosine = (plain.describe(patches) * fast.describe(patches)).sum(1)
        # The float prefix is the same arithmetic; the int8 convs then see the same codes.
        assert cosine.min() > 0.9999, backend


def test_tune_offers_packing_for_narrow_patch_graphs_only() -> None:
    narrow = read_metadata(get_model("hardnet-eighth").onnx)
    wide = read_metadata(get_model("hardnet-half").onnx)
    base = [{"inference_precision": "f32"}]
    assert packing_candidates(narrow, base) == base + [
        {"inference_precision": "f32", "pack_channels": PACK_CHANNELS}
    ]
    assert packing_candidates(wide, base) == base
    from hardnet_export.runtime.openvino_backend import tuning_candidates

    if installed("openvino"):
        options = tuning_candidates(narrow, cpu_flags())
        assert {"inference_precision": "f32", "pack_channels": PACK_CHANNELS} in options


def test_refusals_are_one_line_naming_the_file(image_graph: Path, tmp_path: Path) -> None:
    path = get_model("hardnet-eighth").onnx
    with pytest.raises(InputError, match="pack_channels must be 0"):
        runtime.load(path, backend="onnxruntime", device="cpu", pack_channels=1)
    with pytest.raises(InputError, match="pack_channels"):
        runtime.load(path, backend="onnxruntime", device="cpu", pack_channels=4096)
    with pytest.raises(InputError, match=f"{image_graph}.*inputs; packing needs a patch graph"):
        runtime.load(image_graph, backend="onnxruntime", device="cpu", pack_channels=16)
    fixed = onnx.load(str(path))
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8
    fixed_path = tmp_path / "fixed.onnx"
    onnx.save(fixed, str(fixed_path))
    with pytest.raises(InputError, match=f"{fixed_path} has a fixed batch of 8") as caught:
        runtime.load(fixed_path, backend="onnxruntime", device="cpu", pack_channels=16)
    assert "\n" not in str(caught.value)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(InputError, match=f"{broken}"):
        runtime.load(broken, backend="onnxruntime", device="cpu", pack_channels=16)


def test_the_rule_table_packs_the_narrowest_graphs_and_the_caller_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty tuning cache: the rule table decides, whatever this host has tuned.
    monkeypatch.setenv("HARDNET_EXPORT_CACHE", str(tmp_path / "cache"))
    eighth = get_model("hardnet-eighth").onnx
    loaded = runtime.load(eighth, device="cpu")
    assert loaded.choice is not None and loaded.choice.source == "rule"
    assert loaded.choice.options["pack_channels"] == PACK_CHANNELS
    assert loaded.pack == (4, 4, 2, 2) and "packed" in loaded.choice.why
    # Two patches per row gained too little to pack without measuring.
    quarter = runtime.load(get_model("hardnet-quarter").onnx, device="cpu")
    assert quarter.choice is not None and "pack_channels" not in quarter.choice.options
    plain = runtime.load(eighth, device="cpu", pack_channels=0)
    assert plain.choice is not None and plain.choice.options["pack_channels"] == 0
    assert not getattr(plain, "pack", ())
    patches = textured(37, seed=2)
    # The same arithmetic on both; bf16 (the rule's on CPUs with it) rounds every activation
    # to 8 bits, so another summation order inside a kernel may move one rounding.
    bf16 = getattr(loaded, "inference_precision", "f32") == "bf16"
    atol = 1e-3 if bf16 else 2e-6
    np.testing.assert_allclose(loaded.describe(patches), plain.describe(patches), atol=atol)
