"""Every API that reads image files checks the header first and names the file once:
``read_image``, ``describe_images``, ``build_database`` (colmap), ``frame_image`` (bench
--image). The bomb is a complete PNG of a hundred bytes whose header claims 30000x30000."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fixture_files import bomb_headers, image_samples

from hardnet_export import runtime
from hardnet_export.applications.features import describe_images
from hardnet_export.applications.images import read_image
from hardnet_export.benchmark.frame import frame_image
from hardnet_export.errors import InputError
from hardnet_export.imagefile import MAX_IMAGE_PIXELS_ENV, ImageTooLargeError
from hardnet_export.shipped import SHIPPED_ONNX

SAMPLES = image_samples()


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    photo = (rng.random((120, 160)) * 255).astype(np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    contents = {
        "bomb.png": bomb_headers(30000, 30000)["png"],
        "empty.jpg": b"",
        "cut.jpg": SAMPLES["jpeg"][: len(SAMPLES["jpeg"]) // 2],
        "notes.png": b"not an image at all",
    }
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    return {p.name: p for p in tmp_path.iterdir()}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_read_image_gives_grayscale_uint8_of_every_format(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(SAMPLES[name])
    image = read_image(path)
    assert image.dtype == np.uint8
    assert image.shape == ((80, 64) if name == "jpeg-exif-rotated" else (64, 80))


def test_read_image_refuses_from_the_header(files: dict[str, Path]) -> None:
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png is 30000x30000 = 900,000,000"):
        read_image(files["bomb.png"])
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ImageTooLargeError, match="above the limit of 19,199"):
        read_image(files["photo.png"], max_image_pixels=160 * 120 - 1)
    assert read_image(files["photo.png"], max_image_pixels=160 * 120).shape == (120, 160)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bomb.png", "is 30000x30000 = 900,000,000 pixels"),
        ("empty.jpg", "is empty (0 bytes), not an image"),
        ("cut.jpg", "the JPEG file is truncated"),
        ("notes.png", "is not an image OpenCV can read"),
    ],
)
@pytest.mark.parametrize("pipeline", [True, False])
def test_describe_images_names_the_file_once(
    files: dict[str, Path], name: str, message: str, pipeline: bool
) -> None:
    describer = runtime.load(SHIPPED_ONNX, device="cpu")
    images = [files["photo.png"], files[name]]
    with pytest.raises(InputError) as info:
        list(describe_images(describer, images, max_keypoints=20, pipeline=pipeline))
    text = str(info.value)
    assert message in text and text.count(str(files[name])) == 1, text
    # With given keypoints too (their errors name both files; a reading error only the image).
    keypoints = np.array([[10.0, 10.0]])
    with pytest.raises(InputError) as info:
        list(describe_images(describer, images, keypoints=keypoints, keypoints_name="k.npy"))
    assert str(info.value).count(str(files[name])) == 1 and "k.npy" not in str(info.value)


def test_describe_images_takes_the_limit(files: dict[str, Path]) -> None:
    describer = runtime.load(SHIPPED_ONNX, device="cpu")
    with pytest.raises(ImageTooLargeError, match="photo.png is 160x120"):
        list(describe_images(describer, [files["photo.png"]], max_image_pixels=1000))
    with pytest.raises(InputError, match="max_image_pixels must be >= 1"):
        list(describe_images(describer, [files["photo.png"]], max_image_pixels=0))


def test_bench_frames_are_read_with_the_limit(files: dict[str, Path]) -> None:
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png is 30000x30000"):
        frame_image(files["bomb.png"])
    with pytest.raises(ImageTooLargeError, match="above the limit of 1,000"):
        frame_image(files["photo.png"], max_image_pixels=1000)


def test_colmap_checks_every_image_before_writing_anything(
    files: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("pycolmap")
    from hardnet_export.applications.colmap import build_database

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(files["photo.png"].read_bytes())
    for name, message in (
        ("z.png", r"z\.png is 30000x30000 = 900,000,000 pixels \(from its PNG header\)"),
        ("z.jpg", r"z\.jpg: the JPEG file is truncated"),
    ):
        source = files["bomb.png" if name == "z.png" else "cut.jpg"]
        (folder / name).write_bytes(source.read_bytes())
        with pytest.raises(InputError, match=message):
            build_database(folder, tmp_path / "x.db", None)
        (folder / name).unlink()
        assert not (tmp_path / "x.db").exists()
    with pytest.raises(ImageTooLargeError, match=r"a\.png is 160x120"):
        build_database(folder, tmp_path / "x.db", None, max_image_pixels=1000)
