"""Small file helpers shared by every stage: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from hardnet_export.errors import MissingFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or exception midway leaves any previous file at ``path`` untouched and
    removes the partial temporary file, so no artifact is ever half-written.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise MissingFileError(f"cannot write {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {target}: folder {parent} is not writable")
    tmp = _new_temporary(parent, target.name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _new_temporary(parent: Path, name: str) -> Path:
    """Create an empty, uniquely named file in ``parent`` with the mode a plain ``open()``
    gives (0666 less the umask); ``tempfile.mkstemp`` would make it 0600, and the rename
    would carry that mode onto the artifact."""
    for _ in range(100):
        candidate = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"cannot create a temporary file beside {parent / name}")


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise now what :func:`atomic_path` would raise later, without touching ``path``.

    Lets a long computation fail before it starts when its output cannot be written.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a folder")
    if not parent.is_dir():
        raise MissingFileError(f"cannot write {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {target}: folder {parent} is not writable")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
