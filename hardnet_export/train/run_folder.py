"""Who owns a run folder, and what a start may do to it: one trainer at a time (a lock held
for the run), finished runs kept unless ``overwrite``, and no debris of killed runs."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from hardnet_export._io import make_folder
from hardnet_export.errors import (
    OutputError,
    OutputExistsError,
    Remedy,
    StateError,
    TrainingInterrupted,
)

#: What to do about a run folder that holds a run already.
RUN_REMEDIES = {
    "resume": Remedy({"resume": True}),
    "overwrite": Remedy({"overwrite": True}),
    "out": Remedy({"out": ...}),
}

LOCK_NAME = "train.lock"
CHECKPOINT_NAME = "checkpoint.pth"
FINAL_NAME = "final.pth"
LOG_NAME = "log.csv"
TENSORBOARD_NAME = "tensorboard"
#: What a run writes; a fresh start refuses a folder holding any of them.
RUN_FILES = (FINAL_NAME, CHECKPOINT_NAME, LOG_NAME)
#: Temporaries of atomic writes (hardnet_export._io) a killed run can leave behind.
_STALE_PATTERNS = tuple(f".{name}.*.tmp" for name in RUN_FILES)


class RunLock:
    """An exclusive ``flock`` on ``OUT/train.lock``, held on an open descriptor for the run.

    The kernel drops the lock when the holder dies however it dies, so a lock file left by a
    killed trainer is simply taken again; the file's JSON (PID, host, start) only names the
    holder in the refusal. ``flock`` is per host: trainers on different machines sharing a
    network folder are not kept apart where the file system does not support it.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise OutputError(
                    f"cannot write in the run folder {self.path.parent}: "
                    f"{exc.strerror or exc} (creating {self.path.name})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StateError(
                    f"run folder {self.path.parent} is in use by another trainer "
                    f"({_describe_holder(self.path)}; lock {self.path}): wait for it, "
                    "stop it, or choose another {remedy}",
                    remedy=Remedy({"out": ...}),
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have removed the file between our open and our
            # lock; a lock on an unlinked inode guards nothing, so take the new file's.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock: whoever opens the name next gets a new inode.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _describe_holder(path: Path, wait_s: float = 1.0) -> str:
    # The holder locks before it writes its record, so a refusal that lands in between
    # waits a moment for the record rather than naming nobody.
    deadline = time.monotonic() + wait_s
    while True:
        try:
            holder = json.loads(path.read_text()[:4096])
            return f"PID {int(holder['pid'])} on host {holder['host']}, since {holder['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "holder not yet recorded"
            time.sleep(0.02)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries of interrupted atomic writes; only safe under the lock."""
    removed = []
    for pattern in _STALE_PATTERNS:
        for path in folder.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def run_files(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()]


def refuse_fresh_start(folder: Path) -> None:
    """A fresh (not ``resume``, not ``overwrite``) run must not land on an earlier run."""
    found = run_files(folder)
    if CHECKPOINT_NAME in found and FINAL_NAME not in found:
        raise OutputExistsError(
            f"{folder / CHECKPOINT_NAME} exists: pass {{resume}} to continue that run, "
            "{overwrite} to start it afresh, or choose another {out}",
            remedies=RUN_REMEDIES,
        )
    if found:
        what = "a finished run" if FINAL_NAME in found else "an earlier run's files"
        raise OutputExistsError(
            f"{folder} holds {what} ({', '.join(found)}): pass {{overwrite}} to train it "
            "afresh (the old run's files are deleted), {resume} to continue it, or choose "
            "another {out}",
            remedies=RUN_REMEDIES,
        )


def clear_run(folder: Path) -> None:
    """Delete an earlier run's outputs for ``overwrite`` (the lock and foreign files stay)."""
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    board = folder / TENSORBOARD_NAME
    if board.is_dir():
        shutil.rmtree(board)


class SignalStop:
    """SIGINT/SIGTERM handlers for the duration of a run (main thread only; elsewhere Python
    cannot install handlers and signals keep their meaning).

    The first signal only records itself: the trainer looks at ``signum`` between steps, so
    the checkpoint it then writes holds the state after a whole step (a step cut short has
    already moved BatchNorm's running statistics, and its checkpoint would not resume
    bit-exactly). A second signal raises :class:`TrainingInterrupted` at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is
            # the closest.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise TrainingInterrupted(signum, aborted=True)
        self.signum = signum


def ignore_stop_signals() -> None:
    """For data-loader workers: a Ctrl-C reaches the whole process group, and a worker killed
    by it would break the main process's orderly stop. Workers end with their parent."""
    for signum in SignalStop.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def owned(folder: Path) -> Iterator[RunLock]:
    """Hold the run folder's lock; creating ``folder`` if needed, and removing it again if
    the run leaves it empty (a start that failed before writing anything)."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"output {folder} exists and is not a folder")
    created = make_folder(folder, "run folder")
    lock = RunLock(folder)
    try:
        lock.acquire()
        yield lock
    finally:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
