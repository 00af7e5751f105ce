"""Keypoints outside the image bound through ``compute``, ``describe_image``, the .npz and
the CLI: rejected at once by default, kept as zero descriptors (flagged) on request."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixture_files import run_cli

from hardnet_export import runtime
from hardnet_export.errors import InputError
from hardnet_export.runtime.base import Describer
from hardnet_export.shipped import SHIPPED_ONNX

FAR = np.array([[10.0, 10.0, 1e30, 0.0], [1e9, 1e9, 2.0, 0.0]])


@pytest.fixture(scope="module")
def describer() -> Describer:
    return runtime.load(backend="onnxruntime", device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    noise = np.random.default_rng(2).normal(0, 1, (80, 100)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def good_keypoints() -> np.ndarray:
    return np.array([[30.0, 40.0, 4.0, 20.0], [0.0, 79.0, 3.0, -1.0], [99.0, 0.0, 6.0, 300.0]])


@pytest.mark.parametrize("far", range(len(FAR)))
def test_compute_rejects_far_keypoints_at_once(
    describer: Describer, image: np.ndarray, far: int
) -> None:
    kps = np.concatenate([good_keypoints(), FAR[far : far + 1]])
    start = time.monotonic()
    with pytest.raises(InputError, match=r"keypoint 3 is out of bounds.*1 of 4 keypoints"):
        describer.compute(image, kps)
    assert time.monotonic() - start < 10  # hang guard: minutes (1e30) and 5-25 s (1e9) before


def test_compute_zero_option_gives_zero_rows(describer: Describer, image: np.ndarray) -> None:
    good = good_keypoints()
    kps = np.concatenate([FAR[:1], good, FAR[1:]])
    given, desc = describer.compute(image, kps, out_of_bounds="zero")
    assert given is kps and desc.shape == (5, 128) and desc.dtype == np.float32
    assert not desc[[0, 4]].any()
    np.testing.assert_allclose(np.linalg.norm(desc[1:4], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(desc[1:4], describer.compute(image, good)[1], atol=1e-6)
    with pytest.raises(ValueError, match="magnification must be <= 64"):
        describer.compute(image, good, magnification=65.0)


def test_zero_option_flags_invalid_rows_in_the_npz(
    describer: Describer, image: np.ndarray, tmp_path: Path
) -> None:
    from hardnet_export.applications.features import describe_image, save_features

    kps = np.concatenate([good_keypoints(), FAR])
    with pytest.raises(InputError, match="keypoint 3"):
        describe_image(describer, image, keypoints=kps)
    features = describe_image(describer, image, keypoints=kps, out_of_bounds="zero")
    detected = describe_image(describer, image, max_keypoints=20)
    path = save_features(tmp_path / "f.npz", ["a.png", "b.png"], [features, detected])
    data = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(data["valid_0"], [True, True, True, False, False])
    assert data["valid_0"].dtype == np.bool_ and data["valid_1"].all()
    assert len(data["valid_1"]) == len(data["keypoints_1"])
    assert not data["descriptors_0"][3:].any()
    np.testing.assert_array_equal(data["keypoints_0"][:, :2], kps[:, :2].astype(np.float32))


@pytest.mark.slow
def test_cli_bad_keypoints_file_is_one_error_line(image: np.ndarray, tmp_path: Path) -> None:
    photo, bad = tmp_path / "a.png", tmp_path / "bad.npy"
    cv2.imwrite(str(photo), image)
    np.save(bad, np.concatenate([good_keypoints(), FAR]))
    model = ("--model", str(SHIPPED_ONNX), "--device", "cpu")
    refused = tmp_path / "x.npz"
    result = run_cli("describe", str(photo), *model, "--keypoints", str(bad), "-o", str(refused))
    assert result.returncode == 1 and not refused.exists(), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(bad) in lines[0] and str(photo) in lines[0] and "keypoint 3" in lines[0]
    assert "2 of 5 keypoints" in lines[0] and "--out-of-bounds zero" in lines[0]

    out = tmp_path / "f.npz"
    result = run_cli(
        "describe", str(photo), *model, "--keypoints", str(bad), "--out-of-bounds", "zero",
        "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "5 keypoints (2 out of bounds, zero descriptors)" in result.stdout
    data = np.load(out, allow_pickle=False)
    np.testing.assert_array_equal(data["valid_0"], [True, True, True, False, False])

    result = run_cli("describe", str(photo), *model, "--out-of-bounds", "clip", "-o", str(out))
    assert result.returncode == 1 and "reject, zero" in result.stderr, result.stderr
