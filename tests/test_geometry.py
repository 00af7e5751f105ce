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
        (np.zeros((0, 0, 3), np.uint8), ValueError, "empty"),  # not cv2.error from cvtColor
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


# --- Keypoint bounds, and sampling time independent of keypoint values ---------------------


def _reference_extract_patches(
    image: np.ndarray, kps: np.ndarray, magnification: float, patch_size: int = 32
) -> np.ndarray:
    """extract_patches as it was before coordinates were folded: cv2.remap's own
    BORDER_REFLECT_101 on the raw sampling maps. The reference for bit-identical output."""
    from hardnet_export.geometry import PYRAMID_BLURS, antialias_blur

    gray = image
    out = np.empty((len(kps), patch_size, patch_size), np.uint8)
    scale = magnification * kps[:, 2] / patch_size
    levels = np.maximum(0, np.floor(np.log2(scale)).astype(int))
    pyramid = [gray]
    for _ in range(int(levels.max())):
        if min(pyramid[-1].shape) < 2:
            break
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    levels = np.minimum(levels, len(pyramid) - 1)
    factor = 2.0**levels
    residual = scale / factor
    sigma = antialias_blur(residual)
    blur = np.abs(sigma[:, None] - PYRAMID_BLURS[None, :]).argmin(1)
    theta = np.where(kps[:, 3] < 0, 0.0, np.deg2rad(kps[:, 3]))
    grid = np.arange(patch_size, dtype=np.float64) - (patch_size - 1) / 2.0
    du, dv = np.meshgrid(grid, grid)
    cx, cy = kps[:, 0] / factor, kps[:, 1] / factor
    cos = (residual * np.cos(theta))[:, None, None]
    sin = (residual * np.sin(theta))[:, None, None]
    # Each term rounded to float32, then added in float32 (geometry._SampleGrid).
    f32 = np.float32
    map_x = (cx[:, None, None] + cos * du).astype(f32) - (sin * dv).astype(f32)
    map_y = (cy[:, None, None] + sin * du).astype(f32) + (cos * dv).astype(f32)
    for level, level_blur in sorted({(int(a), int(b)) for a, b in zip(levels, blur, strict=True)}):
        idx = np.flatnonzero((levels == level) & (blur == level_blur))
        source = pyramid[level]
        if PYRAMID_BLURS[level_blur] > 0:
            source = cv2.GaussianBlur(
                source, (0, 0), float(PYRAMID_BLURS[level_blur]), borderType=cv2.BORDER_REFLECT_101
            )
        n = len(idx)
        sampled = cv2.remap(
            source,
            map_x[idx].reshape(n * patch_size, patch_size),
            map_y[idx].reshape(n * patch_size, patch_size),
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        out[idx] = sampled.reshape(n, patch_size, patch_size)
    return out


def _random_in_bound_keypoints(
    rng: np.random.Generator, height: int, width: int, magnification: float, k: int
) -> np.ndarray:
    from hardnet_export.geometry import _max_size

    size = rng.uniform(0.02, 1.0, k) * _max_size(height, width, magnification, 32)
    r = magnification * size / 2
    # Centres anywhere in the bound: inside, on and across the border, up to a radius out.
    x, y = rng.uniform(-r, width - 1 + r), rng.uniform(-r, height - 1 + r)
    return np.stack([x, y, size, rng.uniform(-1.0, 360.0, k)], 1)


@pytest.mark.parametrize("shape", [(90, 110), (1, 37), (37, 1), (1, 1), (2, 3), (5, 64), (33, 7)])
def test_folded_coordinates_give_bit_identical_patches(shape: tuple[int, int]) -> None:
    # Small images put many reflection periods under one patch; large magnifications too.
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    for magnification in (1.0, 6.0, DEFAULT_MAGNIFICATION, 64.0):
        kps = _random_in_bound_keypoints(rng, *shape, magnification, 60)
        expected = _reference_extract_patches(image, kps, magnification)
        np.testing.assert_array_equal(
            extract_patches(image, kps, magnification=magnification), expected
        )


def test_fold_reflect_101_reads_what_remap_reads_unfolded() -> None:
    from hardnet_export.geometry import fold_reflect_101

    rng = np.random.default_rng(5)
    for rows, cols in [(1, 1), (1, 9), (2, 2), (7, 3), (40, 50)]:
        image = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
        # Moderate coordinates (several periods either side), where remap's own border
        # handling is still quick: the reference.
        span = 4 * max(rows, cols)
        map_x = rng.uniform(-span, span, (64, 64)).astype(np.float32)
        map_y = rng.uniform(-span, span, (64, 64)).astype(np.float32)
        map_x[0, :8] = [-1, 0, cols - 1, cols, -0.5, cols - 0.5, 2 * cols, -2 * cols]
        args = {"interpolation": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_REFLECT_101}
        folded_x, folded_y = fold_reflect_101(map_x, cols), fold_reflect_101(map_y, rows)
        period = max(2 * (cols - 1), 1)
        assert folded_x.dtype == np.float32 and np.abs(folded_x).max() < period
        np.testing.assert_array_equal(
            cv2.remap(image, folded_x, folded_y, **args), cv2.remap(image, map_x, map_y, **args)
        )


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        ([10.0, 10.0, 1e30, 0.0], "size must be at most"),
        ([1e9, 1e9, 32 / DEFAULT_MAGNIFICATION, -1.0], "centre must lie in x [-16, 125]"),
        ([-1e300, 5.0, 2.0, 0.0], "centre must lie in x"),
    ],
)
def test_far_keypoints_are_rejected_at_once_naming_the_first(
    image: np.ndarray, bad: list[float], text: str
) -> None:
    import time

    from hardnet_export.errors import InputError

    kps = np.array([[20.0, 20.0, 3.0, 0.0], [30.0, 30.0, 3.0, 0.0], bad, bad])
    start = time.monotonic()
    with pytest.raises(InputError) as caught:
        extract_patches(image, kps)
    # Hang guard only: these took minutes (1e30) and 5-25 s (1e9) before the bound.
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "keypoint 2 is out of bounds" in message and "2 of 4 keypoints" in message
    assert text in message and "out_of_bounds='zero'" in message


def test_bound_edges() -> None:
    from hardnet_export.errors import InputError
    from hardnet_export.geometry import keypoints_in_bounds

    image = np.zeros((90, 110), np.uint8)  # H = 90, W = 110
    size, magnification = 4.0, 6.0  # support radius 12
    diagonal = float(np.hypot(110, 90))
    tiny = 1e-9
    inside = [
        [-12, 40, size, 0], [109 + 12, 40, size, 0], [50, -12, size, 0], [50, 89 + 12, size, 0],
        [-12, -12, size, 0], [50, 40, diagonal, 0],
    ]  # fmt: skip
    outside = [
        [-12 - tiny, 40, size, 0], [121 + tiny, 40, size, 0], [50, -12 - tiny, size, 0],
        [50, 101 + tiny, size, 0], [50, 40, np.nextafter(diagonal, np.inf), 0],
    ]  # fmt: skip
    kps = np.array(inside + outside, np.float64)
    mask = keypoints_in_bounds(image.shape, kps, magnification=magnification)
    assert mask.dtype == np.bool_ and mask.shape == (len(kps),)
    np.testing.assert_array_equal(mask, [True] * len(inside) + [False] * len(outside))
    assert extract_patches(image, np.array(inside), magnification=magnification).shape == (
        6,
        32,
        32,
    )
    for i, row in enumerate(outside):
        with pytest.raises(InputError, match="keypoint 0 is out of bounds"):
            extract_patches(image, np.array([row]), magnification=magnification)
        assert not keypoints_in_bounds((90, 110, 3), np.array([row]), magnification=magnification)[
            0
        ], i
    # (K, 2) keypoints get the native size, which is in bounds even on a 1x1 image.
    assert keypoints_in_bounds((1, 1), np.array([[0.0, 0.0], [16.0, 0.0]])).all()


def test_zero_option_keeps_out_of_bounds_keypoints_as_zero_patches(image: np.ndarray) -> None:
    from hardnet_export.geometry import extract_patches_with_mask, keypoints_in_bounds

    good = np.array([[20.0, 25.0, 3.0, 10.0], [-3.0, 88.0, 2.0, -1.0]])
    bad = np.array([[10.0, 10.0, 1e30, 0.0], [1e9, 1e9, 2.0, 0.0], [-1e300, 5.0, 2.0, 0.0]])
    kps = np.concatenate([bad[:1], good[:1], bad[1:], good[1:]])
    out, valid = extract_patches_with_mask(image, kps, out_of_bounds="zero")
    np.testing.assert_array_equal(valid, [False, True, False, False, True])
    np.testing.assert_array_equal(valid, keypoints_in_bounds(image.shape, kps))
    assert not out[~valid].any()
    np.testing.assert_array_equal(out[valid], extract_patches(image, good))
    np.testing.assert_array_equal(extract_patches(image, kps, out_of_bounds="zero"), out)
    assert extract_patches(image, bad, out_of_bounds="zero").shape == (3, 32, 32)


def test_malformed_keypoints_name_the_first_bad_one(image: np.ndarray) -> None:
    kps = np.array([[1.0, 2.0, 3.0, 0.0], [np.inf, 2.0, 3.0, 0.0], [1.0, np.nan, 3.0, 0.0]])
    with pytest.raises(ValueError, match=r"keypoint 1 is .*inf.*2 of 3"):
        extract_patches(image, kps, out_of_bounds="zero")  # malformed is never kept
    with pytest.raises(ValueError, match=r"positive: keypoint 0 .*size.*-2"):
        extract_patches(image, np.array([[1.0, 2.0, -2.0, 0.0]]))
    with pytest.raises(TypeError, match="numeric"):
        extract_patches(image, np.array([[1 + 2j, 3.0]]))


@pytest.mark.parametrize(
    ("value", "error"),
    [(0.0, ValueError), (-1.0, ValueError), (np.nan, ValueError), (np.inf, ValueError),
     (64.5, ValueError), (1e300, ValueError), ("12", TypeError), (True, TypeError),
     (None, TypeError)],
)  # fmt: skip
def test_bad_magnification(image: np.ndarray, value: object, error: type[Exception]) -> None:
    from hardnet_export.geometry import keypoints_in_bounds

    with pytest.raises(error, match="magnification"):
        extract_patches(image, [native(10, 10)], magnification=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="magnification"):
        keypoints_in_bounds(image.shape, [native(10, 10)], magnification=value)  # type: ignore[arg-type]


def test_largest_magnification_and_option_names(image: np.ndarray) -> None:
    assert extract_patches(image, [native(10, 10)], magnification=64.0).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="out_of_bounds must be one of reject, zero"):
        extract_patches(image, [native(10, 10)], out_of_bounds="clip")


def test_image_sides_beyond_remaps_limit_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 32766 pixels"):
        extract_patches(np.zeros((1, 32767), np.uint8), np.array([[0.0, 0.0]]))


# --- Vectorised extraction against the implementation it replaced -------------------------


def _sample_before_vectorising(
    gray: np.ndarray, kps: np.ndarray, magnification: float, patch_size: int
) -> np.ndarray:
    """geometry._sample as it was before extraction was vectorised (commit aa20b31): maps
    built as full (K, 32, 32) arrays, every group gathered and folded (with the float32
    addition of the u and v terms that came later). The reference the vectorised one must
    equal bit for bit.

    Shape:
        - gray: (H, W) uint8.
        - kps: (K, 4) float64, K >= 1, all in bounds.
        - Output: (K, patch_size, patch_size) uint8.
    """
    from hardnet_export.geometry import (
        _REMAP_MAX_SIDE,
        PYRAMID_BLURS,
        antialias_blur,
        fold_reflect_101,
    )

    out = np.empty((len(kps), patch_size, patch_size), np.uint8)
    scale = magnification * kps[:, 2] / patch_size  # source pixels per patch pixel
    # Level L halves the image L times; sampling there needs scale / 2**L < 2. (The maximum
    # keeps log2 away from 0 for sizes so small that scale underflows.)
    levels = np.floor(np.log2(np.maximum(scale, 1.0))).astype(int)
    pyramid = [gray]
    for _ in range(int(levels.max())):
        if min(pyramid[-1].shape) < 2:
            break
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    levels = np.minimum(levels, len(pyramid) - 1)
    factor = 2.0**levels
    residual = scale / factor  # source pixels per patch pixel at the chosen level
    # Anti-aliased as the training patches are; rounded to a few pre-blurred copies per level.
    sigma = antialias_blur(residual)
    blur = np.abs(sigma[:, None] - PYRAMID_BLURS[None, :]).argmin(1)
    theta = np.where(kps[:, 3] < 0, 0.0, np.deg2rad(kps[:, 3]))
    grid = np.arange(patch_size, dtype=np.float64) - (patch_size - 1) / 2.0
    du, dv = np.meshgrid(grid, grid)  # du varies along columns (x), dv along rows (y)
    # pyrDown output pixel i sits on input pixel 2i.
    cx, cy = kps[:, 0] / factor, kps[:, 1] / factor
    cos = (residual * np.cos(theta))[:, None, None]
    sin = (residual * np.sin(theta))[:, None, None]
    # Each term rounded to float32, then added in float32 (geometry._SampleGrid).
    f32 = np.float32
    map_x = (cx[:, None, None] + cos * du).astype(f32) - (sin * dv).astype(f32)
    map_y = (cy[:, None, None] + sin * du).astype(f32) + (cos * dv).astype(f32)
    # remap wants each output side below SHRT_MAX: at most this many patches per call.
    chunk = _REMAP_MAX_SIDE // patch_size
    for level, level_blur in sorted({(int(a), int(b)) for a, b in zip(levels, blur, strict=True)}):
        idx = np.flatnonzero((levels == level) & (blur == level_blur))
        source = pyramid[level]
        if PYRAMID_BLURS[level_blur] > 0:
            source = cv2.GaussianBlur(
                source, (0, 0), float(PYRAMID_BLURS[level_blur]), borderType=cv2.BORDER_REFLECT_101
            )
        rows, cols = source.shape
        for start in range(0, len(idx), chunk):
            part = idx[start : start + chunk]
            n = len(part)
            # Folded here, so remap's border handling never loops over many periods.
            sampled = cv2.remap(
                source,
                fold_reflect_101(map_x[part], cols).reshape(n * patch_size, patch_size),
                fold_reflect_101(map_y[part], rows).reshape(n * patch_size, patch_size),
                interpolation=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT_101,
            )
            out[part] = sampled.reshape(n, patch_size, patch_size)
    return out


def _varied_keypoints(
    rng: np.random.Generator, height: int, width: int, k: int, magnification: float
) -> np.ndarray:
    """Rotated (and upright, angle -1), tiny to image-sized, inside and across the border,
    at float coordinates: every pyramid level and pre-blur."""
    size = np.exp(rng.uniform(np.log(0.3), np.log(np.hypot(width, height) / 2), k))
    r = magnification * size / 2
    x, y = rng.uniform(-r, width - 1 + r), rng.uniform(-r, height - 1 + r)
    angle = np.where(rng.random(k) < 0.2, -1.0, rng.uniform(0.0, 360.0, k))
    return np.stack([x, y, size, angle], 1)


@pytest.mark.parametrize("channels", [0, 3])
def test_vectorised_extraction_equals_the_previous_one(channels: int) -> None:
    from hardnet_export.geometry import as_gray, extract_patches_with_mask

    rng = np.random.default_rng(15 + channels)
    shape = (70, 90) if channels == 0 else (70, 90, channels)
    image = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1.0)
    kps = _varied_keypoints(rng, 70, 90, 400, DEFAULT_MAGNIFICATION)
    expected = _sample_before_vectorising(as_gray(image), kps, DEFAULT_MAGNIFICATION, 32)
    np.testing.assert_array_equal(extract_patches(image, kps), expected)
    # The zero option's path (a subset sampled) and other magnifications and patch sizes.
    far = np.array([[1e6, 1e6, 2.0, 0.0]])
    out, valid = extract_patches_with_mask(
        image, np.concatenate([kps[:50], far]), out_of_bounds="zero"
    )
    np.testing.assert_array_equal(out[:50], expected[:50])
    assert not valid[50] and not out[50].any()
    for magnification, patch_size in ((3.0, 32), (40.0, 16), (6.0, 7)):
        some = _varied_keypoints(rng, 70, 90, 80, magnification)
        np.testing.assert_array_equal(
            extract_patches(image, some, magnification=magnification, patch_size=patch_size),
            _sample_before_vectorising(as_gray(image), some, magnification, patch_size),
        )


def test_vectorised_extraction_of_sift_keypoints_of_a_photo() -> None:
    import skimage.data

    from hardnet_export.geometry import as_gray

    bgr = cv2.resize(skimage.data.coffee()[:, :, ::-1], (240, 160), interpolation=cv2.INTER_AREA)
    gray = as_gray(bgr)
    kps = cv2.SIFT_create(nfeatures=300).detect(gray, None)
    as_array = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in kps])
    expected = _sample_before_vectorising(gray, as_array, DEFAULT_MAGNIFICATION, 32)
    np.testing.assert_array_equal(extract_patches(bgr, kps), expected)


def test_one_group_larger_than_a_remap_call() -> None:
    # 1100 keypoints of one level and blur: several remap calls (pieces of 256 patches),
    # some on a reflection-folded border and some not.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    k = 1100
    kps = np.stack(
        [rng.uniform(-16, 45, k), rng.uniform(-16, 35, k), np.full(k, 4.0), rng.uniform(0, 360, k)],
        1,
    )
    np.testing.assert_array_equal(
        extract_patches(image, kps, magnification=8.0),
        _sample_before_vectorising(image, kps, 8.0, 32),
    )


@pytest.mark.parametrize(("cpus", "opencv_threads"), [(1, 4), (2, 4), (5, 8), (5, 1), (5, 3)])
def test_pieces_on_any_number_of_threads_give_the_same_patches(
    monkeypatch: pytest.MonkeyPatch, cpus: int, opencv_threads: int
) -> None:
    # 1,100 keypoints over every level and blur: many pieces, on worker threads or inline;
    # as many workers as CPUs and OpenCV's threads allow (one: none).
    from hardnet_export import geometry

    rng = np.random.default_rng(8)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 150), dtype=np.uint8), (0, 0), 1.0)
    kps = _varied_keypoints(rng, 120, 150, 1100, DEFAULT_MAGNIFICATION)
    expected = _sample_before_vectorising(image, kps, DEFAULT_MAGNIFICATION, 32)
    monkeypatch.setattr(geometry, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(geometry, "_pool", None)
    before = cv2.getNumThreads()
    cv2.setNumThreads(opencv_threads)
    try:
        np.testing.assert_array_equal(extract_patches(image, kps), expected)
    finally:
        cv2.setNumThreads(before)
    workers = min(cpus, opencv_threads, geometry._MAX_WORKERS)
    assert (geometry._pool is None) == (workers == 1)
    if workers > 1:
        assert geometry._pool is not None
        assert geometry._pool[1]._max_workers == workers


def test_a_forked_child_cuts_patches_with_its_own_workers() -> None:
    # The parent's workers do not survive fork: the child must not queue work to them.
    import multiprocessing

    from hardnet_export import geometry

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    kps = _varied_keypoints(rng, 60, 80, 700, DEFAULT_MAGNIFICATION)
    expected = extract_patches(image, kps)
    parent_pool = geometry._pool
    with multiprocessing.get_context("fork").Pool(1) as children:
        got = children.apply_async(extract_patches, (image, kps)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)
    assert geometry._pool is parent_pool
