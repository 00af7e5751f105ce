"""Brown / UBC PhotoTour (liberty, notredame, yosemite) read from a local folder.

Nothing is downloaded: the user points ``root`` at a folder holding either the original
layout ``root/<name>/`` (``patches0000.bmp``..., ``info.txt``, ``m50_*.txt``) or torchvision's
``root/<name>.pt`` cache. The original folder wins when both exist, since it is the source.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from hardnet_export._progress import track
from hardnet_export.data.types import PatchSet
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.imagefile import decode_image, file_header

#: Side of a Brown/PhotoTour patch as stored, in pixels (resized to 32 for the network).
BROWN_PATCH_SIZE = 64
TILE_SIZE = 1024
PATCHES_PER_ROW = TILE_SIZE // BROWN_PATCH_SIZE
PATCHES_PER_TILE = PATCHES_PER_ROW * PATCHES_PER_ROW
STANDARD_MATCHES = "m50_100000_100000_0.txt"
# The published patch counts, for users checking a download; the reader trusts info.txt.
SUBSET_SIZES = {"liberty": 450_092, "notredame": 468_159, "yosemite": 633_587}

_TILE_NAME = re.compile(r"patches(\d+)\.bmp")


def read_phototour(root: str | os.PathLike[str], name: str, progress: bool = False) -> PatchSet:
    """Read one PhotoTour subset from ``root/name/`` or torchvision's ``root/name.pt``.

    Args:
        root: folder holding the subset folder or the ``.pt`` cache.
        name: subset name, e.g. ``"liberty"``.
        progress: show a progress bar while reading the tiles.

    Returns:
        PatchSet whose labels are the 3D point ids of ``info.txt``.

    Shape:
        - patches: (N, 64, 64) uint8, in ``info.txt`` order.
        - labels: (N,) int64.

    Example:
        >>> ps = read_phototour("/data/brown", "liberty")  # doctest: +SKIP
        >>> ps.patches.shape
        (450092, 64, 64)
    """
    folder = Path(root) / name
    cache = Path(root) / f"{name}.pt"
    if folder.is_dir():
        labels = _read_info(folder)
        patches = _read_tiles(folder, len(labels), progress)
        return PatchSet(patches=patches, labels=labels, name=name)
    if cache.is_file():
        patches, labels, _ = _read_cache(cache)
        return PatchSet(patches=patches, labels=labels, name=name)
    raise MissingFileError(
        f"no PhotoTour subset {name!r} under {Path(root)}: expected the folder {folder} "
        f"(patches0000.bmp, ..., info.txt) or torchvision's cache {cache}"
    )


def read_matches(
    root: str | os.PathLike[str], name: str, filename: str = STANDARD_MATCHES
) -> np.ndarray:
    """Read an evaluation pair list (``m50_*.txt``) of one PhotoTour subset.

    Each line is ``patchID1 3DpointID1 unused patchID2 3DpointID2 unused``; a pair matches
    when the two point ids are equal. Falls back to the matches stored in torchvision's
    ``root/name.pt`` when the folder is absent and the standard file is asked for.

    Args:
        root: folder holding the subset folder or the ``.pt`` cache.
        name: subset name, e.g. ``"liberty"``.
        filename: pair list inside the subset folder.

    Returns:
        int64 array of rows ``(patch_i, patch_j, is_match)``.

    Shape:
        - output: (M, 3) int64, ``is_match`` in {0, 1}.
    """
    folder = Path(root) / name
    cache = Path(root) / f"{name}.pt"
    if not folder.is_dir() and filename == STANDARD_MATCHES and cache.is_file():
        return _read_cache(cache)[2]
    if not folder.is_dir():
        raise MissingFileError(
            f"no PhotoTour subset {name!r} under {Path(root)}: expected the folder {folder}"
            + (f" or torchvision's cache {cache}" if filename == STANDARD_MATCHES else "")
        )
    path = folder / filename
    if not path.is_file():
        raise MissingFileError(f"missing pair list {path}")
    num_patches = len(_read_info(folder))
    table = _read_int_table(path, num_fields=6)
    patch_ids = table[:, [0, 3]]
    bad = np.flatnonzero(((patch_ids < 0) | (patch_ids >= num_patches)).any(axis=1))
    if len(bad):
        row = int(bad[0])
        raise InputError(
            f"{path} line {row + 1}: patch ids {patch_ids[row, 0]} and {patch_ids[row, 1]} must "
            f"lie in [0, {num_patches}) (the patch count of info.txt)"
        )
    is_match = (table[:, 1] == table[:, 4]).astype(np.int64)
    return np.stack([table[:, 0], table[:, 3], is_match], axis=1)


def _read_info(folder: Path) -> np.ndarray:
    path = folder / "info.txt"
    if not path.is_file():
        raise MissingFileError(f"missing {path}: it gives the 3D point id of every patch")
    labels = np.ascontiguousarray(_read_int_table(path, num_fields=2)[:, 0])
    if len(labels) == 0:
        raise InputError(f"{path} is empty: expected one line '<3D point id> <unused>' per patch")
    return labels


def _read_int_table(path: Path, num_fields: int) -> np.ndarray:
    """Parse a whitespace-separated integer table, naming the first bad line on failure.

    Shape:
        - output: (lines, num_fields) int64.
    """
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not an ASCII text table: {err}") from err
    lines = text.rstrip().splitlines()
    tokens = text.split()
    if len(tokens) == len(lines) * num_fields:
        try:
            return np.array(tokens, dtype=np.int64).reshape(len(lines), num_fields)
        except (ValueError, OverflowError):
            pass  # the slow scan below finds the line to blame
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) != num_fields:
            raise InputError(
                f"{path} line {number}: expected {num_fields} integer fields, got "
                f"{len(fields)}: {line!r}"
            )
        try:
            np.array(fields, dtype=np.int64)
        except (ValueError, OverflowError) as err:
            raise InputError(
                f"{path} line {number}: expected {num_fields} integers, got {line!r}"
            ) from err
    raise AssertionError("unreachable: a table that fails to parse has a bad line")


def _read_tiles(folder: Path, num_patches: int, progress: bool = False) -> np.ndarray:
    """Cut the 1024x1024 tiles of ``folder`` into patches, row-major, tiles in numeric order.

    Shape:
        - output: (num_patches, 64, 64) uint8.
    """
    numbers = sorted(
        int(m.group(1)) for f in os.listdir(folder) if (m := _TILE_NAME.fullmatch(f)) is not None
    )
    needed = -(-num_patches // PATCHES_PER_TILE)
    for expected, number in enumerate(numbers):
        if number != expected:
            raise MissingFileError(
                f"missing tile {folder / _tile_name(expected)}: tiles are numbered without gaps "
                f"from {_tile_name(0)}, found {_tile_name(number)} next"
            )
    if len(numbers) < needed:
        raise MissingFileError(
            f"missing tile {folder / _tile_name(len(numbers))}: info.txt lists {num_patches} "
            f"patches, which need {needed} tiles of {PATCHES_PER_TILE}, but the folder holds "
            f"{len(numbers)} (info.txt is longer than the tiles hold)"
        )
    if len(numbers) > needed:
        raise InputError(
            f"{folder} holds {len(numbers)} tiles but info.txt lists only {num_patches} patches "
            f"({needed} tiles): info.txt is truncated or the tiles belong to another subset"
        )
    out = np.empty((needed * PATCHES_PER_TILE, BROWN_PATCH_SIZE, BROWN_PATCH_SIZE), dtype=np.uint8)
    grid = (PATCHES_PER_ROW, BROWN_PATCH_SIZE, PATCHES_PER_ROW, BROWN_PATCH_SIZE)
    for t in track(range(needed), needed, f"reading {folder.name}", "tiles", progress):
        tile = _read_tile(folder / _tile_name(t))
        out[t * PATCHES_PER_TILE : (t + 1) * PATCHES_PER_TILE] = (
            tile.reshape(grid).transpose(0, 2, 1, 3).reshape(-1, BROWN_PATCH_SIZE, BROWN_PATCH_SIZE)
        )
    return out[:num_patches]


def _tile_name(number: int) -> str:
    return f"patches{number:04d}.bmp"


def _read_tile(path: Path) -> np.ndarray:
    # IMREAD_UNCHANGED rather than IMREAD_GRAYSCALE: a colour tile must be refused, not
    # silently converted, since it cannot come from the real dataset.
    # A tile has one size: any other is refused from the header, before decoding.
    header = file_header(path)
    if header is not None:
        _check_tile_size(path, header.width, header.height)
    tile = decode_image(path, flags=cv2.IMREAD_UNCHANGED, parameter=None)
    if tile.ndim == 3 and tile.shape[2] in (3, 4):
        color = tile[..., :3]
        if not ((color[..., 0] == color[..., 1]).all() and (color[..., 1] == color[..., 2]).all()):
            raise InputError(f"{path} is a colour image; PhotoTour tiles are 8-bit grayscale")
        tile = np.ascontiguousarray(color[..., 0])
    if tile.dtype != np.uint8 or tile.ndim != 2:
        raise InputError(
            f"{path} must be an 8-bit grayscale image, got dtype {tile.dtype} shape {tile.shape}"
        )
    _check_tile_size(path, tile.shape[1], tile.shape[0])
    return tile


def _check_tile_size(path: Path, width: int, height: int) -> None:
    if (width, height) != (TILE_SIZE, TILE_SIZE):
        raise InputError(
            f"{path} must be {TILE_SIZE}x{TILE_SIZE} (16x16 patches of 64x64), got {width}x{height}"
        )


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load torchvision's PhotoTour cache ``(patches, labels, matches)`` and check it.

    Shape:
        - patches: (N, 64, 64) uint8.
        - labels: (N,) int64.
        - matches: (M, 3) int64.
    """
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise InputError(f"cannot load {path} as a torchvision PhotoTour cache: {err}") from err
    if not isinstance(content, (tuple, list)) or len(content) != 3:
        raise InputError(
            f"{path} must hold a tuple (patches, labels, matches) as torchvision writes it, "
            f"got {type(content).__name__}"
            + (f" of length {len(content)}" if isinstance(content, (tuple, list)) else "")
        )
    expected = (
        ("patches", torch.uint8, 3),
        ("labels", torch.int64, 1),
        ("matches", torch.int64, 2),
    )
    arrays = []
    for value, (field, dtype, ndim) in zip(content, expected, strict=True):
        if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.ndim != ndim:
            got = (
                f"{value.dtype} tensor of shape {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else type(value).__name__
            )
            raise InputError(f"{path}: {field} must be a {ndim}-D {dtype} tensor, got {got}")
        arrays.append(value.numpy())
    patches, labels, matches = arrays
    if patches.shape[1:] != (BROWN_PATCH_SIZE, BROWN_PATCH_SIZE):
        raise InputError(f"{path}: patches must be (N, 64, 64), got {patches.shape}")
    if labels.shape != (len(patches),):
        raise InputError(
            f"{path}: labels must be ({len(patches)},) to match the patches, got {labels.shape}"
        )
    if matches.shape[1] != 3:
        raise InputError(f"{path}: matches must be (M, 3), got {matches.shape}")
    if len(matches) and (
        matches[:, :2].min() < 0
        or matches[:, :2].max() >= len(patches)
        or not np.isin(matches[:, 2], (0, 1)).all()
    ):
        raise InputError(
            f"{path}: matches must hold patch ids in [0, {len(patches)}) and is_match in {{0, 1}}"
        )
    return patches, labels, matches
