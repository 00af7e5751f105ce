from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from hardnet_export._io import (
    atomic_path,
    atomic_write_text,
    check_writable,
    load_npy,
    remove_stale_scratch,
    scratch_folder,
)
from hardnet_export.errors import OutputError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_has_the_mode_open_gives(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~umask


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_check_writable_probes_the_folder(tmp_path: Path) -> None:
    # Permission bits do not tell (root passes every check; /proc refuses anyway): the check
    # creates a file, names the target (never our temporary file) and leaves nothing behind.
    check_writable(tmp_path / "ok.npz")
    assert not list(tmp_path.iterdir())
    with pytest.raises(OSError, match=r"cannot write /proc/x.npz: .* in folder /proc") as caught:
        check_writable("/proc/x.npz")
    assert ".tmp" not in str(caught.value)
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        check_writable(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_writable(tmp_path / "no" / "x.npz")


def test_a_looping_link_is_refused_before_the_work(tmp_path: Path) -> None:
    # is_dir() and exists() say False for it: the write failed at the end with the errno text.
    loop = tmp_path / "out.npz"
    loop.symlink_to(loop)
    with pytest.raises(OutputError, match="out.npz: it is a symbolic link that loops"):
        check_writable(loop)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_output_folders_are_checked_in_one_sentence(tmp_path: Path) -> None:
    from hardnet_export._io import check_folder, make_folder

    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    refused = {
        tmp_path / "file": "it is a file; give a folder",
        tmp_path / "file" / "sub": f"{tmp_path / 'file'} is not a folder",
        tmp_path / "loop": "it is a symbolic link that loops",
        tmp_path / "dangling": "which does not exist",
        Path("/proc/run"): "nothing can be created in /proc",
    }
    for path, message in refused.items():
        for check in (check_folder, make_folder):
            with pytest.raises(OutputError) as caught:
                check(path, "demo folder")
            text = str(caught.value)
            assert message in text and "Errno" not in text and "\n" not in text, text
    with pytest.raises(OutputError, match="the demo folder is an empty path"):
        make_folder("", "demo folder")
    assert make_folder(tmp_path / "a" / "b") and (tmp_path / "a" / "b").is_dir()
    assert not make_folder(tmp_path / "a" / "b")  # there already
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == []  # no probe left


def test_load_npy_names_what_is_wrong(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    (tmp_path / "a.npz").rename(tmp_path / "renamed.npy")
    with pytest.raises(ValueError, match=r"renamed.npy is a .npz archive, but keypoints must be"):
        load_npy(tmp_path / "renamed.npy", "keypoints")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy .* holds Python objects"):
        load_npy(tmp_path / "objects.npy", "keypoints")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(ValueError, match="text.npy is not a readable .npy array"):
        load_npy(tmp_path / "text.npy", "keypoints")
    np.save(tmp_path / "cut.npy", np.zeros((100, 4)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.npy is not a readable .npy array"):
        load_npy(tmp_path / "cut.npy", "keypoints")
    with pytest.raises(FileNotFoundError, match="keypoints not found"):
        load_npy(tmp_path / "absent.npy", "keypoints")


def test_scratch_folder_is_removed_and_takes_library_temporaries(tmp_path: Path) -> None:
    with scratch_folder("hardnet-test-") as folder:
        assert folder.is_dir()
        assert Path(tempfile.mkdtemp()).parent == folder  # a library's own temporary folder
    assert not folder.exists()
    assert tempfile.gettempdir() != str(folder)


def test_scratch_folders_of_killed_processes_are_removed(tmp_path: Path) -> None:
    # SIGKILL runs no cleanup: the next job removes folders whose process is gone.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / f"hardnet-test-{child.pid}-abc"
    alive = tmp_path / f"hardnet-test-{os.getpid()}-def"
    other = tmp_path / "unrelated-1-x"
    for folder in (dead, alive, other):
        folder.mkdir()
    assert remove_stale_scratch(tmp_path, "hardnet-test-") == [dead]
    assert alive.is_dir() and other.is_dir() and not dead.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_rewrite_keeps_the_existing_mode(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "model.onnx"
    old = os.umask(umask)
    try:
        atomic_write_text(target, "first")
        assert _mode(target) == 0o666 & ~umask
        target.chmod(0o640)
        atomic_write_text(target, "second")
    finally:
        os.umask(old)
    assert _mode(target) == 0o640
    assert target.read_text() == "second"


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_write_through_a_symlink_writes_its_target(tmp_path: Path, umask: int) -> None:
    real = tmp_path / "real" / "model.onnx"
    real.parent.mkdir()
    link = tmp_path / "model.onnx"
    link.symlink_to(real)
    old = os.umask(umask)
    try:
        atomic_write_text(link, "new")  # a dangling link: its target is created
        assert _mode(real) == 0o666 & ~umask
        real.chmod(0o600)
        atomic_write_text(link, "again")
    finally:
        os.umask(old)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text() == "again" and _mode(real) == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["model.onnx"]
