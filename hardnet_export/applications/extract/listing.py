"""What a bulk extraction describes: the images under a folder, or those a list file names.

Names follow hloc: relative to the image root, with ``/`` separators, so hloc's pairs files
and ``reconstruction.main(image_dir=ROOT)`` find the groups of ``features.h5``. A list file
(one name per line, as hloc's ``image_list``; blank lines and ``#`` comments skipped) gives
the names as written, read from ``root / name`` (``root`` defaults to the current folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hardnet_export.applications.colmap import IMAGE_SUFFIXES
from hardnet_export.applications.hloc import image_key
from hardnet_export.errors import InputError, MissingFileError

#: A list file larger than this is not a list of names (a tar, an image given by mistake).
MAX_LIST_BYTES = 1 << 30


@dataclass(frozen=True)
class ImageItem:
    """One image to describe: its group name in ``features.h5`` and where to read it."""

    name: str
    path: str


def list_images(source: str | Path, *, root: str | Path | None = None) -> list[ImageItem]:
    """The images of a folder (recursively, by name) or of a list file, with their names.

    Args:
        source: a folder of images, or a text file of image names, one per line.
        root: with a list file, the folder its names are relative to (default: the current
            folder); with a folder, None (the folder is the root).

    Raises:
        FileNotFoundError: no such folder or file, or a ``root`` that is not a folder.
        ValueError: no images found, a name listed twice, a list file that is not text, or
            ``root`` given with a folder.
    """
    source = Path(source)
    if source.is_dir():
        if root is not None:
            raise InputError(
                f"{source} is a folder, and its images are named relative to it; a root is "
                "only for a list file"
            )
        return _walk(source)
    if not source.exists():
        raise MissingFileError(f"no such folder or list file: {source}")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(
            f"{source} is an image; give the folder that holds the images, or a list file of "
            "their names (one per line)"
        )
    base = Path(".") if root is None else Path(root)
    if not base.is_dir():
        raise MissingFileError(f"the image root {base} is not a folder")
    return _read_list(source, base)


def _walk(folder: Path) -> list[ImageItem]:
    found: list[ImageItem] = []
    # Hidden files and folders are skipped: they hold our own temporaries (and .git).
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in files:
            if file.startswith(".") or Path(file).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(top) / file
            found.append(ImageItem(path.relative_to(folder).as_posix(), str(path)))
    if not found:
        raise InputError(
            f"no images under {folder}: expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    return sorted(found, key=lambda item: item.name)


def _read_list(path: Path, root: Path) -> list[ImageItem]:
    if path.stat().st_size > MAX_LIST_BYTES:
        raise InputError(f"{path} is over 1 GiB: expected a text file of image names")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: expected one image name per line") from None
    items: list[ImageItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        written = line.strip()
        if not written or written.startswith("#"):
            continue
        name = image_key(written)
        if name in seen:
            raise InputError(
                f"{path}:{number}: {written!r} is listed twice (first on line {seen[name]})"
            )
        seen[name] = number
        items.append(ImageItem(name, str(root / written)))
    if not items:
        raise InputError(f"{path} names no images: expected one image name per line")
    return items
