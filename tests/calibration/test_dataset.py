from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hardnet_export._io import sha256_file
from hardnet_export.calibration.dataset import (
    CalibrationSet,
    load_calibration_set,
    make_calibration_set,
)


def test_builtin_set_is_reproducible_by_seed(calibration: CalibrationSet) -> None:
    again = make_calibration_set("builtin", size=256, seed=0)
    other = make_calibration_set("builtin", size=256, seed=1)
    assert calibration.patches.shape == (256, 32, 32) and calibration.patches.dtype == np.uint8
    assert again.sha256 == calibration.sha256
    np.testing.assert_array_equal(again.patches, calibration.patches)
    assert other.sha256 != calibration.sha256
    assert calibration.patches.std() > 10  # real texture, not a blank set


def test_save_and_load_keep_the_hash(calibration: CalibrationSet, tmp_path: Path) -> None:
    path = calibration.save(tmp_path / "calib.npy")
    assert sha256_file(path) == calibration.sha256
    loaded = load_calibration_set(path)
    assert loaded.sha256 == calibration.sha256
    # Drawing from the saved file with the same size uses it whole and keeps the hash.
    assert make_calibration_set(path, size=256).sha256 == calibration.sha256
    with pytest.raises(ValueError, match=r"\.npy"):
        calibration.save(tmp_path / "calib.bin")


def test_npy_source_is_sampled_by_seed_and_resized(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "big.npy"
    np.save(path, rng.integers(0, 256, (50, 64, 64), dtype=np.uint8))
    first = make_calibration_set(path, size=20, seed=3)
    assert first.patches.shape == (20, 32, 32)
    assert make_calibration_set(path, size=20, seed=3).sha256 == first.sha256
    assert make_calibration_set(path, size=20, seed=4).sha256 != first.sha256
    assert len(make_calibration_set(path, size=500)) == 50


def test_phototour_folder(tmp_path: Path) -> None:
    folder = tmp_path / "liberty"
    folder.mkdir()
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (1024, 1024), dtype=np.uint8)
    cv2.imwrite(str(folder / "patches0000.bmp"), tile)
    (folder / "info.txt").write_text("".join(f"{i // 2} 0\n" for i in range(30)))
    calib = make_calibration_set(folder, size=10, seed=0)
    assert calib.patches.shape == (10, 32, 32)
    first_patch = cv2.resize(tile[:64, :64], (32, 32), interpolation=cv2.INTER_AREA)
    full = make_calibration_set(folder, size=30)
    np.testing.assert_array_equal(full.patches[0], first_patch)


def test_hpatches_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("i_one", 3), ("v_two", 4)):
        (tmp_path / name).mkdir()
        cv2.imwrite(
            str(tmp_path / name / "ref.png"), rng.integers(0, 256, (n * 65, 65), dtype=np.uint8)
        )
    calib = make_calibration_set(tmp_path, size=100)
    assert calib.patches.shape == (7, 32, 32)


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (lambda p: p / "missing.npy", FileNotFoundError, "not found"),
        (
            lambda p: (p / "empty").mkdir() or p / "empty",
            ValueError,
            "neither PhotoTour .* nor HPatches",
        ),
        (
            lambda p: np.save(p / "f.npy", np.zeros((3, 32, 32), np.float32)) or p / "f.npy",
            ValueError,
            "uint8",
        ),
    ],
)
def test_bad_sources(tmp_path: Path, setup, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make_calibration_set(setup(tmp_path), size=4)


def test_bad_size_and_patches() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        make_calibration_set("builtin", size=0)
    with pytest.raises(ValueError, match="at least one"):
        CalibrationSet(np.zeros((0, 32, 32), np.uint8), "empty")
    with pytest.raises(ValueError, match=r"\(N, 32, 32\)"):
        CalibrationSet(np.zeros((2, 16, 16), np.uint8), "small")


def test_npz_given_as_npy_is_a_named_error(tmp_path) -> None:
    np.savez(tmp_path / "cal.npz", patches=np.zeros((4, 32, 32), np.uint8))
    (tmp_path / "cal.npz").rename(tmp_path / "cal.npy")
    with pytest.raises(ValueError, match=r"cal.npy is a .npz archive"):
        load_calibration_set(tmp_path / "cal.npy")


def test_empty_patches_are_a_named_error(tmp_path) -> None:
    # (5, 0, 0) reached cv2.resize and came back as an OpenCV assertion.
    np.save(tmp_path / "empty.npy", np.zeros((5, 0, 0), np.uint8))
    with pytest.raises(ValueError, match=r"empty.npy must hold .* with S >= 1, got \(5, 0, 0\)"):
        load_calibration_set(tmp_path / "empty.npy")
