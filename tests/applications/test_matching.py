from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.applications.matching import (
    OpenCVSift,
    draw_matches,
    estimate_geometry,
    match_descriptors,
    match_images,
)

H_TRUE = np.array([[0.92, 0.12, 12.0], [-0.08, 0.95, 18.0], [2e-4, 1e-4, 1.0]])
CORNERS = np.array([[0, 0], [255, 0], [255, 255], [0, 255]], np.float64).reshape(-1, 1, 2)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """skimage's astronaut (a real photo) at 256 px and its warp by H_TRUE."""
    import skimage.data

    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    image = cv2.resize(gray, (256, 256), interpolation=cv2.INTER_AREA)
    return image, cv2.warpPerspective(image, H_TRUE, (256, 256))


def corner_error(model: np.ndarray) -> float:
    got = cv2.perspectiveTransform(CORNERS, model)
    want = cv2.perspectiveTransform(CORNERS, H_TRUE)
    return float(np.abs(got - want).max())


@pytest.mark.parametrize("descriptor", ["hardnet", "sift"])
def test_warped_photo_recovers_the_homography(
    pair: tuple[np.ndarray, np.ndarray], onnx_model: Path, descriptor: str
) -> None:
    describer = runtime.load(onnx_model) if descriptor == "hardnet" else OpenCVSift()
    result = match_images(*pair, describer, max_keypoints=300)
    assert result.model is not None
    assert corner_error(result.model) < 3.0
    assert result.n_inliers >= 30 and result.inlier_ratio > 0.5
    # The runtime's CPU policy picks the backend by this CPU's instruction sets.
    assert result.descriptor == getattr(describer, "backend", "opencv-sift")
    canvas = draw_matches(*pair, result)
    assert canvas.shape[1:] == (512, 3) and canvas.shape[0] > 256  # a legend under the images
    assert canvas.dtype == np.uint8


def _green_red(canvas: np.ndarray) -> tuple[int, int]:
    b, g, r = (canvas[:256, ..., c].astype(int) for c in range(3))
    return int(((g - r > 100) & (g - b > 100)).sum()), int(((r - g > 100) & (r - b > 100)).sum())


def test_drawing_colours_by_correctness_and_caps_the_lines(
    pair: tuple[np.ndarray, np.ndarray],
) -> None:
    result = match_images(*pair, OpenCVSift(), max_keypoints=300)
    pts1 = np.array([result.keypoints1[i].pt for i in result.matches[:, 0]]).reshape(-1, 1, 2)
    pts2 = np.array([result.keypoints2[j].pt for j in result.matches[:, 1]])
    error = np.linalg.norm(cv2.perspectiveTransform(pts1, H_TRUE)[:, 0] - pts2, axis=1)
    correct = error < 3.0
    correct[::7] = False  # some wrong ones, so both colours appear
    many = draw_matches(*pair, result, correct=correct)
    few = draw_matches(*pair, result, correct=correct, max_lines=5)
    assert _green_red(many)[0] > 0 and _green_red(many)[1] > 0
    assert sum(_green_red(few)) < sum(_green_red(many)) / 4
    assert (many[256:] < 128).any()  # the legend's text
    with pytest.raises(ValueError, match="one bool per match"):
        draw_matches(*pair, result, correct=correct[:-1])


def test_fundamental_geometry(pair: tuple[np.ndarray, np.ndarray]) -> None:
    result = match_images(*pair, OpenCVSift(), max_keypoints=300, geometry="fundamental")
    assert result.model is not None and result.model.shape == (3, 3)
    assert result.n_inliers >= 30


def test_mutual_nearest_neighbours_and_ratio() -> None:
    a = np.eye(4, dtype=np.float32)
    b = np.eye(4, dtype=np.float32)[[2, 0, 3, 1]]
    np.testing.assert_array_equal(match_descriptors(a, b), [[0, 1], [1, 3], [2, 0], [3, 2]])
    # Two equally close candidates fail the ratio test but pass plain mutual NN.
    c = np.array([[1.0, 0.0]], np.float32)
    d = np.array([[0.0, 1.0], [0.0, -1.0]], np.float32)
    assert len(match_descriptors(c, d)) == 0
    assert len(match_descriptors(c, d, ratio=None)) == 1
    # Not mutual: both rows prefer column 0, only the closer one keeps it.
    e = np.array([[1.0, 0.0], [0.9, 0.1]], np.float32)
    f = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
    np.testing.assert_array_equal(match_descriptors(e, f, ratio=None), [[0, 0]])
    assert match_descriptors(e, f, ratio=None, mutual=False).tolist() == [[0, 0], [1, 0]]


def test_block_boundaries_do_not_change_matches() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2500, 16)).astype(np.float32)
    b = a[rng.permutation(2500)] + rng.normal(scale=0.01, size=(2500, 16)).astype(np.float32)
    matches = match_descriptors(a, b)
    assert len(matches) > 2400
    np.testing.assert_allclose(a[matches[:, 0]], b[matches[:, 1]], atol=0.1)


def test_match_errors() -> None:
    with pytest.raises(ValueError, match="same D"):
        match_descriptors(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="ratio"):
        match_descriptors(np.zeros((2, 3)), np.zeros((2, 3)), ratio=1.5)
    assert match_descriptors(np.zeros((0, 3)), np.zeros((2, 3))).shape == (0, 2)
    with pytest.raises(ValueError, match="geometry"):
        estimate_geometry(np.zeros((9, 2)), np.zeros((9, 2)), "affine")
    model, mask = estimate_geometry(np.zeros((3, 2)), np.zeros((3, 2)))
    assert model is None and not mask.any()
