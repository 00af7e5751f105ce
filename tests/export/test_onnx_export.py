from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from hardnet_export._io import sha256_file
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.export.common import state_dict_sha256
from hardnet_export.export.onnx import export_onnx
from hardnet_export.model import HardNet, load_model


def test_graph_is_self_contained_checked_and_dynamic(fp32_onnx: Path) -> None:
    assert not list(fp32_onnx.parent.glob("*.data"))
    model = onnx.load(str(fp32_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "patches" and graph_output.name == "descriptors"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph_output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch = graph_input.type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")
    # BatchNorm is folded into the convs.
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops


@pytest.mark.parametrize("batch", [1, 7, 300, 513])
def test_matches_pytorch_at_any_batch(fp32_onnx: Path, checkpoint: Path, batch: int) -> None:
    patches = np.random.default_rng(batch).integers(0, 256, (batch, 1, 32, 32), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"patches": patches})
    with torch.inference_mode():
        expected = load_model(checkpoint)(torch.from_numpy(patches)).numpy()
    assert got.shape == (batch, 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_metadata_provenance_and_parity(fp32_onnx: Path, checkpoint: Path) -> None:
    meta = read_metadata(fp32_onnx)
    assert meta.producer.startswith("hardnet-export ")
    assert meta.precision == "fp32"
    assert meta.input["dtype"] == "uint8" and meta.input["shape"] == ["batch", 1, 32, 32]
    assert meta.weights_sha256 == sha256_file(checkpoint)
    assert meta.weights_provenance["step"] == 123
    assert meta.weights_provenance["data"] == "builtin"
    parity = meta.parity
    assert set(parity["batches"]) == {"1", "7", "300"}
    for row in parity["batches"].values():
        assert row["max_abs_error"] < 1e-5 and row["min_cosine"] > 0.99999
        assert row["nn_agreement"] > 0.99
    model = onnx.load(str(fp32_onnx))
    assert model.producer_name == "hardnet-export"


def test_float32_input_from_module(tmp_path: Path, parity_patches: np.ndarray) -> None:
    torch.manual_seed(1)
    module = load_model_like_random()
    out = export_onnx(
        module, tmp_path / "float.onnx", input_dtype="float32", parity_patches=parity_patches[:20]
    )
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    patches = parity_patches[:5, None].astype(np.float32)
    (got,) = session.run(None, {"patches": patches})
    with torch.inference_mode():
        expected = module(torch.from_numpy(patches)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    meta = read_metadata(out)
    assert meta.weights_sha256 == state_dict_sha256(module)
    assert meta.input["dtype"] == "float32"


def load_model_like_random() -> torch.nn.Module:
    from hardnet_export import HardNet

    return HardNet().eval()


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        export_onnx(tmp_path / "nope.pth", tmp_path / "m.onnx")


def test_unwritable_output(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(checkpoint, tmp_path / "no" / "such" / "m.onnx")
    with pytest.raises(IsADirectoryError):
        export_onnx(checkpoint, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "int4"}, "unknown variant 'int4'"),
        ({"variant": "fp16", "options": object()}, "options given for the fp16 variant"),
        ({"variant": "int8-cpu", "options": object()}, "int8-cpu variant takes Int8Options"),
        ({"input_dtype": "float16"}, "input_dtype must be one of"),
        ({"opset": 17}, "opset must be between 18 and"),
        # The exporter fell back to opset 18 with a traceback and exit 0: refuse instead.
        ({"opset": 99}, "opset must be between 18 and"),
        ({"opset": True}, "opset must be an integer"),
    ],
)
def test_bad_options(checkpoint: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        export_onnx(checkpoint, tmp_path / "m.onnx", **kwargs)
    assert not list(tmp_path.iterdir())


def test_nan_weights_fail_the_export(tmp_path: Path) -> None:
    # Such a graph exported with exit 0 while parity printed nan next to "NN agree 1.0000".
    model = HardNet()
    with torch.no_grad():
        model.features[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf descriptors"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_not_a_hardnet(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="HardNet"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")


def test_flat_patches_give_zero_descriptors_like_pytorch(fp32_onnx: Path, checkpoint: Path) -> None:
    # The L2 norm's epsilon must survive export: a flat patch has an all-zero descriptor.
    patches = np.zeros((3, 1, 32, 32), np.uint8)
    patches[1] = 255
    patches[2] = 17
    session = onnxruntime.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"patches": patches})
    with torch.inference_mode():
        expected = load_model(checkpoint)(torch.from_numpy(patches)).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_shipped_model_missing_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hardnet_export.model as model_module

    monkeypatch.setattr(model_module, "SHIPPED_WEIGHTS", tmp_path / "absent.pth")
    with pytest.raises(FileNotFoundError, match="no shipped model"):
        export_onnx(None, tmp_path / "m.onnx")
