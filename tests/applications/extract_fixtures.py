"""Image folders and a small model for the bulk-extraction tests (local and Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hardnet_export.shipped import WEIGHTS_DIR

#: The smallest shipped model: its FP32 graph on ONNX Runtime, deterministic in every process.
MODEL = str(WEIGHTS_DIR / "hardnet_eighth_builtin.fp32.onnx")
COMMON: dict[str, Any] = {"model": MODEL, "backend": "onnxruntime", "max_keypoints": 120}


def write_images(
    root: Path, count: int, seed: int = 0, size: tuple[int, int] = (96, 128)
) -> list[str]:
    """``count`` textured PNGs under ``root`` (about ``size`` = (H, W)), a third of them in
    ``sub/``; their names."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        shape = (size[0] + 8 * (i % 4), size[1])
        texture = cv2.GaussianBlur(rng.normal(128, 70, shape), (0, 0), 2.0)
        name = f"sub/view{i:02d}.png" if i % 3 == 0 else f"view{i:02d}.png"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.clip(texture, 0, 255).astype(np.uint8))
        names.append(name)
    return names


def hloc_names(path: Path) -> set[str]:
    """The image names hloc finds in a features file (hloc's ``list_h5_names``: the parent
    group of every dataset)."""
    import h5py

    names: set[str] = set()
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda _, obj: (
                names.add(obj.parent.name.strip("/")) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return names


def read_all(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every image's datasets, as hloc reads them."""
    import h5py

    with h5py.File(path, "r") as f:
        return {name: {key: f[name][key][()] for key in f[name]} for name in hloc_names(path)}


def assert_same_features(a: Path, b: Path) -> None:
    """Same images, same keypoints, bit-identical descriptors."""
    first, second = read_all(a), read_all(b)
    assert set(first) == set(second)
    for name in first:
        for key in ("keypoints", "descriptors", "scores", "image_size"):
            np.testing.assert_array_equal(first[name][key], second[name][key], err_msg=name)
