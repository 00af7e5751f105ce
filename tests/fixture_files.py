"""Small datasets in their exact on-disk formats, written by tests into tmp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_phototour(
    root: Path, name: str, patches: np.ndarray, labels: np.ndarray, m50: np.ndarray | None = None
) -> Path:
    """Write a PhotoTour subset in the exact on-disk layout: 1024x1024 BMP tiles of 16x16
    patches (64x64, row-major, last tile zero-padded), ``info.txt`` and optionally the
    standard ``m50_100000_100000_0.txt`` from rows ``(patch_i, patch_j)``."""
    import cv2

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    tiles = -(-len(patches) // 256)
    padded = np.zeros((tiles * 256, 64, 64), np.uint8)
    padded[: len(patches)] = patches
    for t in range(tiles):
        tile = padded[t * 256 : (t + 1) * 256].reshape(16, 16, 64, 64).transpose(0, 2, 1, 3)
        assert cv2.imwrite(str(folder / f"patches{t:04d}.bmp"), tile.reshape(1024, 1024))
    (folder / "info.txt").write_text("".join(f"{int(p)} 0\n" for p in labels))
    if m50 is not None:
        (folder / "m50_100000_100000_0.txt").write_text(
            "".join(f"{i} {labels[i]} 0 {j} {labels[j]} 0\n" for i, j in m50)
        )
    return folder


def write_hpatches_sequence(folder: Path, stacks: dict[str, np.ndarray]) -> Path:
    """Write one HPatches sequence: per image name a 65-px-wide PNG of N stacked patches."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for name, stack in stacks.items():
        assert cv2.imwrite(str(folder / f"{name}.png"), stack.reshape(-1, 65))
    return folder


def structured_patches(n_points: int, views: int, size: int, seed: int = 0) -> np.ndarray:
    """``views`` noisy, slightly shifted versions of ``n_points`` smooth random textures:
    learnable matching pairs without any dataset.

    Shape:
        - return: (n_points * views, size, size) uint8, grouped by point.
    """
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n_points, views, size, size), np.uint8)
    for i in range(n_points):
        base = cv2.GaussianBlur(rng.normal(128, 60, (size + 8, size + 8)), (0, 0), size / 16)
        for v in range(views):
            dy, dx = rng.integers(0, 3, 2)
            view = base[4 + dy - 1 : 4 + dy - 1 + size, 4 + dx - 1 : 4 + dx - 1 + size]
            view = view + rng.normal(0, 6, view.shape)
            out[i, v] = np.clip(view, 0, 255).astype(np.uint8)
    return out.reshape(-1, size, size)


def write_image_graph_stub(path: Path, *, levels: int = 3, **metadata: str) -> Path:
    """A tiny ONNX file with an image graph's inputs (image (H, W) uint8, keypoints (K, 4)
    float32) and metadata (graph_kind image, magnification 12, ``levels`` pyramid levels and
    their min_image_side) but no extraction inside: for the checks made before a graph runs
    (metadata, profile planning, the kind table), without the export's half minute.
    ``metadata`` replaces or adds metadata_props."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["height", "width"])
    keypoints = helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["k", 4])
    out = helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["k", 4])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["keypoints"], ["descriptors"])],
        "image_graph_stub",
        [image, keypoints],
        [out],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    props = {
        "producer": "hardnet-export test stub",
        "precision": "fp32",
        "graph_kind": "image",
        "magnification": "12.0",
        "pyramid_levels": str(levels),
        "min_image_side": str(2 ** (levels - 1) + 1),
        **metadata,
    }
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path
