"""The image graph (--with-extraction): one ONNX call from image and keypoints to descriptors,
matching the host path (geometry.extract_patches + the patch model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

# The pyramid levels of the root plugin's image_graph and image_graph_fp16 (few keep the export
# short on a shared CPU; the code path is the default's).
from model_fixtures import IMAGE_LEVELS as LEVELS  # noqa: E402

from hardnet_export import geometry, runtime  # noqa: E402
from hardnet_export.data.builtin import load_photo, split_photos  # noqa: E402
from hardnet_export.errors import InputError  # noqa: E402
from hardnet_export.export.image_graph import export_image_graph  # noqa: E402
from hardnet_export.runtime.base import patch_describer  # noqa: E402


def _keypoints(shape: tuple[int, int], k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = shape
    # Sizes whose scale stays below 2**LEVELS at magnification 12.
    size = np.exp(rng.uniform(0.0, np.log(20.0), k))
    kps = np.stack(
        [rng.uniform(0, w - 1, k), rng.uniform(0, h - 1, k), size, rng.uniform(-1, 360, k)], 1
    )
    return kps[geometry.keypoints_in_bounds(shape, kps)]


def test_checker_and_metadata(image_graph: Path) -> None:
    import onnx

    from hardnet_export.artifacts.metadata import read_metadata

    onnx.checker.check_model(onnx.load(str(image_graph)), full_check=True)
    meta = read_metadata(image_graph)
    assert meta.kind == "image" and meta.magnification == 12.0
    assert meta.pyramid_levels == LEVELS and meta.min_image_side == 2 ** (LEVELS - 1) + 1


@pytest.mark.parametrize("crop", [(400, 600), (200, 333)])
@pytest.mark.parametrize("k", [1, 300])
def test_matches_host_path(image_graph: Path, crop: tuple[int, int], k: int) -> None:
    photo = geometry.as_gray(load_photo(split_photos("val")[0]))
    image = np.ascontiguousarray(photo[: crop[0], : crop[1]])
    kps = _keypoints(image.shape, k, seed=k)
    graph = runtime.load(image_graph, backend="onnxruntime", device="cpu")
    host = runtime.load(None, backend="torch", device="cpu")
    _, got = graph.compute(image, kps)
    _, want = host.compute(image, kps)
    assert got.shape == (len(kps), 128)
    cosine = (got * want).sum(1)
    assert cosine.min() > 0.999


def test_describe_names_compute(image_graph: Path) -> None:
    graph = runtime.load(image_graph, backend="onnxruntime", device="cpu")
    # An image describer is the patch describer's sibling: it has no describe().
    assert not hasattr(graph, "describe")
    with pytest.raises(InputError, match=r"compute\(image, keypoints\)"):
        patch_describer(graph)


@pytest.mark.parametrize(
    ("keypoints", "message"),
    [
        (np.array([[10.0, 10.0, np.nan, 0.0]]), "keypoints must be finite"),
        (np.array([[10.0, 10.0, -1.0, 0.0]]), "keypoint sizes must be positive"),
        (np.zeros((2, 3)), r"shape \(K, 2\) or \(K, 4\)"),
        (np.array([[1e4, 10.0, 2.0, 0.0]]), "out of bounds"),
    ],
)
def test_keypoint_errors_are_the_host_paths(
    image_graph: Path, keypoints: np.ndarray, message: str
) -> None:
    image = np.zeros((64, 64), np.uint8)
    graph = runtime.load(image_graph, backend="onnxruntime", device="cpu")
    with pytest.raises(InputError, match=message):
        graph.compute(image, keypoints)
    with pytest.raises(InputError, match=message):
        geometry.extract_patches(image, keypoints)


def test_small_image_and_int8_refused(image_graph: Path, tmp_path: Path) -> None:
    graph = runtime.load(image_graph, backend="onnxruntime", device="cpu")
    with pytest.raises(InputError, match="at least 5x5"):
        graph.compute(np.zeros((4, 40), np.uint8), np.array([[1.0, 1.0]]))
    with pytest.raises(InputError, match="fp32 or fp16"):
        export_image_graph(None, tmp_path / "m.onnx", variant="int8-cpu")


def test_a_variant_without_an_image_graph_names_both_exports(tmp_path: Path) -> None:
    from hardnet_export.cli import flag

    with pytest.raises(InputError) as info:
        export_image_graph(None, tmp_path / "m.onnx", variant="int8-cpu")
    assert str(info.value) == (
        "an image graph (export_image_graph()) is fp32 or fp16, got the int8-cpu variant; "
        "export it as a patch graph (export_onnx(variant='int8-cpu'))"
    )
    assert info.value.render(flag) == (
        "an image graph (hardnet-export onnx --with-extraction) is fp32 or fp16, got the "
        "int8-cpu variant; export it as a patch graph (hardnet-export onnx --precision int8 "
        "--int8-target cpu)"
    )


@pytest.mark.parametrize("shape", [(129, 131), (200, 333)])
def test_atlas_tiles_are_opencvs_pyramid_and_blurs(shape: tuple[int, int]) -> None:
    """Every (level, blur) tile of the atlas is OpenCV's pyrDown chain and GaussianBlur of
    it, bit for bit (the host path's sources), at the tile's recorded place."""
    import cv2
    import torch

    from hardnet_export.export.image_graph import (
        _PYR_KERNEL,
        PYRAMID_LEVELS,
        _atlas,
        _filter,
        _round,
        blur_kernels,
    )

    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    level = torch.from_numpy(gray).to(torch.float32)
    pyramid = [level]
    for _ in range(PYRAMID_LEVELS - 1):
        level = _round(_filter(_filter(level, list(_PYR_KERNEL), 1, 2), _PYR_KERNEL, 0, 2))
        pyramid.append(level)
    kernels = [k.tolist() for k in blur_kernels()]
    atlas, origin_x, origin_y, widths, heights = _atlas(pyramid, kernels, PYRAMID_LEVELS)
    atlas = atlas.numpy()
    source = gray
    for index in range(PYRAMID_LEVELS):
        if index:
            source = cv2.pyrDown(source)
        assert (int(heights[index]), int(widths[index])) == source.shape
        for blur, sigma in enumerate(geometry.PYRAMID_BLURS.tolist()):
            want = source
            if sigma > 0:
                want = cv2.GaussianBlur(source, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
            x0 = int(origin_x[index]) + blur * source.shape[1]
            y0 = int(origin_y[index])
            tile = atlas[y0 : y0 + source.shape[0], x0 : x0 + source.shape[1]]
            np.testing.assert_array_equal(tile, want, err_msg=f"level {index}, blur {blur}")


@pytest.mark.slow
def test_fp16_image_graph_matches_host_path(image_graph_fp16: Path) -> None:
    """FP16 (conv stack in float16, extraction float32) against the FP32 host path."""
    import onnx

    from hardnet_export.artifacts.metadata import read_metadata

    onnx.checker.check_model(onnx.load(str(image_graph_fp16)), full_check=True)
    meta = read_metadata(image_graph_fp16)
    assert meta.kind == "image" and meta.precision == "fp16"
    photo = geometry.as_gray(load_photo(split_photos("val")[0]))
    image = np.ascontiguousarray(photo[:300, :400])
    kps = _keypoints(image.shape, 300, seed=11)
    graph = runtime.load(image_graph_fp16, backend="onnxruntime", device="cpu")
    _, got = graph.compute(image, kps)
    _, want = runtime.load(None, backend="torch", device="cpu").compute(image, kps)
    assert (got * want).sum(1).min() > 0.999


def test_no_integer_clip_for_tensorrts_parser(image_graph: Path) -> None:
    """TensorRT 10's ONNX parser takes Clip in float types only (onnx-tensorrt
    docs/operators.md); the exporter writes one for every integer clamp."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(image_graph)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    clips = [n for n in model.graph.node if n.op_type == "Clip"]
    assert clips and all(types[n.input[0]] in floats for n in clips)
