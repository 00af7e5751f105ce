"""Small artifacts shared by the tests of every folder (a plugin of the root conftest.py): one
random HardNet as .pth and as .onnx (FP32 and FP16), image graphs, patches, a photo crop and a
calibration set.

Fixtures live here, not in a folder's conftest.py, when more than one folder uses them: one
copy, one export per session."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from hardnet_export.calibration.dataset import CalibrationSet


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-models")


@pytest.fixture(scope="session")
def checkpoint(model_dir: Path) -> Path:
    """A randomly initialised HardNet (seed 0) in this project's checkpoint format, with the
    provenance a training run records (step 123, data "builtin", config {"lr": 10.0}); the
    export tests read it back from the graph's metadata."""
    import torch

    from hardnet_export.model import HardNet, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(
        model_dir / "random.pth", HardNet().eval(), step=123, data="builtin", config={"lr": 10.0}
    )


@pytest.fixture(scope="session")
def onnx_model(checkpoint: Path, model_dir: Path) -> Path:
    """The same weights exported by the project's exporter: FP32, dynamic batch, uint8 input."""
    from hardnet_export.export.onnx import export_onnx

    return export_onnx(checkpoint, model_dir / "random.fp32.onnx", parity=False)


@pytest.fixture(scope="session")
def parity_patches() -> np.ndarray:
    """300 real patches from the held-out built-in photos (the export's default parity set)."""
    from hardnet_export.export.onnx import default_parity_patches

    return default_parity_patches()[0]


@pytest.fixture(scope="session")
def fp16_onnx(checkpoint: Path, parity_patches: np.ndarray, model_dir: Path) -> Path:
    """:func:`checkpoint` exported to FP16, its parity with PyTorch checked on
    :func:`parity_patches` (the export fails if it is off)."""
    from hardnet_export.export.onnx import export_onnx

    out = model_dir / "random.fp16.onnx"
    return export_onnx(checkpoint, out, variant="fp16", parity_patches=parity_patches)


@pytest.fixture(scope="session")
def calibration() -> CalibrationSet:
    """256 calibration patches drawn from the built-in training photos (seed 0)."""
    from hardnet_export.calibration.dataset import make_calibration_set

    return make_calibration_set("builtin", size=256, seed=0)


@pytest.fixture(scope="session")
def patches() -> np.ndarray:
    """Textured uint8 patches: smooth random fields, like image patches (not white noise)."""
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (64, 40, 40)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), 2.0)[4:36, 4:36] for n in noise])
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).round().astype(np.uint8)


#: Pyramid levels of the small image graphs here: few levels keep the export short (about
#: 20 s on a shared CPU); the code path is the default's.
IMAGE_LEVELS = 3


@pytest.fixture(scope="session")
def image_graph(model_dir: Path) -> Path:
    """The shipped weights as an FP32 image graph (image + keypoints -> descriptors)."""
    pytest.importorskip("torch")  # the exporter's
    from hardnet_export.export.image_graph import export_image_graph

    return export_image_graph(None, model_dir / "shipped.image.onnx", pyramid_levels=IMAGE_LEVELS)


@pytest.fixture(scope="session")
def image_graph_fp16(model_dir: Path) -> Path:
    """:func:`image_graph` in FP16."""
    pytest.importorskip("torch")
    from hardnet_export.export.image_graph import export_image_graph

    return export_image_graph(
        None, model_dir / "shipped.image.fp16.onnx", variant="fp16", pyramid_levels=IMAGE_LEVELS
    )


@pytest.fixture(scope="session")
def photo_crop() -> np.ndarray:
    """A 160x200 grey crop of a built-in photo: small, textured, above any min_image_side."""
    from hardnet_export.data.builtin import load_photo, split_photos
    from hardnet_export.geometry import as_gray

    return np.ascontiguousarray(as_gray(load_photo(split_photos("val")[0]))[:160, :200])


@pytest.fixture(scope="session")
def crop_keypoints(photo_crop: np.ndarray) -> np.ndarray:
    """150 random in-bound keypoints (x, y, size, angle) of ``photo_crop`` whose scale at
    magnification 12 stays within an image graph of :data:`IMAGE_LEVELS` levels.

    Shape:
        - return: (150, 4) float32.
    """
    from hardnet_export.geometry import keypoints_in_bounds

    rng = np.random.default_rng(0)
    h, w = photo_crop.shape
    n = 600
    size = np.exp(rng.uniform(0.0, np.log(20.0), n))
    angle = rng.uniform(-1, 360, n)
    kps = np.stack([rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n), size, angle], 1)
    kps = kps[keypoints_in_bounds((h, w), kps)][:150]
    assert len(kps) == 150
    return kps.astype(np.float32)
