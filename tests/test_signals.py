"""SIGINT and SIGTERM under the command line: never lost, never a finished artifact after them.

The handlers are installed by ``_signals.handled()`` (what ``cli.main`` does) in this process;
each test restores what it changed. A library that swallows the exception (a finaliser) or
replaces the handler at the C level (pycolmap's glog) is reproduced for real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardnet_export import _signals
from hardnet_export._io import _HOST_TAG, atomic_path, atomic_write_text, remove_stale_temporaries
from hardnet_export.errors import Interrupted


@pytest.fixture(autouse=True)
def _sigint_deliverable() -> object:
    """SIGINT as a terminal delivers it: a run started in the background by a non-interactive
    shell inherits SIGINT ignored, which the handlers rightly respect and these tests cannot."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _default_sigint() -> None:
    """For a child process: SIGINT at its default, whatever this process inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class SignalsItself:
    """Raises SIGTERM from its finaliser: the handler's exception is "ignored" by Python."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)


def test_a_signal_swallowed_by_a_finaliser_is_raised_again(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with _signals.handled():
        assert signal.getsignal(signal.SIGTERM) is _signals._handle
        with pytest.raises(Interrupted) as caught:
            SignalsItself()  # freed at once; its exception cannot leave __del__
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.001)
        assert caught.value.signum == signal.SIGTERM and _signals.received() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and _signals.received() is None
    assert "Exception ignored" not in capfd.readouterr().err


def test_no_artifact_is_put_in_place_after_a_swallowed_signal(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    with _signals.handled():
        with contextlib.suppress(KeyboardInterrupt):  # a library that carries on after Ctrl-C
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(Interrupted) as caught, atomic_path(out) as tmp:
            tmp.write_bytes(b"a whole graph")
        assert caught.value.signum == signal.SIGINT
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(out, "after the handlers are gone, writing works again")
    assert out.read_text().startswith("after")


def test_a_signal_in_a_deferred_section_is_raised_when_it_ends() -> None:
    with _signals.handled():
        steps = []
        with pytest.raises(Interrupted):
            with _signals.deferred():
                signal.raise_signal(signal.SIGTERM)
                steps.append("the section went on")
            steps.append("not reached")
        assert steps == ["the section went on"]


@pytest.mark.slow
def test_stale_temporaries_of_dead_writers_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    target = tmp_path / "c.db"
    stale = [tmp_path / f".c.db.{pid}-{_HOST_TAG}.0a1b2c3d.tmp{s}" for s in ("", "-journal")]
    kept = [
        tmp_path / f".c.db.{os.getpid()}-{_HOST_TAG}.0a1b2c3d.tmp",  # a live writer's
        tmp_path / f".c.db.{pid}-{'0' * 6 if _HOST_TAG != '0' * 6 else '1' * 6}.0a1b2c3d.tmp",
        tmp_path / ".c.db.0a1b2c3d.tmp",  # an owner we cannot tell
        tmp_path / f".other.db.{pid}-{_HOST_TAG}.0a1b2c3d.tmp",
    ]
    for path in stale + kept:
        path.write_text("x")
    atomic_write_text(target, "the next write of the target sweeps them")
    assert sorted(tmp_path.iterdir()) == sorted([target, *kept])
    for path in stale:
        path.write_text("x")
    assert sorted(remove_stale_temporaries(target)) == sorted(stale)


GLOG_COMMAND = """
import os, signal, sys
from hardnet_export import cli

@cli.app.command("glog")
def glog() -> None:
    import pycolmap  # installs glog's failure handler over SIGTERM, at the C level

    os.kill(os.getpid(), signal.SIGTERM)
    signal.sigtimedwait([], 0.1)  # a moment for the signal to be handled
    print("carried on")

@cli.app.command("swallow")
def swallow() -> None:
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass
    print("carried on")

cli.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_signals_end_commands_with_one_line_and_their_status() -> None:
    pytest.importorskip("pycolmap")
    run = [sys.executable, "-c", GLOG_COMMAND]
    glog = subprocess.run(
        [*run, "glog"], capture_output=True, text=True, timeout=120, preexec_fn=_default_sigint
    )
    assert glog.returncode == 128 + signal.SIGTERM, glog.stderr
    assert glog.stderr == "terminated by SIGTERM\n" and "carried on" not in glog.stdout
    # A command that swallowed the signal and ran to its end still did not succeed.
    swallow = subprocess.run(
        [*run, "swallow"], capture_output=True, text=True, timeout=120, preexec_fn=_default_sigint
    )
    assert (swallow.returncode, swallow.stderr) == (130, "interrupted by SIGINT\n")


def _colmap(images: Path, database: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hardnet_export", "colmap", str(images), "--database",
         str(database), "--max-keypoints", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _database_written(folder: Path) -> bool:
    # The output check's probe is a temporary of the same name that lives for a moment and
    # stays empty; only the database's own temporary gets sqlite's pages.
    for path in folder.glob(".c.db.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > 0:
                return True
    return False


def _when_writing(process: subprocess.Popen[str], folder: Path) -> None:
    deadline = time.monotonic() + 120
    while not _database_written(folder):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)


@pytest.mark.slow
def test_colmap_under_sigterm_and_after_sigkill(tmp_path: Path) -> None:
    pytest.importorskip("pycolmap")
    pytest.importorskip("skimage")
    import cv2

    from hardnet_export.data.builtin import load_photo

    images = tmp_path / "images"
    images.mkdir()
    for index, name in enumerate(("astronaut", "coffee", "chelsea")):
        assert cv2.imwrite(str(images / f"{index}.png"), load_photo(name))
    database = tmp_path / "c.db"
    # SIGTERM reaches our handler although pycolmap's glog took it over on import: one line,
    # 143, and the database's temporary (and sqlite's files beside it) removed.
    process = _colmap(images, database)
    _when_writing(process, tmp_path)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines()[-1] == "terminated by SIGTERM" and "Aborted at" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    # SIGKILL runs no cleanup: the next run sweeps what it left.
    process = _colmap(images, database)
    _when_writing(process, tmp_path)
    process.kill()
    process.communicate(timeout=120)
    assert list(tmp_path.glob(".c.db.*.tmp"))
    process = _colmap(images, database)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.db", "images"]


def test_an_import_leaves_a_handler_installed_over_ours_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trainer installs its own handlers for the run (the first signal only asks for a
    # checkpoint); an import during the run once put ours back, and the run died without one.
    from hardnet_export.train.run_folder import SignalStop

    (tmp_path / "fresh_module_for_signals.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with _signals.handled(), SignalStop() as stop:
        import fresh_module_for_signals  # noqa: F401  (new: the import hook reclaims)

        assert signal.getsignal(signal.SIGTERM) == stop._handle
        signal.raise_signal(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM and _signals.received() is None
