"""A detector's support: the square its keypoints are described from.

``colmap-sift`` keypoints are described from ``max(6 x size, 24 px)`` whatever the describer's
magnification; the keypoints written out keep COLMAP's sizes; given keypoints and the other
detectors keep the describer's ``magnification x size``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.applications.detection import (
    DETECTORS,
    SUPPORTS,
    Support,
    detect_keypoints,
    support_keypoints,
)
from hardnet_export.applications.features import describe_image, prepare_image
from hardnet_export.applications.matching import describe_with
from hardnet_export.errors import InputError
from hardnet_export.geometry import extract_patches, keypoints_to_array

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from hardnet_export.data.builtin import load_photo
    from hardnet_export.geometry import as_gray

    return as_gray(load_photo("camera"))


def test_rule_gives_the_side_at_any_magnification() -> None:
    rule = SUPPORTS["colmap-sift"]
    kps = np.array([[10.0, 20.0, 2.0, 30.0], [50.0, 60.0, 10.0, -1.0]])
    for magnification in (12.0, 6.0, 20.0):
        sized = support_keypoints(kps, "colmap-sift", magnification)
        side = magnification * sized[:, 2]
        expected = np.maximum(rule.per_size * kps[:, 2], rule.min_px)
        np.testing.assert_allclose(side, expected)
        # Only the size changes.
        np.testing.assert_array_equal(sized[:, [0, 1, 3]], kps[:, [0, 1, 3]])
    assert rule == Support(per_size=6.0, min_px=24.0)
    # The smallest keypoints get the floor, the large ones their own multiple.
    np.testing.assert_allclose(12.0 * support_keypoints(kps, "colmap-sift", 12.0)[:, 2], [24, 60])


@pytest.mark.parametrize("detector", [d for d in DETECTORS if d not in SUPPORTS])
def test_other_detectors_keep_the_describers_support(detector: str) -> None:
    kps = np.array([[10.0, 20.0, 2.0, 30.0]])
    sized = support_keypoints(kps, detector, 12.0)
    np.testing.assert_array_equal(sized, kps)
    assert sized is not kps  # a copy: the caller may change it


def test_bad_keypoints_give_one_clear_line() -> None:
    with pytest.raises(InputError, match=r"keypoints must be a \(K, 4\) array"):
        support_keypoints(np.zeros((3, 2)), "colmap-sift", 12.0)
    with pytest.raises(InputError, match="finite"):
        support_keypoints(np.array([[1.0, 2.0, np.nan, 0.0]]), "colmap-sift", 12.0)


def test_detected_colmap_keypoints_are_cut_from_the_support(photo: np.ndarray) -> None:
    pytest.importorskip("pycolmap")
    magnification = 12.0
    prepared = prepare_image(
        photo, magnification=magnification, detector="colmap-sift", max_keypoints=300
    )
    found = keypoints_to_array(
        detect_keypoints(photo, detector="colmap-sift", max_keypoints=300), default_size=1.0
    )
    # The keypoints kept are COLMAP's own (written to features files and databases).
    np.testing.assert_allclose(prepared.keypoints, found)
    rule = SUPPORTS["colmap-sift"]
    floored = rule.per_size * found[:, 2] < rule.min_px
    assert floored.any() and not floored.all()  # both sides of the rule are exercised
    cut = support_keypoints(found, "colmap-sift", magnification)
    expected = extract_patches(photo, cut, magnification=magnification, out_of_bounds="zero")
    np.testing.assert_array_equal(prepared.patches[prepared.valid], expected[prepared.valid])
    plain = extract_patches(photo, found, magnification=magnification, out_of_bounds="zero")
    assert not np.array_equal(prepared.patches, plain)


def test_given_keypoints_keep_the_describers_support(photo: np.ndarray) -> None:
    kps = np.array([[100.0, 120.0, 2.5, 10.0], [200.0, 220.0, 8.0, 90.0]])
    prepared = prepare_image(photo, magnification=12.0, detector="colmap-sift", keypoints=kps)
    np.testing.assert_array_equal(prepared.patches, extract_patches(photo, kps))


def test_every_path_describes_colmap_keypoints_alike(photo: np.ndarray) -> None:
    """describe_image (describe, extract, colmap) and match's describe_with give the same
    descriptors at the same COLMAP keypoints."""
    pytest.importorskip("pycolmap")
    describer = runtime.load("hardnet-eighth", backend="onnxruntime")
    _, described = describe_image(describer, photo, detector="colmap-sift", max_keypoints=200)
    kps = detect_keypoints(photo, detector="colmap-sift", max_keypoints=200)
    matched = describe_with(describer, photo, kps, "colmap-sift")
    np.testing.assert_allclose(matched, described, atol=1e-6)
    # Without the detector, describe_with cuts magnification x size: other patches.
    plain = describe_with(describer, photo, kps)
    assert np.abs(plain - matched).max() > 0.1
    # OpenCV's SIFT descriptor has no magnification: the detector changes nothing there.
    from hardnet_export.applications.matching import OpenCVSift

    sift = OpenCVSift()
    np.testing.assert_array_equal(
        describe_with(sift, photo, kps, "colmap-sift"), sift.compute(photo, kps)[1]
    )
    assert isinstance(kps[0], cv2.KeyPoint)
