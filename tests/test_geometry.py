from __future__ import annotations

import cv2
import numpy as np
import pytest

from hardnet_export.geometry import DEFAULT_MAGNIFICATION, extract_patches


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (90, 110), dtype=np.uint8)


def native(x0: int, y0: int, angle: float = -1.0, magnification: float = 6.0) -> cv2.KeyPoint:
    """The keypoint whose patch is exactly image[y0:y0+32, x0:x0+32]."""
    return cv2.KeyPoint(x0 + 15.5, y0 + 15.5, 32 / magnification, angle)


def test_axis_aligned_keypoint_is_a_plain_crop(image: np.ndarray) -> None:
    for angle in (-1.0, 0.0):
        out = extract_patches(image, [native(10, 20, angle)], magnification=6.0)
        np.testing.assert_array_equal(out[0], image[20:52, 10:42])


def test_array_keypoints_match_cv2_keypoints(image: np.ndarray) -> None:
    kps = [native(3, 4), native(40, 30, 33.0)]
    as_array = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in kps])
    np.testing.assert_array_equal(
        extract_patches(image, kps, magnification=6.0),
        extract_patches(image, as_array, magnification=6.0),
    )


def test_xy_keypoints_give_native_resolution_crops(image: np.ndarray) -> None:
    out = extract_patches(image, np.array([[10 + 15.5, 20 + 15.5]]))
    np.testing.assert_array_equal(out[0], image[20:52, 10:42])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_follows_opencv_angle_convention(image: np.ndarray, k: int) -> None:
    # angle turns clockwise on screen (y down); the patch is counter-rotated so that the
    # keypoint's direction becomes the patch's +x axis: np.rot90 of the upright crop.
    out = extract_patches(image, [native(30, 25, 90.0 * k)], magnification=6.0)
    np.testing.assert_array_equal(out[0], np.rot90(image[25:57, 30:62], k))


def test_scale_uses_magnification_times_size() -> None:
    # 64-pixel checkerboard cells; a support of 128 px spans 2 cells -> 16 patch px each.
    board = np.kron((np.indices((8, 8)).sum(0) % 2) * 255, np.ones((64, 64))).astype(np.uint8)
    kp = cv2.KeyPoint(256.0, 256.0, 128.0 / 6.0, -1)
    out = extract_patches(board, [kp], magnification=6.0)[0].astype(int)
    # Support 128 px = 2 cells; the centre is a corner, so each quadrant is one cell
    # (compared away from the blurred cell edges).
    top_left, top_right, bottom_right = out[4:12, 4:12], out[4:12, 20:28], out[20:28, 20:28]
    assert abs(top_left.mean() - bottom_right.mean()) < 5
    assert abs(top_left.mean() - top_right.mean()) > 200


def test_border_keypoints_are_kept(image: np.ndarray) -> None:
    kps = np.array([[0, 0, 10, 0], [109, 89, 10, 45], [-5, 50, 5, -1], [55, 95, 20, 300]])
    out = extract_patches(image, kps)
    assert out.shape == (4, 32, 32) and out.dtype == np.uint8
    # Reflect-101 padding: a corner patch mirrors the image instead of going black.
    assert out[0].min() > 0 or out[0].std() > 10


def test_large_keypoints_read_a_smoothed_pyramid_level() -> None:
    # Fine stripes (period 2 px) must average out in a 16x downsampled patch, not alias.
    stripes = np.tile(np.array([0, 255], np.uint8), (600, 300))
    out = extract_patches(stripes, [cv2.KeyPoint(300.0, 300.0, 512.0 / 6.0)])
    assert abs(float(out.mean()) - 127.5) < 10 and out.std() < 20


def test_bgr_input_equals_gray(image: np.ndarray) -> None:
    bgr = np.dstack([image, image, image])
    kps = [native(5, 6, 20.0)]
    np.testing.assert_array_equal(extract_patches(bgr, kps), extract_patches(image, kps))


def test_no_keypoints(image: np.ndarray) -> None:
    assert extract_patches(image, []).shape == (0, 32, 32)
    assert extract_patches(image, np.zeros((0, 4))).shape == (0, 32, 32)


def test_default_magnification_is_documented_value() -> None:
    assert DEFAULT_MAGNIFICATION > 0


@pytest.mark.parametrize(
    ("image", "error", "text"),
    [
        (np.zeros((10, 10), np.float32), TypeError, "uint8"),
        (np.zeros((10, 10, 2), np.uint8), ValueError, "(H, W, 3)"),
        (np.zeros((2, 10, 10, 3), np.uint8), ValueError, "shape"),
        (np.zeros((0, 10), np.uint8), ValueError, "empty"),
        ([[1, 2], [3, 4]], TypeError, "numpy"),
    ],
)
def test_bad_images(image: object, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        extract_patches(image, [cv2.KeyPoint(1, 1, 2)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keypoints", "error", "text"),
    [
        (np.zeros((3, 3)), ValueError, r"\(K, 2\) or \(K, 4\)"),
        (np.zeros(4), ValueError, r"\(K, 2\) or \(K, 4\)"),
        (np.array([[1.0, np.nan]]), ValueError, "NaN"),
        (np.array([[1.0, 1.0, 0.0, 0.0]]), ValueError, "positive"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
        ([cv2.KeyPoint(1, 1, 2), (1, 2)], TypeError, "mixes"),
    ],
)
def test_bad_keypoints(keypoints: object, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        extract_patches(np.zeros((20, 20), np.uint8), keypoints)  # type: ignore[arg-type]


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="magnification"):
        extract_patches(np.zeros((20, 20), np.uint8), [], magnification=0)
    with pytest.raises(ValueError, match="patch_size"):
        extract_patches(np.zeros((20, 20), np.uint8), [], patch_size=0)


def test_one_rounding_rule() -> None:
    from hardnet_export.geometry import to_uint8

    values = np.array([-3.0, 0.4, 0.5, 1.5, 2.5, 254.6, 300.0])
    np.testing.assert_array_equal(to_uint8(values), [0, 0, 0, 2, 2, 255, 255])  # half to even
    assert to_uint8(values).dtype == np.uint8


def test_one_antialiasing_rule() -> None:
    from hardnet_export.geometry import antialias_blur, antialias_sigma, patch_frame

    np.testing.assert_allclose(antialias_blur([0.5, 1.0, 2.0]), [0.0, 0.0, 0.5 * np.sqrt(3.0)])
    # Training frames: a 64-pixel support on a 32-pixel patch is 2 photo pixels per pixel.
    frames = patch_frame(np.array([[100.0, 100.0]]), 64.0)
    np.testing.assert_allclose(antialias_sigma(frames), antialias_blur(2.0))


def test_dataset_patches_are_resized_bilinearly() -> None:
    import cv2

    from hardnet_export.errors import InputError
    from hardnet_export.geometry import resize_patches

    big = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    expected = np.stack([cv2.resize(p, (32, 32), interpolation=cv2.INTER_LINEAR) for p in big])
    np.testing.assert_array_equal(resize_patches(big), expected)
    np.testing.assert_array_equal(resize_patches(expected), expected)  # 32x32 stays as it is
    with pytest.raises(InputError, match=r"\(N, S, S\) uint8"):
        resize_patches(big.astype(np.float32))
