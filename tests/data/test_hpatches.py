"""HPatches readers against sequence folders written here as stacked 65-px PNGs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardnet_export.data.hpatches import (
    IMAGE_NAMES,
    SPLITS,
    hpatches_patchset,
    list_sequences,
    read_sequence,
    split_sequences,
)


def _write_sequence(
    folder: Path, n: int, images: Sequence[str] = IMAGE_NAMES, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in images:
        stack = rng.integers(0, 256, (n, 65, 65), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"{name}.png"), stack.reshape(n * 65, 65))
        written[name] = stack
    return written


def test_read_sequence_reads_back_exactly(tmp_path: Path) -> None:
    written = _write_sequence(tmp_path / "i_ajuntament", n=3)
    got = read_sequence(tmp_path / "i_ajuntament")
    assert list(got) == list(IMAGE_NAMES) and len(IMAGE_NAMES) == 16
    for name in IMAGE_NAMES:
        assert got[name].shape == (3, 65, 65) and got[name].dtype == np.uint8
        np.testing.assert_array_equal(got[name], written[name])


def test_read_sequence_subset_of_images(tmp_path: Path) -> None:
    written = _write_sequence(tmp_path / "v_yuri", n=2, images=("ref", "h3"))
    got = read_sequence(tmp_path / "v_yuri", images=("h3",))
    assert list(got) == ["h3"]
    np.testing.assert_array_equal(got["h3"], written["h3"])


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        ("missing", FileNotFoundError, r"missing HPatches image .*e3\.png"),
        ("width", ValueError, r"e3\.png must be 65 px wide, got 64"),
        ("height", ValueError, r"e3\.png must be a multiple of 65 px tall.*got 131"),
        ("count", ValueError, r"e3\.png holds 2 patches but ref\.png holds 3"),
        ("corrupt", ValueError, r"cannot decode .*e3\.png"),
        ("colour", ValueError, r"e3\.png is a colour image"),
    ],
)
def test_bad_image_is_named(tmp_path: Path, damage: str, error: type, message: str) -> None:
    folder = tmp_path / "i_dc"
    _write_sequence(folder, n=3)
    path = folder / "e3.png"
    if damage == "missing":
        path.unlink()
    elif damage == "width":
        cv2.imwrite(str(path), np.zeros((195, 64), np.uint8))
    elif damage == "height":
        cv2.imwrite(str(path), np.zeros((131, 65), np.uint8))
    elif damage == "count":
        cv2.imwrite(str(path), np.zeros((130, 65), np.uint8))
    elif damage == "corrupt":
        path.write_bytes(path.read_bytes()[:30])
    elif damage == "colour":
        cv2.imwrite(str(path), np.zeros((195, 65, 3), np.uint8) + np.array([0, 0, 9], np.uint8))
    with pytest.raises(error, match=message):
        read_sequence(folder)


def test_grey_stored_as_rgb_is_accepted(tmp_path: Path) -> None:
    written = _write_sequence(tmp_path / "i_dc", n=2, images=("ref",))
    cv2.imwrite(
        str(tmp_path / "i_dc" / "ref.png"),
        cv2.cvtColor(written["ref"].reshape(130, 65), cv2.COLOR_GRAY2BGR),
    )
    np.testing.assert_array_equal(read_sequence(tmp_path / "i_dc", ("ref",))["ref"], written["ref"])


def test_missing_sequence_folder_and_bad_image_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="i_nope"):
        read_sequence(tmp_path / "i_nope")
    _write_sequence(tmp_path / "i_dc", n=1, images=("ref",))
    with pytest.raises(ValueError, match="unknown HPatches image"):
        read_sequence(tmp_path / "i_dc", images=("ref", "x1"))
    with pytest.raises(TypeError, match="string"):
        read_sequence(tmp_path / "i_dc", images="ref")


def test_standard_splits_match_the_benchmark() -> None:
    full = set(split_sequences("full", "test"))
    assert len(full) == 116
    illum, view = split_sequences("illum", "test"), split_sequences("view", "test")
    assert len(illum) == 57 and all(s.startswith("i_") for s in illum)
    assert len(view) == 59 and all(s.startswith("v_") for s in view)
    assert split_sequences("illum", "train") == view and split_sequences("view", "train") == illum
    assert split_sequences("full", "train") == ()
    for split in "abc":
        test, train = split_sequences(split, "test"), split_sequences(split, "train")
        assert len(test) == 40 and len(train) == 76
        assert set(test) | set(train) == full and not set(test) & set(train)
        assert sum(s.startswith("i_") for s in test) == 20
    # Spot checks against hpatches-benchmark's splits.json.
    assert {"i_ajuntament", "i_nijmegen", "v_busstop", "v_courses"} <= set(SPLITS["a"]["test"])
    assert {"i_fruits", "v_war", "v_astronautis"} <= set(SPLITS["b"]["test"])
    assert {"i_ski", "i_crownnight", "v_wounded", "v_azzola"} <= set(SPLITS["c"]["test"])
    assert "i_ajuntament" in SPLITS["b"]["train"] and "i_ajuntament" in SPLITS["c"]["train"]
    with pytest.raises(ValueError, match="unknown HPatches split"):
        split_sequences("d")
    with pytest.raises(ValueError, match="subset"):
        split_sequences("a", "val")


def test_list_sequences_requires_every_sequence(tmp_path: Path) -> None:
    for name in split_sequences("view", "test"):
        (tmp_path / name).mkdir()
    got = list_sequences(tmp_path, "view")
    assert [p.name for p in got] == list(split_sequences("view", "test"))
    assert all(p.parent == tmp_path for p in got)
    (tmp_path / "v_yuri").rmdir()
    with pytest.raises(FileNotFoundError, match="lacks 1 of the 59 sequences.*v_yuri"):
        list_sequences(tmp_path, "view")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_sequences(tmp_path / "absent")


def test_hpatches_patchset_labels_physical_patches(tmp_path: Path) -> None:
    names = split_sequences("a", "train")
    images = ("ref", "e1", "t5")
    written = {
        name: _write_sequence(tmp_path / name, n=1 + i % 3, images=images, seed=i)
        for i, name in enumerate(names)
    }
    ps = hpatches_patchset(tmp_path, "a", "train", images=images)
    assert ps.name == "hpatches-a-train"
    total = sum(len(w["ref"]) for w in written.values())
    assert ps.patches.shape == (total * len(images), 65, 65)
    assert len(np.unique(ps.labels)) == total
    assert (np.bincount(ps.labels) == len(images)).all()
    # Walk the documented layout: by sequence, then image, then row.
    at, label = 0, 0
    for name in names:
        n = len(written[name]["ref"])
        for image in images:
            np.testing.assert_array_equal(ps.patches[at : at + n], written[name][image])
            np.testing.assert_array_equal(ps.labels[at : at + n], np.arange(label, label + n))
            at += n
        label += n


def test_hpatches_patchset_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no train sequences"):
        hpatches_patchset(tmp_path, "full", "train")
    with pytest.raises(ValueError, match="at least one"):
        hpatches_patchset(tmp_path, "a", "train", images=())
    with pytest.raises(FileNotFoundError, match="lacks 76 of the 76"):
        hpatches_patchset(tmp_path, "a", "train")


def test_a_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    from fixture_files import bomb_headers

    from hardnet_export.imagefile import MAX_IMAGE_PIXELS_ENV, ImageTooLargeError

    folder = tmp_path / "i_dc"
    _write_sequence(folder, n=3)
    (folder / "e3.png").write_bytes(bomb_headers(30000, 30000)["png"])
    with pytest.raises(ValueError, match=r"e3\.png must be 65 px wide, got 30000"):
        read_sequence(folder)
    # 65 px wide and 3,000,000 tall: the pixel limit, raised only by the environment.
    (folder / "e3.png").write_bytes(bomb_headers(65, 3_000_000)["png"])
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"e3\.png is 65x3000000") as info:
        read_sequence(folder)
    assert time.perf_counter() - started < 1.0
    assert str(info.value).endswith(f"the environment variable {MAX_IMAGE_PIXELS_ENV}")
