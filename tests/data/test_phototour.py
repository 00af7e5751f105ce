"""PhotoTour readers against fixtures written here in the dataset's exact on-disk layout."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardnet_export.data.phototour import read_matches, read_phototour

# Two tiles: a full one (256 patches) and a partly empty last one (44 patches).
NUM_PATCHES = 300


def _write_tiles(folder: Path, patches: np.ndarray) -> None:
    tiles = -(-len(patches) // 256)
    padded = np.zeros((tiles * 256, 64, 64), np.uint8)
    padded[: len(patches)] = patches
    for t in range(tiles):
        grid = padded[t * 256 : (t + 1) * 256].reshape(16, 16, 64, 64)
        tile = grid.transpose(0, 2, 1, 3).reshape(1024, 1024)
        assert cv2.imwrite(str(folder / f"patches{t:04d}.bmp"), tile)


def _write_subset(root: Path, name: str = "liberty", num: int = NUM_PATCHES):
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, (num, 64, 64), dtype=np.uint8)
    labels = np.repeat(np.arange(num // 3, dtype=np.int64), 3)[:num]
    folder = root / name
    folder.mkdir(parents=True)
    _write_tiles(folder, patches)
    (folder / "info.txt").write_text("".join(f"{p} 0\n" for p in labels))
    return folder, patches, labels


def _write_m50(folder: Path, rows: list[tuple[int, int, int, int]], name: str) -> Path:
    path = folder / name
    path.write_text("".join(f"{i} {pi} 0 {j} {pj} 0\n" for i, pi, j, pj in rows))
    return path


@pytest.fixture
def subset(tmp_path: Path):
    return _write_subset(tmp_path)


def test_reads_back_exactly_what_was_written(subset) -> None:
    folder, patches, labels = subset
    ps = read_phototour(folder.parent, "liberty")
    assert ps.name == "liberty"
    assert ps.patches.shape == (NUM_PATCHES, 64, 64) and ps.patches.dtype == np.uint8
    assert ps.labels.dtype == np.int64
    np.testing.assert_array_equal(ps.patches, patches)
    np.testing.assert_array_equal(ps.labels, labels)


def test_patch_order_is_row_major_within_a_tile(tmp_path: Path) -> None:
    # A tile drawn by hand: patch k is filled with value k, so position errors show as values.
    folder = tmp_path / "yosemite"
    folder.mkdir()
    tile = np.zeros((1024, 1024), np.uint8)
    for k in range(20):
        row, col = divmod(k, 16)
        tile[row * 64 : (row + 1) * 64, col * 64 : (col + 1) * 64] = k
    cv2.imwrite(str(folder / "patches0000.bmp"), tile)
    (folder / "info.txt").write_text("".join(f"{k} 0\n" for k in range(20)))
    ps = read_phototour(tmp_path, "yosemite")
    assert [int(p[0, 0]) for p in ps.patches] == list(range(20))
    assert all((p == p[0, 0]).all() for p in ps.patches)


def test_crlf_and_no_final_newline_are_accepted(subset) -> None:
    folder, _, labels = subset
    (folder / "info.txt").write_bytes("\r\n".join(f"{p} 7" for p in labels).encode())
    np.testing.assert_array_equal(read_phototour(folder.parent, "liberty").labels, labels)


def test_matches_use_fields_0_1_3_4(subset) -> None:
    folder, _, _ = subset
    _write_m50(folder, [(0, 0, 1, 0), (3, 1, 299, 99), (5, 1, 4, 1)], "m50_100000_100000_0.txt")
    # Field 2 and 5 are unused and may hold anything.
    (folder / "m50_2_2_0.txt").write_text("10 3 999 11 3 -5\n12 4 1 200 66 2\n")
    np.testing.assert_array_equal(
        read_matches(folder.parent, "liberty"), [[0, 1, 1], [3, 299, 0], [5, 4, 1]]
    )
    got = read_matches(folder.parent, "liberty", "m50_2_2_0.txt")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [[10, 11, 1], [12, 200, 0]])


def test_torchvision_cache(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    patches = rng.integers(0, 256, (10, 64, 64), dtype=np.uint8)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], np.int64)
    matches = np.array([[0, 1, 1], [2, 9, 0]], np.int64)
    torch.save(
        (torch.from_numpy(patches), torch.from_numpy(labels), torch.from_numpy(matches)),
        tmp_path / "notredame.pt",
    )
    ps = read_phototour(tmp_path, "notredame")
    np.testing.assert_array_equal(ps.patches, patches)
    np.testing.assert_array_equal(ps.labels, labels)
    np.testing.assert_array_equal(read_matches(tmp_path, "notredame"), matches)
    with pytest.raises(FileNotFoundError, match="notredame"):
        read_matches(tmp_path, "notredame", "m50_2_2_0.txt")  # the cache has only the 100k set


def test_folder_wins_over_cache(subset) -> None:
    torch = pytest.importorskip("torch")
    folder, patches, _ = subset
    (folder.parent / "liberty.pt").write_bytes(b"not a cache")
    np.testing.assert_array_equal(read_phototour(folder.parent, "liberty").patches, patches)
    del torch


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("list", "tuple"),
        ("pair", "length 2"),
        ("float_patches", "patches must be a 3-D torch.uint8"),
        ("small_patches", r"\(N, 64, 64\)"),
        ("short_labels", "labels must be"),
        ("int32_labels", "labels must be a 1-D torch.int64"),
        ("matches_cols", r"\(M, 3\)"),
        ("matches_range", "patch ids"),
        ("garbage", "cannot load"),
    ],
)
def test_bad_cache_is_refused(tmp_path: Path, content: str, message: str) -> None:
    torch = pytest.importorskip("torch")
    p = torch.zeros(4, 64, 64, dtype=torch.uint8)
    lab = torch.zeros(4, dtype=torch.int64)
    m = torch.zeros(2, 3, dtype=torch.int64)
    obj: object = {
        "list": {"a": p},
        "pair": (p, lab),
        "float_patches": (p.float(), lab, m),
        "small_patches": (p[:, :32, :32], lab, m),
        "short_labels": (p, lab[:3], m),
        "int32_labels": (p, lab.int(), m),
        "matches_cols": (p, lab, m[:, :2]),
        "matches_range": (p, lab, m + 4),
    }.get(content)
    path = tmp_path / "liberty.pt"
    if content == "garbage":
        path.write_bytes(b"\x00garbage")
    else:
        torch.save(obj, path)
    with pytest.raises(ValueError, match=message) as info:
        read_phototour(tmp_path, "liberty")
    assert "liberty.pt" in str(info.value)


def test_missing_subset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"liberty.*liberty\.pt"):
        read_phototour(tmp_path, "liberty")
    with pytest.raises(FileNotFoundError, match="liberty"):
        read_matches(tmp_path, "liberty")


def test_missing_info(subset) -> None:
    folder, _, _ = subset
    (folder / "info.txt").unlink()
    with pytest.raises(FileNotFoundError, match="info.txt"):
        read_phototour(folder.parent, "liberty")


def test_gap_in_tile_numbering(tmp_path: Path) -> None:
    folder, _, _ = _write_subset(tmp_path, num=600)
    (folder / "patches0001.bmp").unlink()
    with pytest.raises(FileNotFoundError, match="patches0001.bmp"):
        read_phototour(tmp_path, "liberty")


def test_too_few_tiles_for_info(subset) -> None:
    folder, _, labels = subset
    with open(folder / "info.txt", "a") as f:  # 300 + 300 patches need 3 tiles, 2 exist
        f.write("".join(f"{p} 0\n" for p in labels))
    with pytest.raises(FileNotFoundError, match=r"patches0002\.bmp.*600 patches"):
        read_phototour(folder.parent, "liberty")


def test_more_tiles_than_info_needs(subset) -> None:
    folder, _, labels = subset
    (folder / "info.txt").write_text("".join(f"{p} 0\n" for p in labels[:200]))
    with pytest.raises(ValueError, match="2 tiles but info.txt lists only 200"):
        read_phototour(folder.parent, "liberty")


@pytest.mark.parametrize(
    ("tile", "message"),
    [
        (np.zeros((512, 1024), np.uint8), "1024x1024"),
        (np.zeros((1024, 1024, 3), np.uint8) + np.array([0, 0, 9], np.uint8), "colour"),
        (np.zeros((1024, 1024), np.uint16), "8-bit"),
    ],
    ids=["size", "colour", "depth"],
)
def test_bad_tile(subset, tile: np.ndarray, message: str) -> None:
    folder, _, _ = subset
    path = folder / "patches0001.bmp"
    if tile.dtype == np.uint16:
        path.write_bytes(cv2.imencode(".png", tile)[1].tobytes())  # a 16-bit image named .bmp
    else:
        cv2.imwrite(str(path), tile)
    with pytest.raises(ValueError, match=message) as info:
        read_phototour(folder.parent, "liberty")
    assert "patches0001.bmp" in str(info.value)


def test_grey_tile_stored_as_rgb_is_accepted(subset) -> None:
    folder, patches, _ = subset
    tile = cv2.imread(str(folder / "patches0000.bmp"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "patches0000.bmp"), cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR))
    np.testing.assert_array_equal(read_phototour(folder.parent, "liberty").patches, patches)


def test_corrupt_tile(subset) -> None:
    folder, _, _ = subset
    data = (folder / "patches0000.bmp").read_bytes()
    (folder / "patches0000.bmp").write_bytes(data[:40])
    with pytest.raises(ValueError, match=r"patches0000\.bmp.*corrupt"):
        read_phototour(folder.parent, "liberty")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("12 x", "expected 2 integers, got '12 x'"),
        ("12", "expected 2 integer fields, got 1"),
        ("1 2 3", "expected 2 integer fields, got 3"),
        ("", "expected 2 integer fields, got 0"),
    ],
    ids=["non-integer", "too-few", "too-many", "blank"],
)
def test_bad_info_line_is_named(subset, line: str, message: str) -> None:
    folder, _, labels = subset
    lines = [f"{p} 0" for p in labels]
    lines[41] = line
    (folder / "info.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"info\.txt line 42: {message}"):
        read_phototour(folder.parent, "liberty")


def test_empty_info(subset) -> None:
    folder, _, _ = subset
    (folder / "info.txt").write_text("\n")
    with pytest.raises(ValueError, match="info.txt is empty"):
        read_phototour(folder.parent, "liberty")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 0 0 2 0", r"line 2: expected 6 integer fields, got 5"),
        ("1 0 0 2.5 0 0", r"line 2: expected 6 integers"),
        ("1 0 0 300 0 0", r"line 2: patch ids 1 and 300 must lie in \[0, 300\)"),
        ("-1 0 0 3 0 0", r"line 2: patch ids -1 and 3"),
    ],
    ids=["fields", "non-integer", "too-large", "negative"],
)
def test_bad_m50_line_is_named(subset, line: str, message: str) -> None:
    folder, _, _ = subset
    path = folder / "m50_100000_100000_0.txt"
    path.write_text(f"0 0 0 1 0 0\n{line}\n2 0 0 3 1 0\n")
    with pytest.raises(ValueError, match=message) as info:
        read_matches(folder.parent, "liberty")
    assert "m50_100000_100000_0.txt" in str(info.value)


def test_missing_m50(subset) -> None:
    folder, _, _ = subset
    with pytest.raises(FileNotFoundError, match="m50_100000_100000_0.txt"):
        read_matches(folder.parent, "liberty")


def test_progress_bar_does_not_change_the_result(subset) -> None:
    folder, patches, _ = subset
    ps = read_phototour(folder.parent, "liberty", progress=True)
    np.testing.assert_array_equal(ps.patches, patches)


@pytest.mark.parametrize("claimed", [(30000, 30000), (1024, 200000)])
def test_a_tile_whose_header_claims_another_size_is_refused_before_decoding(
    subset, claimed: tuple[int, int]
) -> None:
    from fixture_files import bomb_headers

    folder, _, _ = subset
    (folder / "patches0001.bmp").write_bytes(bomb_headers(*claimed)["bmp"])
    started = time.perf_counter()
    with pytest.raises(
        ValueError, match=rf"patches0001\.bmp must be 1024x1024 .* got {claimed[0]}x"
    ):
        read_phototour(folder.parent, "liberty")
    assert time.perf_counter() - started < 1.0
