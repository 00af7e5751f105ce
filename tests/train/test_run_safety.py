"""Stopping and owning a run: signals stop it resumably, one trainer per run folder, finished
runs kept, no duplicate log rows, no debris of killed runs, no folders from refused starts."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hardnet_export.errors import StateError, TrainingInterrupted
from hardnet_export.model import read_checkpoint
from hardnet_export.train.config import TrainConfig
from hardnet_export.train.run_folder import RunLock, SignalStop
from hardnet_export.train.trainer import train

N_POINTS = 48
# Long enough that a signal sent after the third logged step lands well before the end.
STEPS = 12
# Two trainers started together race for the lock; the loser must reach it while the
# winner still trains, so the winner's run is longer than a start-up's jitter.
RACE_STEPS = 16


def _config(root: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=[f"phototour:{root}/liberty"], out=str(out), steps=6, batch_size=16, lr=1.0,
        num_workers=0, progress=False, log_every=1, checkpoint_every=2, device="cpu",
        threads=1,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _cli(
    root: Path, out: Path, *extra: str, steps: int = STEPS, **popen: object
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "hardnet_export", "train", "--data", f"phototour:{root}/liberty",
        "--out", str(out), "--steps", str(steps), "--batch-size", "16", "--lr", "1",
        "--device", "cpu", "--threads", "1", "--num-workers", "0", "--no-progress",
        "--log-every", "1", "--checkpoint-every", "1000", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen
    )


def _log_steps(out: Path) -> list[int]:
    if not (out / "log.csv").exists():
        return []
    with open(out / "log.csv", newline="") as f:
        # A row being written may be cut short; only whole ones count.
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("elapsed_s")]


def _losses(out: Path) -> list[str]:
    with open(out / "log.csv", newline="") as f:
        return [row["loss"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def straight(phototour_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("straight")
    torch.set_num_threads(1)
    train(_config(phototour_root, out, steps=STEPS, checkpoint_every=1000))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "workers"), [(signal.SIGINT, 1), (signal.SIGTERM, 0)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_stops_with_a_checkpoint_that_resumes_bit_exactly(
    phototour_root: Path, straight: Path, tmp_path: Path, signum: int, workers: int
) -> None:
    out = tmp_path / "run"
    # Its own session, so that SIGINT can go to the whole process group as a Ctrl-C does:
    # the data-loader worker must outlive it and the main process stop in order.
    proc = _cli(phototour_root, out, "--num-workers", str(workers), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_log_steps(out)) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no training steps logged"
            time.sleep(0.01)
        os.killpg(proc.pid, signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    ckpt = read_checkpoint(out / "checkpoint.pth")
    step = ckpt.meta["step"]
    assert 3 <= step < STEPS
    name = signal.Signals(signum).name
    assert stderr.strip() == (
        f"interrupted by {name} at step {step} of {STEPS}: wrote {out / 'checkpoint.pth'}; "
        "--resume continues"
    )
    # The checkpoint holds the state after whole steps: BatchNorm has counted exactly them.
    assert ckpt.state_dict["features.1.num_batches_tracked"].item() == step
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pth", "log.csv"]

    final = train(_config(phototour_root, out, steps=STEPS, checkpoint_every=1000, resume=True))
    expected = read_checkpoint(straight / "final.pth").state_dict
    got = read_checkpoint(final).state_dict
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert _log_steps(out) == list(range(1, STEPS + 1))
    assert _losses(out) == _losses(straight)


def test_resume_drops_the_log_rows_after_the_checkpoint(
    phototour_root: Path, tmp_path: Path
) -> None:
    straight_out, out = tmp_path / "a", tmp_path / "b"
    train(_config(phototour_root, straight_out, checkpoint_every=3))
    train(_config(phototour_root, out, checkpoint_every=3, stop_after=3))
    at_three = (out / "checkpoint.pth").read_bytes()
    train(_config(phototour_root, out, checkpoint_every=3, stop_after=2, resume=True))
    # A run killed at step 5 leaves rows 4 and 5 in the log and the checkpoint of step 3.
    (out / "checkpoint.pth").write_bytes(at_three)
    assert _log_steps(out) == [1, 2, 3, 4, 5]
    train(_config(phototour_root, out, checkpoint_every=3, resume=True))
    assert _log_steps(out) == [1, 2, 3, 4, 5, 6]
    assert _losses(out) == _losses(straight_out)


def test_a_new_start_removes_temporaries_of_killed_writes(
    phototour_root: Path, tmp_path: Path
) -> None:
    train(_config(phototour_root, tmp_path, stop_after=2))
    stale = [tmp_path / ".checkpoint.pth.0badf00d.tmp", tmp_path / ".final.pth.12345678.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    foreign = tmp_path / ".notes.txt.tmp"
    foreign.write_text("not the trainer's")
    train(_config(phototour_root, tmp_path, resume=True))
    assert not any(path.exists() for path in stale)
    assert foreign.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".notes.txt.tmp", "checkpoint.pth", "final.pth", "log.csv",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_second_trainer_on_the_same_folder_is_refused(
    phototour_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    procs = [_cli(phototour_root, out, steps=RACE_STEPS) for _ in range(2)]
    try:
        results = [(proc, *proc.communicate(timeout=120)) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    codes = sorted(proc.returncode for proc in procs)
    assert codes == [0, 1], [r[2] for r in results]
    winner = next(r for r in results if r[0].returncode == 0)
    _, _, stderr = next(r for r in results if r[0].returncode == 1)
    assert stderr.startswith(f"error: run folder {out} is in use by another trainer (PID ")
    assert f"PID {winner[0].pid} on host " in stderr and f"lock {out / 'train.lock'}" in stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.strip().endswith("another --out")
    assert _log_steps(out) == list(range(1, RACE_STEPS + 1))  # one run's rows, not two
    assert not (out / "train.lock").exists()


def test_a_refusal_in_the_holders_first_moment_still_names_it(tmp_path: Path) -> None:
    import fcntl
    import threading

    # The holder has its lock but has not yet written who it is (the race CI once lost).
    lock_path = tmp_path / "train.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    record = b'{"pid": 4242, "host": "robot", "started": "2026-12-02T12:00:00+00:00"}\n'
    writer = threading.Timer(0.2, os.write, args=(fd, record))
    writer.start()
    try:
        with pytest.raises(StateError, match=r"\(PID 4242 on host robot, since 2026-12-02"):
            RunLock(tmp_path).acquire()
    finally:
        writer.join()
        os.close(fd)


def test_a_finished_run_is_kept_unless_overwrite(phototour_root: Path, tmp_path: Path) -> None:
    train(_config(phototour_root, tmp_path, steps=2))
    (tmp_path / "checkpoint.pth").unlink()
    before = (tmp_path / "final.pth").read_bytes()
    with pytest.raises(FileExistsError, match=r"holds a finished run \(final.pth, log.csv\).*"
                       "overwrite=True"):  # fmt: skip
        train(_config(phototour_root, tmp_path, steps=3))
    assert (tmp_path / "final.pth").read_bytes() == before
    with pytest.raises(ValueError, match="pass one of them"):
        _config(phototour_root, tmp_path, resume=True, overwrite=True)

    final = train(_config(phototour_root, tmp_path, steps=3, overwrite=True))
    assert read_checkpoint(final).meta["step"] == 3
    assert _log_steps(tmp_path) == [1, 2, 3]  # afresh, not appended
    fresh = tmp_path / "fresh"
    train(_config(phototour_root, fresh, steps=3))
    for key, value in read_checkpoint(fresh / "final.pth").state_dict.items():
        assert torch.equal(read_checkpoint(final).state_dict[key], value), key


def test_a_refused_start_leaves_no_folder(phototour_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    bad = [
        (dict(data=[f"phototour:{tmp_path}/no/liberty"]), FileNotFoundError, "does not exist"),
        (dict(batch_size=4 * N_POINTS), ValueError, "data 'phototour:"),
        (dict(init=str(tmp_path / "none.pth")), FileNotFoundError, "none.pth"),
        (dict(resume=True), FileNotFoundError, "nothing to resume"),
    ]
    for fields, error, message in bad:
        with pytest.raises(error, match=message):
            train(_config(phototour_root, out, **fields))
        assert not (tmp_path / "deep").exists(), fields


def test_an_output_that_cannot_be_a_run_folder_is_one_sentence_before_any_work(
    phototour_root: Path, tmp_path: Path
) -> None:
    from hardnet_export.errors import OutputError

    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cases = [
        ("/proc/run", "cannot create the run folder /proc/run: nothing can be created in /proc"),
        (str(tmp_path / "loop"), "loop as the run folder: it is a symbolic link that loops"),
        (str(tmp_path / "file" / "run"), "file/run: " + str(tmp_path / "file") + " is not a"),
    ]
    for out, message in cases:
        # Was the bare errno of mkdir ("[Errno 2] No such file or directory: '/proc/run'"),
        # after the data and any teacher had been loaded.
        with pytest.raises(OutputError) as caught:
            train(_config(phototour_root, Path(out), init=str(tmp_path / "none.pth")))
        assert message in str(caught.value) and "Errno" not in str(caught.value), caught.value


def test_handlers_are_the_callers_again_after_a_run(phototour_root: Path, tmp_path: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    train(_config(phototour_root, tmp_path, steps=1))
    assert {s: signal.getsignal(s) for s in before} == before
    with SignalStop() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # the first one only asks for a stop
        with pytest.raises(TrainingInterrupted) as caught:
            signal.raise_signal(signal.SIGINT)
        assert caught.value.aborted and caught.value.signum == signal.SIGINT
    assert {s: signal.getsignal(s) for s in before} == before
    aborted = TrainingInterrupted(2, aborted=True, step=7, checkpoint="c.pth", checkpoint_step=5)
    assert str(aborted) == (
        "aborted by a second SIGINT at step 7 without writing a checkpoint; c.pth (step 5) "
        "stays and resume=True continues from there"
    )
    from hardnet_export.cli import flag

    assert aborted.render(flag).endswith("stays and --resume continues from there")
