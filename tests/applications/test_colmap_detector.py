"""`colmap-sift`: COLMAP's own SIFT as a detector, and its frames in OpenCV's convention.

The conversion is checked against what both libraries find on the same images: Gaussian
blobs whose centres are known to the pixel, and a built-in photo where OpenCV's SIFT and
COLMAP's SIFT detect many of the same blobs (OpenCV with ``enable_precise_upscale``, which
removes the quarter-pixel shift of its upsampled first octave).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardnet_export.applications.detection import (
    detect_colmap_frames,
    detect_keypoints,
    frames_to_keypoints,
    keypoints_to_frames,
)
from hardnet_export.errors import InputError, MissingDependencyError
from hardnet_export.geometry import as_gray

pycolmap = pytest.importorskip("pycolmap")

BLOBS = ((60, 50, 3.0), (150, 60, 5.0), (230, 120, 4.0), (80, 150, 6.0))


def blob_image() -> np.ndarray:
    """Bright Gaussian blobs (x, y, sigma) centred on pixels, in OpenCV's pixel convention."""
    yy, xx = np.mgrid[:200, :300]
    image = np.full((200, 300), 40.0)
    for x, y, sigma in BLOBS:
        image += 180 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.clip(image, 0, 255).astype(np.uint8)


def nearest(points: np.ndarray, to: tuple[float, float]) -> np.ndarray:
    return points[np.argmin(np.hypot(points[:, 0] - to[0], points[:, 1] - to[1]))]


def test_blob_centres_and_sizes_agree_with_opencv() -> None:
    image = blob_image()
    ours = frames_to_keypoints(detect_colmap_frames(image))
    sift = cv2.SIFT_create(enable_precise_upscale=True).detect(image, None)
    theirs = np.array([[k.pt[0], k.pt[1], k.size] for k in sift])
    for x, y, _sigma in BLOBS:
        mine, cv = nearest(ours, (x, y)), nearest(theirs, (x, y))
        # COLMAP says (x + 0.5, y + 0.5): the conversion must land on the pixel itself.
        assert np.hypot(mine[0] - x, mine[1] - y) < 0.05, (mine, x, y)
        assert np.hypot(cv[0] - x, cv[1] - y) < 0.05, (cv, x, y)
        assert mine[2] == pytest.approx(cv[2], rel=0.03)


def test_sizes_and_angles_agree_with_opencv_on_a_photo() -> None:
    from hardnet_export.data.builtin import load_photo

    photo = as_gray(load_photo("astronaut"))[:256, 128:384]
    ours = frames_to_keypoints(detect_colmap_frames(photo, max_keypoints=1000))
    sift = cv2.SIFT_create(contrastThreshold=0.02, enable_precise_upscale=True)
    theirs = np.array([[*k.pt, k.size, k.angle] for k in sift.detect(photo, None)])
    size_ratio, angle_error = [], []
    for x, y, size, angle in ours:
        same = theirs[np.hypot(theirs[:, 0] - x, theirs[:, 1] - y) < 0.3]
        same = same[np.abs(np.log(same[:, 2] / size)) < 0.1]
        if len(same):
            size_ratio.append(np.median(same[:, 2] / size))
            # A location can carry two orientations in each library: the closest one.
            angle_error.append(np.min(np.abs((same[:, 3] - angle + 180) % 360 - 180)))
    assert len(size_ratio) >= 50, len(size_ratio)
    assert np.median(size_ratio) == pytest.approx(1.0, abs=0.03)
    # A flipped sign or a 90-degree offset would put the median far from 0.
    assert np.median(angle_error) < 5.0 and np.mean(np.array(angle_error) < 10) > 0.8


def test_frames_and_keypoints_round_trip() -> None:
    keypoint = np.array([[10.0, 20.0, 8.0, 90.0]])
    frame = keypoints_to_frames(keypoint)
    # Scale 4, the frame's x axis along image +y (90 degrees, y down).
    np.testing.assert_allclose(frame, [[10.5, 20.5, 0.0, -4.0, 4.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(frames_to_keypoints(frame), keypoint, atol=1e-5)
    # FAST's "no orientation" is an upright frame, as its patch is.
    np.testing.assert_allclose(
        keypoints_to_frames(np.array([[3.0, 4.0, 7.0, -1.0]])), [[3.5, 4.5, 3.5, 0, 0, 3.5]]
    )
    frames = detect_colmap_frames(blob_image())
    np.testing.assert_allclose(keypoints_to_frames(frames_to_keypoints(frames)), frames, atol=1e-4)


def test_detector_gives_the_frames_colmaps_own_extraction_writes(tmp_path: Path) -> None:
    from hardnet_export.data.builtin import load_photo

    photo = as_gray(load_photo("camera"))
    assert cv2.imwrite(str(tmp_path / "a.png"), photo)
    options = pycolmap.FeatureExtractionOptions()
    options.sift.max_num_features = 300
    db_path = tmp_path / "sift.db"
    pycolmap.extract_features(
        db_path, tmp_path, ["a.png"], extraction_options=options, device=pycolmap.Device.cpu
    )
    db = pycolmap.Database.open(db_path)
    try:
        (image,) = db.read_all_images()
        written = db.read_keypoints(image.image_id)
    finally:
        db.close()
    assert written.shape[1] == 6 and len(written) >= 300  # extra orientations on top
    keypoints = detect_keypoints(photo, detector="colmap-sift", max_keypoints=300)
    as_array = np.array([[*k.pt, k.size, k.angle] for k in keypoints])
    np.testing.assert_allclose(keypoints_to_frames(as_array), written, atol=1e-3)
    assert {k.response for k in keypoints} == {1.0}


def test_bad_frames_and_a_missing_pycolmap_give_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InputError, match=r"frames must be a \(K, 6\) array, got shape \(3, 4\)"):
        frames_to_keypoints(np.zeros((3, 4)))
    with pytest.raises(InputError, match="keypoints must be finite"):
        keypoints_to_frames(np.array([[1.0, np.nan, 2.0, 0.0]]))
    monkeypatch.setitem(sys.modules, "pycolmap", None)
    with pytest.raises(MissingDependencyError, match=r"colmap-sift detector needs pycolmap: pip"):
        detect_keypoints(blob_image(), detector="colmap-sift")
