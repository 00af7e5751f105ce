"""The model registry: names go where paths go, widths scale the network, the cost formula is
the paper's figure, and every registered model is what its card says."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hardnet_export
from hardnet_export import runtime
from hardnet_export._io import sha256_file
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.models import (
    DEFAULT_MODEL,
    UnknownModelError,
    conv_channels,
    conv_shapes,
    get_model,
    lookup,
    models,
    multiply_adds,
    parameter_count,
    resolve_model,
)
from hardnet_export.model import HardNet, load_model, save_checkpoint
from hardnet_export.runtime.policy import registered_graph
from hardnet_export.shipped import SHIPPED_ONNX, SHIPPED_WEIGHTS, require_shipped

ROOT = Path(__file__).resolve().parents[1]
MODELS = models()


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


def test_multiply_adds_and_weights_from_the_layer_shapes() -> None:
    # The paper's (and the card's) figures: 1,334,560 weights, about 39.1 M multiply-adds.
    assert parameter_count(1.0) == 1_334_560
    assert multiply_adds(1.0) == 39_092_224 and f"{multiply_adds(1.0) / 1e6:.1f}" == "39.1"
    assert [s.out_side for s in conv_shapes(1.0)] == [32, 32, 16, 16, 8, 8, 1]
    assert conv_channels(0.5) == (16, 16, 32, 32, 64, 64)
    assert conv_channels(0.25) == (8, 8, 16, 16, 32, 32)
    for width in (1.0, 0.5, 0.25, 0.3):
        counted = sum(p.numel() for p in HardNet(width=width).parameters())
        assert counted == parameter_count(width), width
    # Multiply-adds fall with the square of the width, except the last conv's (linear).
    assert multiply_adds(0.5) == 10_108_928 and multiply_adds(0.25) == 2_695_168


def _todays_hardnet() -> nn.Module:
    """The network as it was before widths: the literal layer list."""

    def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        return [
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out, affine=False),
            nn.ReLU(),
        ]

    features = nn.Sequential(
        *block(1, 32), *block(32, 32), *block(32, 64, 2), *block(64, 64),
        *block(64, 128, 2), *block(128, 128), nn.Dropout(0.3),
        nn.Conv2d(128, 128, kernel_size=8, bias=False), nn.BatchNorm2d(128, affine=False),
    )  # fmt: skip
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.orthogonal_(module.weight, gain=0.6)
    return features


def test_width_one_is_todays_hardnet_bit_for_bit() -> None:
    torch.manual_seed(5)
    want = _todays_hardnet().eval()
    torch.manual_seed(5)
    model = HardNet().eval()
    assert model.width == 1.0
    got = model.features.state_dict()
    assert list(got) == list(want.state_dict())  # the authors' keys, in order
    for key, value in want.state_dict().items():
        assert got[key].shape == value.shape and torch.equal(got[key], value), key
    x = torch.rand(4, 1, 32, 32) * 255
    with torch.no_grad():
        y = want(HardNet.standardize(x)).reshape(4, 128)
        assert torch.equal(model(x), y / torch.sqrt((y * y).sum(1, keepdim=True) + 1e-10))


def test_width_travels_with_the_weights(tmp_path: Path) -> None:
    half = HardNet(width=0.5).eval()
    saved = save_checkpoint(tmp_path / "half.pth", half)
    loaded = load_model(saved)
    assert loaded.width == 0.5
    x = torch.rand(3, 1, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), half(x))
    # A foreign checkpoint says nothing: the width comes from its first conv's rows.
    torch.save({"epoch": 1, "state_dict": half.state_dict()}, tmp_path / "foreign.pth")
    assert load_model(tmp_path / "foreign.pth").width == 0.5
    torch.save({"state_dict": HardNet(width=0.3).state_dict()}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"width 0.3125 \(inferred from features.0.weight"):
        load_model(tmp_path / "odd.pth")  # 0.3 rounds 19.2 to 19 channels, 0.3125 to 20
    with pytest.raises(ValueError, match="width must be > 0"):
        HardNet(width=0.0)


@pytest.mark.slow
def test_unknown_names_list_the_registered_ones(tmp_path: Path) -> None:
    names = ", ".join(entry.name for entry in MODELS)
    for load in (load_model, runtime.load, get_model, resolve_model):
        with pytest.raises(UnknownModelError, match=f"registered models are {names}"):
            load("hardnet-tiny")
    # Paths stay paths: a missing checkpoint is a missing file, as before.
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_model(tmp_path / "nope.pth")
    assert lookup(SHIPPED_WEIGHTS) is None and lookup("hardnet") is get_model("hardnet")
    # An existing file wins over a name.
    (tmp_path / "hardnet").write_bytes(SHIPPED_WEIGHTS.read_bytes())
    assert resolve_model(tmp_path / "hardnet") == tmp_path / "hardnet"
    result = subprocess.run(
        [sys.executable, "-m", "hardnet_export", "eval", "--model", "hardnet-tiny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"registered models are {names}" in result.stderr


def test_a_path_is_a_path_and_a_bare_name_the_registered_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    half = get_model("hardnet-half")
    # "./hardnet-half" names a file, here a missing one: it loaded the registered model.
    assert resolve_model("./hardnet-half") == tmp_path / "hardnet-half"
    with pytest.raises(FileNotFoundError, match="hardnet-half"):
        load_model("./hardnet-half")
    with pytest.raises(FileNotFoundError, match="model not found: .*hardnet-half"):
        runtime.load("./hardnet-half")
    # A file of a registered model's name in the working directory: the name is the
    # registered model, and a warning says how to pick the file (it took the file, silently).
    save_checkpoint(tmp_path / "hardnet-half", HardNet(width=0.25))
    with pytest.warns(UserWarning, match=r"not used: pass \./hardnet-half to use it"):
        assert resolve_model("hardnet-half") == half.weights
    assert resolve_model("./hardnet-half") == tmp_path / "hardnet-half"
    assert load_model("./hardnet-half").width == 0.25
    # Empty and folder arguments say so ("no ... registered model named '.'" before).
    for model, message in [("", "the model is empty: give the path"), (".", ". is a folder")]:
        with pytest.raises(ValueError, match=message):
            resolve_model(model)


def test_the_default_is_registered_first() -> None:
    assert hardnet_export.models() == MODELS and MODELS[0].name == DEFAULT_MODEL
    default = get_model(DEFAULT_MODEL)
    assert (default.weights, default.onnx, default.width) == (SHIPPED_WEIGHTS, SHIPPED_ONNX, 1.0)
    assert len({entry.name for entry in MODELS}) == len(MODELS)


def test_require_shipped_gives_the_file_or_the_one_error(tmp_path: Path) -> None:
    assert require_shipped(SHIPPED_WEIGHTS) == SHIPPED_WEIGHTS
    absent = tmp_path / "absent.pth"
    message = f"no shipped model in this installation ({absent} is missing); pass a path"
    with pytest.raises(FileNotFoundError) as caught:
        require_shipped(absent, "pass a path")
    assert str(caught.value) == message


@pytest.mark.slow
@pytest.mark.parametrize("entry", MODELS, ids=lambda e: e.name)
def test_registered_model_is_what_its_card_says(entry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Loads without running code from the file, at its width, and is the card's file.
    raw = torch.load(entry.weights, map_location="cpu", weights_only=True)
    assert raw["state_dict"]
    assert entry.card_sha256() == sha256_file(entry.weights)
    card = entry.card.read_text()
    assert f"{entry.multiply_adds / 1e6:.1f} M multiply-adds" in card
    assert f"{entry.parameters:,} weights" in card and f"`{entry.name}`" in card
    model = load_model(entry.name)
    assert (model.width, model.layout) == (entry.width, entry.layout)
    assert sum(p.numel() for p in model.parameters()) == entry.parameters
    # Exports, and the export says which model and width it is.
    from hardnet_export.export.onnx import export_onnx

    graph = export_onnx(entry.name, tmp_path / "m.fp32.onnx", parity=False)
    meta = read_metadata(graph)
    assert (meta.model_name, meta.width, meta.layout) == (entry.name, entry.width, entry.layout)
    assert meta.weights_sha256 == sha256_file(entry.weights)
    patches = np.random.default_rng(0).integers(0, 256, (6, 32, 32), dtype=np.uint8)
    # On the CPU a name runs the graph the policy picks (its FP32 graph, or a faster INT8
    # graph it ships) as runtime.load runs that graph here.
    by_name = runtime.load(entry.name, device="cpu")
    pick = registered_graph(entry)
    assert by_name.artifact == pick.graph
    assert by_name.choice.backend == runtime.load(pick.graph, device="cpu").choice.backend
    checkpoint = runtime.load(entry.name, backend="torch", device="cpu")
    assert checkpoint.artifact == entry.weights
    # As written (f32): the CPU policy may run it in a gated bf16 on this CPU.
    exported = runtime.load(graph, backend="onnxruntime", device="cpu")
    a, b = checkpoint.describe(patches), exported.describe(patches)
    assert a.shape == (6, 128) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(1).min()) > 0.9999
    # The torch-free form ships beside it: an export of exactly these weights (the default's
    # predates the width field, which then means width 1).
    shipped = runtime.load(entry.name, backend="onnxruntime")
    assert shipped.artifact == entry.onnx
    shipped_meta = read_metadata(entry.onnx)
    assert shipped_meta.weights_sha256 == sha256_file(entry.weights)
    assert (shipped_meta.width or 1.0) == entry.width
    assert (shipped_meta.layout or "l2net") == entry.layout
    assert float((shipped.describe(patches) * a).sum(1).min()) > 0.9999


# The registry and runtime.load(NAME) in a process where torch cannot be imported.
NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    import hardnet_export
    from hardnet_export import runtime

    from hardnet_export.runtime.policy import registered_graph

    for entry in hardnet_export.models():
        d = runtime.load(entry.name, device="cpu")
        graph = registered_graph(entry).graph
        assert d.artifact == graph and d.backend != "torch", (d.backend, d.artifact)
        assert d.describe(np.zeros((2, 32, 32), np.uint8)).shape == (2, 128)
        d = runtime.load(entry.name, backend="onnxruntime")
        assert d.backend == "onnxruntime" and d.artifact == entry.onnx, (d.backend, d.artifact)
    try:
        runtime.load("hardnet-tiny")
    except ValueError as exc:
        assert "registered models are" in str(exc)
    print("ok", "torch" in sys.modules)
    """
)


@pytest.mark.slow
def test_names_load_without_torch() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok False"


def test_the_strided_layout_halves_the_patch_first_and_travels_with_the_weights(
    tmp_path: Path,
) -> None:
    shapes = conv_shapes(1.0, "strided")
    assert [s.out_side for s in shapes] == [16, 16, 8, 8, 4, 4, 1]
    assert [s.stride for s in shapes[:6]] == [2, 1, 2, 1, 2, 1]
    assert [s.c_out for s in shapes] == [16] * 6 + [128] and shapes[-1].kernel == 4
    assert multiply_adds(1.0, "strided") == 1_028_096
    # stem4: the second conv at stride 2 too, so only one conv runs at 16x16.
    stem4 = conv_shapes(1.0, "stem4")
    assert [s.out_side for s in stem4] == [16, 8, 8, 4, 4, 4, 1] and stem4[-1].kernel == 4
    assert multiply_adds(1.0, "stem4") == 475_136
    assert parameter_count(1.0, "stem4") == parameter_count(1.0, "strided")
    model = HardNet(layout="strided").eval()
    assert sum(p.numel() for p in model.parameters()) == parameter_count(1.0, "strided")
    # The same modules in the same order: every tool that walks the convs walks these too.
    assert list(model.state_dict()) == list(HardNet(width=0.5).state_dict())
    saved = save_checkpoint(tmp_path / "strided.pth", model)
    loaded = load_model(saved)
    assert loaded.layout == "strided" and loaded.width == 1.0
    x = torch.rand(3, 1, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="layout must be one of l2net, strided, stem4, got 'wide'"):
        HardNet(layout="wide")
    # A checkpoint that names no layout is the paper's, as every checkpoint before layouts.
    torch.save({"state_dict": HardNet(width=0.5).state_dict()}, tmp_path / "foreign.pth")
    assert load_model(tmp_path / "foreign.pth").layout == "l2net"
    from hardnet_export.model import read_checkpoint

    bad = read_checkpoint(saved)
    meta = {**bad.meta, "layout": "wide"}
    import json

    torch.save(
        {"format": bad.format, "state_dict": bad.state_dict, "meta": json.dumps(meta)},
        tmp_path / "bad.pth",
    )
    with pytest.raises(ValueError, match=r"bad.pth: meta layout must be one of") as caught:
        load_model(tmp_path / "bad.pth")
    assert "\n" not in str(caught.value)
