"""Built-in frames of the per-image benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardnet_export.benchmark.frame import BUILTIN_FRAMES, frame_image, sift_keypoints
from hardnet_export.errors import MissingFileError
from hardnet_export.geometry import as_gray


def test_large_frame_has_keypoints_for_the_8000_row() -> None:
    large = frame_image("builtin:large")
    assert large.shape == (1280, 1600) and large.dtype == np.uint8
    assert len(sift_keypoints(large, 8000)) == 8000
    # Held-out photos only: the four quarters are the four validation photos.
    assert not np.array_equal(large[:640, :800], large[:640, 800:])


def test_named_frames_and_files(tmp_path: Path) -> None:
    import cv2

    assert set(BUILTIN_FRAMES) == {"builtin:frame", "builtin:large"}
    assert frame_image("builtin:frame").shape == (640, 800, 3)
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), np.full((40, 50), 7, np.uint8))
    assert as_gray(frame_image(path)).shape == (40, 50)
    with pytest.raises(MissingFileError, match="nope.png"):
        frame_image(tmp_path / "nope.png")


def test_interleaved_rounds_time_every_describer_beside_sift() -> None:
    from hardnet_export import runtime
    from hardnet_export.benchmark.frame import interleaved_compute_times
    from hardnet_export.errors import InputError

    frame = frame_image("builtin:frame")
    describer = runtime.load("hardnet-eighth", backend="onnxruntime", device="cpu")
    result = interleaved_compute_times(frame, [("eighth", describer)], 100, rounds=4)
    assert result["rounds"] == 4 and result["keypoints"] == 100
    assert len(result["sift_ms"]) == 4 and min(result["sift_ms"]) > 0
    target = result["targets"]["eighth"]
    assert len(target["ms"]) == 4 and target["ms_p50"] > 0
    # The ratio is a median of per-round ratios, so it lies within their range.
    ratios = np.asarray(target["ms"]) / np.asarray(result["sift_ms"])
    assert ratios.min() <= target["vs_sift"] <= ratios.max()
    with pytest.raises(InputError, match="distinct and not 'SIFT'"):
        interleaved_compute_times(frame, [("SIFT", describer)], 10, rounds=3)
    with pytest.raises(InputError, match="rounds"):
        interleaved_compute_times(frame, [("eighth", describer)], 10, rounds=1)
