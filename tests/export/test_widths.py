"""A narrower HardNet goes through every stage: train, export (fp32, fp16, image graph), run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hardnet_export import runtime
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.models import conv_shapes
from hardnet_export.cli import main
from hardnet_export.export.image_graph import export_image_graph
from hardnet_export.export.sensitivity import conv_multiply_adds
from hardnet_export.model import load_model, read_checkpoint

pytestmark = pytest.mark.slow


def _cli(*args: str) -> None:
    try:
        main(list(args))
    except SystemExit as exc:
        assert not exc.code, f"hardnet-export {' '.join(args)} exited {exc.code}"


@pytest.fixture(scope="module")
def half_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("half")
    _cli(
        "train", "--data", "builtin", "--width", "0.5", "--steps", "2", "--batch-size", "16",
        "--num-workers", "0", "--no-progress", "--out", str(out / "run"),
    )  # fmt: skip
    return out


def test_a_half_width_model_trains_exports_and_describes(half_run: Path) -> None:
    final = half_run / "run" / "final.pth"
    assert read_checkpoint(final).meta["width"] == 0.5
    model = load_model(final)
    patches = np.random.default_rng(0).integers(0, 256, (7, 32, 32), dtype=np.uint8)
    with torch.no_grad():
        want = model(torch.from_numpy(patches)[:, None]).numpy()
    for precision in ("fp32", "fp16"):
        graph = half_run / f"half.{precision}.onnx"
        _cli("onnx", str(final), "-o", str(graph), "--precision", precision, "--no-parity")
        meta = read_metadata(graph)
        assert meta.width == 0.5 and meta.precision == precision
        got = runtime.load(graph, device="cpu").describe(patches)
        assert got.shape == (7, 128)
        assert float((got * want).sum(1).min()) > (0.9999 if precision == "fp32" else 0.99)
    # The cost the table states is the exported graph's.
    import onnx

    macs = conv_multiply_adds(onnx.load(str(half_run / "half.fp32.onnx")))
    assert list(macs.values()) == [shape.multiply_adds for shape in conv_shapes(0.5)]
    image = np.random.default_rng(1).integers(0, 256, (120, 160), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 2.0)
    cv2.imwrite(str(half_run / "frame.png"), image)
    _cli(
        "describe", str(half_run / "frame.png"), "-o", str(half_run / "f.npz"),
        "--model", str(half_run / "half.fp32.onnx"), "--max-keypoints", "50", "--device", "cpu",
    )  # fmt: skip
    assert np.load(half_run / "f.npz")["descriptors_0"].shape[1] == 128


def test_a_half_width_image_graph(half_run: Path) -> None:
    # The path of 'onnx --with-extraction'; one pyramid level keeps the export short here.
    final = half_run / "run" / "final.pth"
    graph = export_image_graph(final, half_run / "half.image.onnx", pyramid_levels=1)
    meta = read_metadata(graph)
    assert meta.kind == "image" and meta.width == 0.5
    image = np.random.default_rng(2).integers(0, 256, (64, 80), dtype=np.uint8)
    kps = np.array([[30.0, 30.0, 2.0, 0.0], [40.0, 20.0, 2.5, 90.0]])
    _, got = runtime.load(graph, device="cpu").compute(image, kps)
    _, want = runtime.load(final, device="cpu").compute(image, kps)
    assert got.shape == (2, 128) and float((got * want).sum(1).min()) > 0.999
