"""Bulk extraction on the local engine: hloc names, resume by content, failures, exactly
once after a kill (a SIGKILL or Ctrl-C of the driver), the lock, the merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from extract_fixtures import (
    COMMON,
    MODEL,
    assert_same_features,
    hloc_names,
    read_all,
    write_images,
)
from fixture_files import bomb_headers
from typer.testing import CliRunner

from hardnet_export.applications.extract import (
    ENGINES,
    Scale,
    errors_path,
    extract,
    list_images,
    parts_folder,
    runs_of,
)
from hardnet_export.applications.extract.shards import (
    check_settings,
    claimed,
    merge,
    run_settings,
    write_shard,
)
from hardnet_export.cli import EXIT_PARTIAL, app
from hardnet_export.errors import InputError, StateError

h5py = pytest.importorskip("h5py")


def test_a_folder_is_listed_recursively_by_names_relative_to_it(tmp_path: Path) -> None:
    names = write_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / ".hidden.png").write_bytes(b"")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    items = list_images(tmp_path / "imgs")
    assert [item.name for item in items] == sorted(names)
    assert all(Path(item.path) == tmp_path / "imgs" / item.name for item in items)


def test_a_list_file_gives_names_as_written(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 3)
    listing = tmp_path / "list.txt"
    listing.write_text("# query images\nview01.png\n\nsub/view00.png\n")
    items = list_images(listing, root=tmp_path / "imgs")
    assert [(i.name, i.path) for i in items] == [
        ("view01.png", str(tmp_path / "imgs" / "view01.png")),
        ("sub/view00.png", str(tmp_path / "imgs" / "sub/view00.png")),
    ]
    listing.write_text("view01.png\nview01.png\n")
    with pytest.raises(InputError, match=r"list.txt:2: 'view01.png' is listed twice"):
        list_images(listing, root=tmp_path / "imgs")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.mkdir(), "no images under"),
        (lambda p: p.with_suffix(".png").write_bytes(b"x"), "is an image; give the folder"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00bad"), "is not UTF-8 text"),
        (lambda p: p.write_text("# nothing\n"), "names no images"),
    ],
)
def test_bad_sources_are_one_line(tmp_path: Path, make, match: str) -> None:
    source = tmp_path / "source"
    make(source)
    given = source.with_suffix(".png") if "is an image" in match else source
    with pytest.raises(InputError, match=match):
        list_images(given)


def test_features_resume_and_failures(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    names = write_images(root, 7)
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    good = (root / names[1]).read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "bomb.png").write_bytes(bomb_headers(60000, 60000)["png"])
    out = tmp_path / "features.h5"
    events = []
    first = extract(root, out, **COMMON, scale=Scale(images_per_shard=3), progress=events.append)
    assert (first.images, first.described, first.failed, first.skipped) == (11, 7, 4, 0)
    assert [e.done for e in events] == list(range(1, 12)) and events[-1].total == 11
    assert hloc_names(out) == set(names)  # relative to ROOT, as hloc's image_dir expects
    features = read_all(out)
    for name, group in features.items():
        n = len(group["keypoints"])
        assert 0 < n <= 120, name
        assert group["keypoints"].shape == (n, 2) and group["descriptors"].shape == (128, n)
        np.testing.assert_allclose(np.linalg.norm(group["descriptors"], axis=0), 1, atol=1e-4)
    assert first.patches == sum(len(g["keypoints"]) for g in features.values())
    failures = [json.loads(line) for line in errors_path(out).read_text().splitlines()]
    reasons = {f["name"]: f["reason"] for f in failures}
    assert set(reasons) == {"empty.png", "corrupt.jpg", "truncated.png", "bomb.png"}
    assert "60000x60000" in reasons["bomb.png"] and "decompression bombs" in reasons["bomb.png"]
    assert "empty (0 bytes)" in reasons["empty.png"] and str(root) in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"]
    assert not parts_folder(out).exists()
    run = runs_of(out)[-1]
    assert run["engine"] == "local" and run["images"]["described"] == 7
    assert run["model"]["sha256"] and run["options"]["max_keypoints"] == 120
    # OpenCV's SIFT has no support of its own: the describer's magnification x size.
    assert run["patch_support"] == {"per_size": run["options"]["magnification"], "min_px": 0.0}

    # A rerun describes only what changed: a new image, a changed one, the mended failures.
    (root / "empty.png").unlink()
    (root / "corrupt.jpg").unlink()
    (root / "bomb.png").unlink()
    (root / "truncated.png").write_bytes(good)
    os.utime(root / names[2])  # touched, same bytes: compared by content, not described
    changed = root / names[3]
    changed.write_bytes((root / names[4]).read_bytes())
    second = extract(root, out, **COMMON)
    assert (second.described, second.skipped, second.failed) == (2, 6, 0)
    assert second.merged is not None
    assert (second.merged.added, second.merged.replaced) == (1, 1)
    assert not errors_path(out).exists()
    after = read_all(out)
    np.testing.assert_array_equal(after[names[3]]["descriptors"], after[names[4]]["descriptors"])
    for name in set(names) - {names[3]}:
        np.testing.assert_array_equal(after[name]["descriptors"], features[name]["descriptors"])
    assert len(runs_of(out)) == 2


def test_the_features_are_those_of_describe(tmp_path: Path) -> None:
    from hardnet_export import runtime
    from hardnet_export.applications.features import extract_features

    root = tmp_path / "imgs"
    names = write_images(root, 4)
    out = tmp_path / "f.h5"
    # Two images per batch: each image's patches share a batch with another image's.
    extract(root, out, **COMMON, scale=Scale(images_per_shard=2))
    describer = runtime.load(MODEL, backend="onnxruntime")
    alone = extract_features(describer, [root / n for n in names], max_keypoints=120)
    got = read_all(out)
    for name, features in zip(names, alone, strict=True):
        np.testing.assert_array_equal(got[name]["keypoints"], features.keypoints[:, :2])
        # Padded batches of 1024 against one image's batch: ONNX Runtime gives the same bits
        # here, but a CPU kind's kernels may sum in another order at another batch size.
        np.testing.assert_allclose(
            got[name]["descriptors"], features.descriptors.T, rtol=0, atol=1e-6
        )


def test_a_second_run_on_the_same_output_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_images(root, 1)
    out = tmp_path / "f.h5"
    with claimed(parts_folder(out)), pytest.raises(StateError, match="another extraction"):
        extract(root, out, **COMMON)


def test_a_shard_written_twice_is_merged_once(tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    folder = parts_folder(out)
    folder.mkdir()
    row = {
        "name": "a/b.png",
        "sha256": "ab" * 32,
        "size": 10,
        "mtime_ns": 1,
        "keypoints": np.ones((3, 4)),
        "descriptors": np.eye(3, 128, dtype=np.float32),
        "scores": np.ones(3, np.float32),
        "image_size": np.array([8, 6]),
        "error": "",
    }
    shards = [folder / write_shard(folder, [row]) for _ in range(2)]
    result = merge(out, shards, {"run": "test"})
    assert (result.added, result.dropped) == (1, 1)
    assert hloc_names(out) == {"a/b.png"} and not any(folder.glob("part-*"))
    # The shard outlived a merge (a kill between the rename and the removal): dropped.
    again = merge(out, [folder / write_shard(folder, [row])], {"run": "again"})
    assert (again.added, again.replaced, again.dropped) == (0, 0, 1)


def test_features_made_otherwise_are_never_mixed_in(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_images(root, 2)
    out = tmp_path / "f.h5"
    extract(root, out, **COMMON)
    write_images(root / "more", 1)
    # Another keypoint budget, detector or model would put unmatchable features in one file.
    other = {**COMMON, "max_keypoints": COMMON["max_keypoints"] + 1}
    with pytest.raises(InputError, match=r"f.h5 holds features made with max_keypoints"):
        extract(root, out, **other)
    with pytest.raises(InputError, match=r"made with detector 'sift', this run's is 'orb'"):
        extract(root, out, **{**COMMON, "detector": "orb"})
    assert len(runs_of(out)) == 1 and not parts_folder(out).exists()
    assert extract(root, out, **COMMON).described == 1  # the same settings resume

    # A killed run's shards are held to the settings of that run.
    assert not parts_folder(out).exists()
    later = tmp_path / "g.h5"
    parts = parts_folder(later)
    parts.mkdir()
    settings = run_settings(runs_of(out)[-1])
    check_settings(later, parts, settings)  # what the killed run recorded
    (parts / "part-0.h5").write_bytes(b"")
    changed = {**settings, "patch_support": {"per_size": 6.0, "min_px": 24.0}}
    with pytest.raises(InputError, match=r"g.h5.parts holds features made with patch_support"):
        check_settings(later, parts, changed)
    check_settings(later, parts, settings)


def test_the_ray_engine_is_an_extra_the_core_does_not_pull() -> None:
    from hardnet_export.host import OPTIONAL_PACKAGES

    assert ENGINES["ray"].needs == ("ray",) and OPTIONAL_PACKAGES["ray"] == ("ray", "ray")
    assert ENGINES["local"].needs == ()


def test_cli_exit_status_says_some_images_failed(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_images(root, 2)
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out = tmp_path / "f.h5"
    args = ["extract", str(root), "-o", str(out), "--model", MODEL, "--max-keypoints", "60"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "1 images failed: see" in result.output and "2 images described" in result.output
    again = CliRunner().invoke(app, args)
    assert "2 of 3 images already described: skipped" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be N or MIN,MAX"),
        (["--workers", "3,2", "--engine", "ray"], "MIN <= MAX"),
        (["--address", "auto"], "need --engine ray"),
        (["--engine", "spark"], "engine must be one of"),
        (["-o", "f.npz"], "an hloc features file (.h5)"),
        (["--pairs", "sequential"], "are options of --database"),
    ],
)
def test_cli_bad_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    write_images(tmp_path / "imgs", 1)
    base = ["extract", str(tmp_path / "imgs"), "-o", str(tmp_path / "f.h5")]
    result = CliRunner().invoke(app, [*base, *args])
    assert result.exit_code != 0 and message in str(result.output) + str(result.exception)
    assert not (tmp_path / "f.h5").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hardnet_export", *args]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_driver_loses_nothing_and_the_rerun_completes(tmp_path: Path, signum: int) -> None:
    root = tmp_path / "imgs"
    write_images(root, 24)
    out = tmp_path / "f.h5"
    args = _cli("extract", str(root), "-o", str(out), "--model", MODEL, "--max-keypoints", "120",
                "--images-per-shard", "1")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # SIGINT as a terminal's foreground job has it: a runner started in the background of a
    # non-interactive shell ignores SIGINT, its children inherit that, and the CLI rightly
    # keeps an ignored SIGINT ignored.
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(parts_folder(out).glob("part-*.h5"))) < 3:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 130), stderr
    assert not out.exists()  # nothing under the final name before the merge
    kept = len(list(parts_folder(out).glob("part-*.h5")))
    assert 3 <= kept < 24

    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{kept} of 24 images already described" in rerun.stdout
    assert not parts_folder(out).exists() and not list(tmp_path.glob(".f.h5*"))
    clean = tmp_path / "clean.h5"
    extract(root, clean, **{**COMMON, "backend": None})
    assert_same_features(out, clean)


def test_cli_database_from_the_whole_features_file(tmp_path: Path) -> None:
    pytest.importorskip("pycolmap")
    root = tmp_path / "imgs"
    write_images(root, 3)
    args = ["extract", str(root), "-o", str(tmp_path / "f.h5"), "--model", MODEL,
            "--max-keypoints", "60", "--database", str(tmp_path / "f.db"), "--pairs",
            "sequential"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote " + str(tmp_path / "f.db") + ": 3 images" in result.output
    again = CliRunner().invoke(app, args)  # the database exists: --overwrite replaces it
    assert again.exit_code != 0 and "overwrite" in str(again.exception)
