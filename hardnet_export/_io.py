"""Small file helpers shared by every stage: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hardnet_export import _signals
from hardnet_export.errors import InputError, MissingFileError, OutputError, OutputIsFolderError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or exception midway leaves any previous file at ``path`` untouched and
    removes the partial temporary file, so no artifact is ever half-written. A SIGINT or
    SIGTERM received at any moment before the rename (even one that a library swallowed)
    stops it there: the artifact is only put in place by a run that was not asked to stop.
    Temporaries that a killed process (SIGKILL, or a library's own handler that killed it)
    left beside ``path`` are removed first (:func:`remove_stale_temporaries`).

    The result has the mode a plain ``open()`` would give: a new file 0666 less the umask,
    an existing file keeps its own mode (a re-export must not widen or narrow who may read
    it). A symlink at ``path`` stays a symlink: its target is what gets written, as
    ``open(path, "w")`` would do.

    Raises:
        MissingFileError: the folder does not exist.
        OutputError: ``path`` is a folder, or nothing can be created in its folder.
        Interrupted: a signal was received before the rename.
    """
    target = Path(path)
    if target.is_symlink():
        # Renaming onto the link would replace the link itself with a plain file.
        target = Path(os.path.realpath(target))
    _check_target(target)
    remove_stale_temporaries(target)
    tmp = _new_temporary(target)
    try:
        yield tmp
        with _signals.deferred():  # a signal after the check waits until the file is whole
            _signals.check()
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
            os.replace(tmp, target)
    finally:
        with _signals.deferred():
            if tmp.exists():
                tmp.unlink()


def _check_target(target: Path) -> Path:
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputIsFolderError(f"cannot write {target}: it is a folder; give a file name")
    if not parent.is_dir():
        raise MissingFileError(f"cannot write {target}: folder {parent} does not exist")
    try:
        os.stat(target)
    except FileNotFoundError:
        pass  # a new file, or a link to one not yet written: open() would create it
    except OSError as exc:
        # is_dir() and exists() answer False for a looping link; the write would fail after
        # all the work, with the bare errno text.
        raise OutputError(f"cannot write {target}: {_why(exc)}") from None
    return parent


#: Which machine a temporary's PID belongs to (a shared folder may have writers on several).
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
#: Sidecar files that sqlite makes beside a database being written (the COLMAP database).
_SIDECARS = ("-journal", "-wal", "-shm")


def _temporary_name(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-{_HOST_TAG}.{secrets.token_hex(4)}.tmp"


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``target`` (and their sqlite sidecars) left by processes of
    this machine that no longer run; return them. Those of running processes, of other
    machines and of unknown owners stay."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    owner = re.compile(re.escape(f".{target.name}.") + r"(\d+)-([0-9a-f]{6})\.[0-9a-f]+\.tmp")
    removed = []
    try:
        candidates = list(parent.glob(f".{glob.escape(target.name)}.*.tmp*"))
    except OSError:
        return removed
    for path in candidates:
        name = path.name
        for sidecar in _SIDECARS:
            name = name.removesuffix(sidecar)
        found = owner.fullmatch(name)
        if not found or found.group(2) != _HOST_TAG or process_alive(int(found.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError, IsADirectoryError):
            path.unlink()
            removed.append(path)
    return removed


def _why(exc: OSError) -> str:
    """An OSError's reason in words, without the errno number and the repeated path."""
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link that loops (or a chain of links too long to follow)"
    return exc.strerror or str(exc)


def _new_temporary(target: Path) -> Path:
    """Create an empty, uniquely named file beside ``target`` with the mode a plain ``open()``
    gives (0666 less the umask); ``tempfile.mkstemp`` would make it 0600, and the rename
    would carry that mode onto the artifact. The name carries this process's PID, so that a
    later run can tell a killed writer's leftovers from a live writer's file."""
    parent = target.parent if str(target.parent) else Path(".")
    for _ in range(100):
        candidate = parent / _temporary_name(target)
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            # The user named the target, not our temporary file: say why the target fails.
            raise OutputError(f"cannot write {target}: {_why(exc)} in folder {parent}") from None
        os.close(fd)
        return candidate
    raise OutputError(f"cannot create a temporary file beside {target}")


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise now what :func:`atomic_path` would raise later, leaving ``path`` untouched.

    Creates and removes a temporary file beside ``path`` (permission bits alone do not tell:
    root passes every access check, and read-only or virtual file systems refuse anyway), so
    a long computation fails before it starts when its output cannot be written.

    Raises:
        MissingFileError: the folder does not exist.
        OutputError: ``path`` is a folder, or nothing can be created in its folder.
    """
    target = Path(path)
    _check_target(target)
    _new_temporary(target).unlink()


def check_folder(path: str | os.PathLike[str], what: str = "output folder") -> None:
    """Raise now what :func:`make_folder` would raise later, creating nothing that stays.

    ``path`` must be a folder in which files can be created, or not exist yet below one (its
    nearest existing ancestor is probed: permission bits alone do not tell, see
    :func:`check_writable`). ``what`` names the folder in the message.

    Raises:
        OutputError: ``path`` is a file or a looping link, or nothing can be created there.
    """
    folder = Path(path)
    if not str(path).strip():
        raise OutputError(f"the {what} is an empty path; give a folder")
    if folder.is_dir():
        _probe_folder(folder, folder, what)
        return
    try:
        os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        pass  # the ancestors below say which part is missing or a file
    except OSError as exc:
        raise OutputError(f"cannot use {folder} as the {what}: {_why(exc)}") from None
    else:
        raise OutputError(f"cannot use {folder} as the {what}: it is a file; give a folder")
    if folder.is_symlink():
        raise OutputError(
            f"cannot use {folder} as the {what}: it is a symbolic link to "
            f"{os.readlink(folder)}, which does not exist"
        )
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot create the {what} {folder}: {ancestor} is not a folder")
    _probe_folder(ancestor, folder, what)


def _probe_folder(folder: Path, named: Path, what: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".hardnet-export-probe-", dir=folder)
    except OSError as exc:
        if folder == named:
            raise OutputError(f"cannot write in the {what} {named}: {_why(exc)}") from None
        raise OutputError(
            f"cannot create the {what} {named}: nothing can be created in {folder} ({_why(exc)})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def make_folder(path: str | os.PathLike[str], what: str = "output folder") -> bool:
    """Create folder ``path`` with its parents unless it is one; return whether it was made.

    Checks as :func:`check_folder` does first, so every failure is one sentence naming
    ``path`` (never the bare errno text of ``mkdir``).

    Raises:
        OutputError: see :func:`check_folder`.
    """
    check_folder(path, what)
    folder = Path(path)
    if folder.is_dir():
        return False
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        if not folder.is_dir():  # something else made a file there meanwhile
            raise OutputError(f"cannot use {folder} as the {what}: it is a file") from None
        return False
    except OSError as exc:
        raise OutputError(f"cannot create the {what} {folder}: {_why(exc)}") from None
    return True


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A private temporary folder for one job, removed when the job ends.

    While it lasts it is also this process's :mod:`tempfile` folder, so the temporary files
    that libraries make on their own (ONNX Runtime's quantiser makes ``ort.quant.*``
    folders) land inside it and go with it. SIGKILL runs no cleanup: folders of this
    ``prefix`` whose process is gone are removed when the next job starts.
    """
    base = Path(tempfile.gettempdir())
    remove_stale_scratch(base, prefix)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))
    previous = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_scratch(base: Path, prefix: str) -> list[Path]:
    """Remove ``base/<prefix><pid>-*`` folders whose process no longer runs; return them."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    for folder in base.glob(f"{prefix}*-*"):
        found = pattern.match(folder.name)
        if found and folder.is_dir() and not process_alive(int(found.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user's counts too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def load_npy(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """The array in a ``.npy`` file, read without pickle; ``what`` names it in errors.

    Raises:
        MissingFileError: no such file.
        InputError: not a ``.npy`` array (a ``.npz`` archive, a pickled object array, a
            truncated or foreign file); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    if zipfile.is_zipfile(path):
        raise InputError(
            f"{path} is a .npz archive, but {what} must be one .npy array (np.save, not np.savez)"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        reason = "it holds Python objects" if "pickle" in str(exc) else str(exc).splitlines()[0]
        raise InputError(f"{path} is not a readable .npy array of {what} ({reason})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npy array of {what} ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path} is not a .npy array of {what}")
    return array
