"""Bad image files on the command line: every command that reads images (describe, match,
colmap, bench --image) says what is wrong in one line naming the file, within seconds and
before loading a model where the header tells; nothing else reaches stderr (OpenCV's and
libpng's own messages included: captured at the file descriptors)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixture_files import bomb_headers, image_samples, run_main

from hardnet_export.imagefile import MAX_IMAGE_PIXELS_ENV
from hardnet_export.shipped import SHIPPED_ONNX

BAD = {
    "bomb.png": "is 30000x30000 = 900,000,000 pixels (from its PNG header), above the limit of "
    "67,108,864 that guards against decompression bombs; if the image is trusted, raise the "
    f"limit with --max-image-pixels or the environment variable {MAX_IMAGE_PIXELS_ENV}",
    "empty.png": "is empty (0 bytes), not an image",
    "cut.png": "the PNG file is truncated: it ends inside its 'IDAT' chunk",
    "notes.png": "is not an image OpenCV can read",
}


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-images")
    photo = cv2.resize((np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8),
                       (200, 160), interpolation=cv2.INTER_CUBIC)  # fmt: skip
    assert cv2.imwrite(str(folder / "photo.png"), photo)
    png = image_samples()["png"]
    (folder / "bomb.png").write_bytes(bomb_headers(30000, 30000)["png"])
    (folder / "empty.png").write_bytes(b"")
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    (folder / "notes.png").write_bytes(b"not an image at all")
    (folder / "m.onnx").write_bytes(SHIPPED_ONNX.read_bytes())
    return folder


def arguments(command: str, image: Path, folder: Path, tmp_path: Path) -> list[str]:
    model = ["--model", str(folder / "m.onnx")]
    if command == "describe":
        return ["describe", str(folder / "photo.png"), str(image), *model, "-o",
                str(tmp_path / "f.npz")]  # fmt: skip
    if command == "match":
        return ["match", str(folder / "photo.png"), str(image), *model, "-o",
                str(tmp_path / "m.png")]  # fmt: skip
    if command == "colmap":
        images = tmp_path / "images"
        images.mkdir()
        (images / "a.png").write_bytes((folder / "photo.png").read_bytes())
        (images / image.name).write_bytes(image.read_bytes())
        return ["colmap", str(images), "--database", str(tmp_path / "x.db"), *model]
    return ["bench", str(folder / "m.onnx"), "--image", str(image), "--keypoints", "10"]


def run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_main(args, capfd)


@pytest.mark.parametrize("command", ["describe", "match", "colmap", "bench"])
def test_bad_images_are_one_line_naming_the_file(
    command: str, folder: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    if command == "colmap":
        pytest.importorskip("pycolmap")
    for name, message in BAD.items():
        work = tmp_path / name
        work.mkdir()
        args = arguments(command, folder / name, folder, work)
        started = time.perf_counter()
        code, out, err = run(args, capfd)
        assert time.perf_counter() - started < 20, (command, name)
        path = str(Path(args[args.index("--image") + 1]) if command == "bench" else
                   (work / "images" / name if command == "colmap" else folder / name))  # fmt: skip
        assert code == 1 and "OpenCV" not in out and "libpng" not in out, (command, name, out)
        assert err.count("\n") == 1 and err.startswith("error: "), (command, name, err)
        assert message in err and err.count(path) == 1, (command, name, err)
        assert not any(work.glob("*.npz")) and not any(work.glob("*.db")), (command, name)


def test_the_limit_can_be_lowered_and_raised(
    folder: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch
) -> None:
    photo = str(folder / "photo.png")  # 200x160 = 32,000 pixels
    out = ["-o", str(tmp_path / "f.npz"), "--model", str(folder / "m.onnx")]
    code, _, err = run(["describe", photo, *out, "--max-image-pixels", "31999"], capfd)
    assert code == 1 and "photo.png is 200x160 = 32,000 pixels (from its PNG" in err
    assert "above the limit of 31,999" in err
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1000")
    code, _, err = run(["describe", photo, *out], capfd)
    assert code == 1 and "above the limit of 1,000" in err and "--max-image-pixels" in err
    code, _, err = run(["describe", photo, *out, "--max-image-pixels", "32000"], capfd)
    assert code == 0, err
    for bad in ("0", "-5"):
        code, _, err = run(["match", photo, photo, "-o", str(tmp_path / "m.png"),
                            f"--max-image-pixels={bad}"], capfd)  # fmt: skip
        assert code == 1 and "--max-image-pixels must be >= 1" in err, err


@pytest.mark.slow
def test_the_issue_22_bomb_is_refused_by_the_installed_command(
    folder: Path, tmp_path: Path
) -> None:
    # The report's case, end to end in a fresh process: describe on a PNG header claiming
    # 30000x30000 drove the process to 23 GB and an OOM kill.
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "hardnet_export", "describe", str(folder / "bomb.png"),
         "-o", str(tmp_path / "f.npz")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert time.perf_counter() - started < 30
    assert result.returncode == 1 and result.stdout == "", result
    assert result.stderr == f"error: {folder / 'bomb.png'} {BAD['bomb.png']}\n"
