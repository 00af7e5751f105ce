"""Image graphs on OpenVINO: the same descriptors as ONNX Runtime's, the same host rules.

(The file name holds "openvino": the suite runs OpenVINO's tests last, see tests/conftest.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.errors import InputError
from hardnet_export.runtime.base import patch_describer

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def pair(image_graph: Path) -> tuple[runtime.Describer, runtime.Describer]:
    ours = runtime.load(image_graph, backend="openvino", num_threads=1)
    theirs = runtime.load(image_graph, backend="onnxruntime", device="cpu")
    return ours, theirs


def test_openvino_opens_an_image_graph_as_an_image_describer(
    pair: tuple[runtime.Describer, runtime.Describer],
) -> None:
    from hardnet_export.runtime.image import ImageDescriber
    from hardnet_export.runtime.openvino_backend import OpenVINOImageDescriber

    ours, _ = pair
    assert isinstance(ours, OpenVINOImageDescriber) and isinstance(ours, ImageDescriber)
    assert (ours.backend, ours.device, ours.precision) == ("openvino", "cpu", "fp32")
    assert ours.magnification == 12.0 and ours.pyramid_levels == 3 and ours.min_image_side == 5
    # An image describer is the patch describer's sibling: it has no describe().
    assert not hasattr(ours, "describe")
    with pytest.raises(InputError, match=r"compute\(image, keypoints\)"):
        patch_describer(ours)


@pytest.mark.parametrize("precision", ["bf16", "f16"])
def test_openvino_runs_an_image_graph_in_f32_only(image_graph: Path, precision: str) -> None:
    # Refused on every CPU, before the bf16 check that only CPUs without it would meet.
    name = re.escape(str(image_graph))
    refused = rf"{name} is an image graph, which OpenVINO runs in f32 only.*{precision}"
    with pytest.raises(InputError, match=refused):
        runtime.load(image_graph, backend="openvino", inference_precision=precision)


@pytest.mark.parametrize("k", [1, 150])
def test_openvino_image_graph_matches_onnxruntime(
    pair: tuple[runtime.Describer, runtime.Describer],
    photo_crop: np.ndarray,
    crop_keypoints: np.ndarray,
    k: int,
) -> None:
    ours, theirs = pair
    kps = crop_keypoints[:k]
    _, got = ours.compute(photo_crop, kps)
    _, want = theirs.compute(photo_crop, kps)
    assert got.shape == want.shape == (k, 128)
    assert float((got * want).sum(1).min()) >= 0.9999
    # Another image size on the same compiled model (dynamic H, W, K).
    small = np.ascontiguousarray(photo_crop[:90, :130])
    inside = crop_keypoints[(crop_keypoints[:, 0] < 100) & (crop_keypoints[:, 1] < 60)][:9]
    _, got = ours.compute(small, inside, out_of_bounds="zero")
    _, want = theirs.compute(small, inside, out_of_bounds="zero")
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_openvino_image_graph_has_the_host_rules_and_errors(
    pair: tuple[runtime.Describer, runtime.Describer], photo_crop: np.ndarray
) -> None:
    ours, theirs = pair
    far = np.array([[20.0, 20.0, 4.0, 0.0], [1e4, 10.0, 2.0, 0.0]])
    for bad in (
        far,
        np.array([[10.0, 10.0, np.nan, 0.0]]),
        np.array([[50.0, 50.0, 30.0, 0.0]]),  # needs a fourth pyramid level
    ):
        with pytest.raises(InputError) as a:
            ours.compute(photo_crop, bad)
        with pytest.raises(InputError) as b:
            theirs.compute(photo_crop, bad)
        assert str(a.value) == str(b.value)
    _, zeroed = ours.compute(photo_crop, far, out_of_bounds="zero")
    assert np.abs(np.linalg.norm(zeroed[0]) - 1.0) < 1e-4 and not zeroed[1].any()
    with pytest.raises(InputError, match="at least 5x5"):
        ours.compute(np.zeros((4, 40), np.uint8), np.array([[1.0, 1.0]]))
    with pytest.raises(InputError, match="magnification 12"):
        ours.compute(photo_crop, far[:1], magnification=6.0)
