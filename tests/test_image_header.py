"""Image files: sizes read from headers before decoding, the pixel limit, and one line naming
the file for every bad image (``hardnet_export.imagefile``).

The bombs here are real files in their formats whose headers claim 30000x30000 (900 MP) but
that stop after the header (the PNG is complete: IHDR, a little deflated data, IEND): the
refusal has to come from the header, since decoding them would allocate 900 MB first.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixture_files import bomb_headers, image_samples

from hardnet_export.errors import InputError, InputTypeError, MissingFileError
from hardnet_export.imagefile import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_IMAGE_PIXELS_ENV,
    ImageTooLargeError,
    decode_image,
    file_header,
    image_header,
    image_pixel_limit,
    read_header,
)

SAMPLES = image_samples()
BOMBS = bomb_headers(30000, 30000)


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def one_line_naming(message: str, path: Path) -> None:
    assert "\n" not in message, message
    assert message.count(str(path)) == 1, message


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_header_gives_the_decoded_size(name: str, tmp_path: Path) -> None:
    path = write(tmp_path, name, SAMPLES[name])
    header = read_header(SAMPLES[name], path)
    if name == "avif":
        assert header is None  # not parsed: decoded under OpenCV's cap, then checked
    else:
        assert header is not None and (header.width, header.height) == (80, 64), header
        assert file_header(path) == image_header(path) == header
    image = decode_image(path)
    # EXIF orientation 6 turns the image; the header gives the stored size.
    assert image.shape[:2] == ((80, 64) if name == "jpeg-exif-rotated" else (64, 80))


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_from_its_header(name: str, tmp_path: Path) -> None:
    path = write(tmp_path, f"bomb-{name}", BOMBS[name])
    header = read_header(BOMBS[name], path)
    assert header is not None and header.pixels > DEFAULT_MAX_IMAGE_PIXELS
    for check in (decode_image, image_header):
        started = time.perf_counter()
        with pytest.raises(ImageTooLargeError) as info:
            check(path)
        assert time.perf_counter() - started < 1.0
        message = str(info.value)
        one_line_naming(message, path)
        assert message.startswith(f"{path} is {header.width}x{header.height} = ")
        assert f"from its {header.format} header" in message
        assert "above the limit of 67,108,864" in message
        assert "max_image_pixels=" in message and MAX_IMAGE_PIXELS_ENV in message


BOMB_SCRIPT = """
import sys
from hardnet_export.imagefile import ImageTooLargeError, decode_image

for path in sys.argv[1:]:
    try:
        decode_image(path)
    except ImageTooLargeError:
        continue
    raise SystemExit(f"{path} was not refused from its header")
# The peak resident size of this program (ru_maxrss would start from the forking parent's).
status = open("/proc/self/status").read()
print(status.split("VmHWM:")[1].split()[0])
"""


@pytest.mark.slow
def test_bombs_are_refused_in_little_memory(tmp_path: Path) -> None:
    # Under an address-space limit that decoding any of them (900 MB) would exceed.
    paths = [str(write(tmp_path, f"bomb-{name}", data)) for name, data in BOMBS.items()]

    def limit_memory() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (1200 << 20, 1200 << 20))

    result = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, *paths],
        capture_output=True, text=True, timeout=60, preexec_fn=limit_memory,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 300_000, f"peak resident {result.stdout.strip()} kB"


def test_the_limit_comes_from_the_parameter_the_environment_or_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default keeps every full-frame camera's photos (61 MP: 9504x6336) and stays within
    # the memory of a 24 GB machine (about 210 bytes per pixel with SIFT detection).
    assert DEFAULT_MAX_IMAGE_PIXELS == 2**26 >= 9504 * 6336
    assert DEFAULT_MAX_IMAGE_PIXELS * 210 < 20e9
    assert image_pixel_limit() == DEFAULT_MAX_IMAGE_PIXELS
    path = write(tmp_path, "a.png", SAMPLES["png"])
    assert decode_image(path, max_image_pixels=80 * 64).shape == (64, 80)
    with pytest.raises(ImageTooLargeError, match=r"a\.png is 80x64 = 5,120 pixels.*of 5,119"):
        decode_image(path, max_image_pixels=80 * 64 - 1)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "5000")
    assert image_pixel_limit() == 5000
    with pytest.raises(ImageTooLargeError, match="above the limit of 5,000"):
        decode_image(path)
    assert decode_image(path, max_image_pixels=6000).shape == (64, 80)  # the parameter wins
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "300000000")  # raised above the default
    assert image_pixel_limit() == 300_000_000
    for bad in ("lots", "0", "-5", "1e9", str(2**63)):
        monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, bad)
        with pytest.raises(InputError, match=f"{MAX_IMAGE_PIXELS_ENV} must be a whole number"):
            decode_image(path)
    with pytest.raises(InputError, match="max_image_pixels must be >= 1"):
        image_pixel_limit(0)
    with pytest.raises(InputTypeError):
        image_pixel_limit(True)  # type: ignore[arg-type]


def test_the_remedy_speaks_python_or_the_cli() -> None:
    error = ImageTooLargeError("p.png", 30000, 30000, 2**27, source="PNG header")
    assert "raise the limit with max_image_pixels= or the environment variable" in str(error)
    cli = error.message(option="--max-image-pixels")
    assert (
        "--max-image-pixels or the environment variable" in cli and "max_image_pixels=" not in cli
    )
    bare = ImageTooLargeError("p.png", 30000, 30000, 2**27, parameter=None)
    assert str(bare).endswith(
        f"raise the limit with the environment variable {MAX_IMAGE_PIXELS_ENV}"
    )


def test_an_image_format_without_a_parser_is_checked_after_decoding(tmp_path: Path) -> None:
    path = write(tmp_path, "a.avif", SAMPLES["avif"])
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(path, max_image_pixels=1000)
    assert str(info.value).startswith(f"{path} is 80x64 = 5,120 pixels, above")


def test_empty_missing_folder_and_garbage_files(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.jpg", b"")
    for check in (decode_image, image_header, file_header):
        with pytest.raises(InputError, match=r"^\S*empty\.jpg is empty \(0 bytes\), not an image$"):
            check(empty)
    with pytest.raises(MissingFileError, match=r"image not found: .*none\.png"):
        decode_image(tmp_path / "none.png")
    with pytest.raises(InputError, match=r"is a folder; expected an image file"):
        decode_image(tmp_path)
    garbage = write(tmp_path, "notes.png", b"not a png at all")
    with pytest.raises(InputError, match=r"notes\.png is not an image OpenCV can read$"):
        decode_image(garbage)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_truncated_files_are_one_line_naming_the_file(name: str, tmp_path: Path) -> None:
    data = SAMPLES[name]
    for keep in (5, 12, 40, len(data) // 2, len(data) - 12, len(data) - 2, len(data) - 1):
        path = write(tmp_path, f"cut-{keep}-{name}", data[:keep])
        with pytest.raises(InputError) as info:
            decode_image(path)
        message = str(info.value)
        one_line_naming(message, path)
        assert not isinstance(info.value, ImageTooLargeError)
        if name != "avif" and keep >= 5:
            assert "truncated" in message or "corrupt" in message, message


def test_a_jpeg_without_its_end_is_refused(tmp_path: Path) -> None:
    # libjpeg can render what a cut JPEG holds (grey below; OpenCV 4 returned that with a
    # warning): refused instead, since a structure-from-motion run would rather be told
    # than match against grey.
    jpeg = SAMPLES["jpeg-progressive"]
    for data in (jpeg[:-2], jpeg[: len(jpeg) * 3 // 4]):
        path = write(tmp_path, "cut.jpg", data)
        with pytest.raises(InputError, match=r"the JPEG file is truncated: it ends before its "):
            decode_image(path)
    # Bytes after the end-of-image marker (an appended video, a thumbnail) are fine.
    assert decode_image(write(tmp_path, "tail.jpg", jpeg + b"MP4 data")).shape == (64, 80)


def test_truncated_and_corrupt_headers_say_where(tmp_path: Path) -> None:
    cases = {
        "cut.png": (
            SAMPLES["png"][:20],
            r"the PNG file is truncated: it ends before the image size",
        ),
        "cut.tif": (SAMPLES["tiff-big-endian"][:30], r"TIFF file is truncated: it ends inside"),
        "noifd.tif": (b"II*\0" + bytes(4), r"not a valid TIFF file: its first image directory"),
        "zero.gif": (b"GIF89a" + bytes(7), r"not a valid GIF file: its header gives a size of 0x0"),
        "bad.pgm": (b"P5\n80 x64\n255\n", r"not a valid PNM file: byte 0x78"),
        "huge.pgm": (b"P5\n99999999999 1\n255\n", r"not a valid PNM file: the width has more"),
        "sof.jpg": (b"\xff\xd8\xff\xda\x00\x02", r"not a valid JPEG file: image data comes before"),
        "hdr.hdr": (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n+X 5 -Y 5\n", r"its size line is"),
    }
    for name, (data, message) in cases.items():
        path = write(tmp_path, name, data)
        with pytest.raises(InputError, match=message) as info:
            decode_image(path)
        one_line_naming(str(info.value), path)


@pytest.mark.parametrize("name", ["tiff-big-endian", "bigtiff"])
def test_a_tiff_size_tag_given_twice_must_agree(name: str, tmp_path: Path) -> None:
    # The fixture's last entry is StripByteCounts (279); make it a second ImageWidth (256).
    data = bytearray(SAMPLES[name])
    big = name == "bigtiff"
    order = ">" if data[:2] == b"MM" else "<"
    count_at, entry = (16, 20) if big else (8, 12)
    (count,) = struct.unpack_from(order + ("Q" if big else "H"), data, count_at)
    last = count_at + (8 if big else 2) + (count - 1) * entry
    assert struct.unpack_from(order + "H", data, last) == (279,)
    struct.pack_into(order + "H", data, last, 256)
    value_at = last + (12 if big else 8)
    for width, fine in ((80, True), (5120, False)):
        struct.pack_into(order + "I", data, value_at, width)
        path = write(tmp_path, f"twice-{width}.tif", bytes(data))
        if fine:  # the same value twice: a harmless repeat (libtiff decodes it)
            assert decode_image(path).shape == (64, 80)
            continue
        with pytest.raises(InputError, match="gives ImageWidth twice, 80 and 5120") as info:
            decode_image(path)
        one_line_naming(str(info.value), path)


def test_pnm_numbers_are_read_the_way_opencv_reads_them(tmp_path: Path) -> None:
    # OpenCV's PNM reader consumes the byte after a number: in "80#9..." the 9 starts the
    # height, so a parser taking "#9..." for a comment would say 80x1 where OpenCV decodes
    # 80x99999.
    data = b"P5 80#99999\n1 255\n"
    header = read_header(data, "x.pgm")
    assert header is not None and (header.width, header.height) == (80, 99999)


def test_headers_past_the_first_mebibyte_are_found(tmp_path: Path) -> None:
    # A JPEG with 1.1 MB of metadata segments before its frame header, and a TIFF whose
    # directory follows 1.1 MB of pixels (where OpenCV's own writer puts it).
    jpeg = SAMPLES["jpeg"]
    segments = (b"\xff\xef" + struct.pack(">H", 65535) + bytes(65533)) * 17
    tiff = cv2.imencode(".tiff", np.zeros((1000, 1100), np.uint8),
                        [cv2.IMWRITE_TIFF_COMPRESSION, 1])[1].tobytes()  # fmt: skip
    for name, data, size in (
        ("big-exif.jpg", jpeg[:2] + segments + jpeg[2:], (80, 64)),
        ("late-ifd.tif", tiff, (1100, 1000)),
    ):
        assert len(data) > 1 << 20
        path = write(tmp_path, name, data)
        header = image_header(path)
        assert header is not None and (header.width, header.height) == size
        assert decode_image(path).shape == size[::-1]


def test_opencv_prints_nothing_of_its_own(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # OpenCV logs its decoder errors with source paths; ours say it in one line.
    for name in ("bmp", "hdr", "sun-raster"):
        with pytest.raises(InputError, match="OpenCV rejects it as a corrupt or truncated"):
            decode_image(write(tmp_path, f"cut-{name}", SAMPLES[name][:-40]))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == "", captured


def test_a_png_with_a_damaged_chunk_is_refused_before_libpng_prints(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(SAMPLES["png"])
    idat = data.find(b"IDAT")
    data[idat + 40] ^= 0xFF  # a bit flip on disk: the chunk's CRC no longer matches
    path = write(tmp_path, "flipped.png", bytes(data))
    with pytest.raises(InputError, match=r"not a valid PNG file: its 'IDAT' chunk at byte \d+ "
                       "fails its CRC check$"):  # fmt: skip
        decode_image(path)
    assert capfd.readouterr().err == ""


def test_opencvs_own_cap_is_one_line_naming_the_file(tmp_path: Path) -> None:
    # Issue 22: a header claiming 100000x100000 gave "internal error ... CV_IO_MAX_IMAGE_PIXELS"
    # without the file name. Refused by the limit now; with the limit raised past OpenCV's
    # own cap (2**30 pixels, checked before OpenCV allocates), OpenCV's refusal is our line.
    if "OPENCV_IO_MAX_IMAGE_PIXELS" in os.environ:
        pytest.skip("OpenCV's cap is changed in this environment")
    path = write(tmp_path, "huge.png", bomb_headers(100000, 100000)["png"])
    with pytest.raises(ImageTooLargeError, match=r"huge\.png is 100000x100000 = 10,000,000,000"):
        decode_image(path)
    with pytest.raises(InputError) as info:
        decode_image(path, max_image_pixels=10**10)
    message = str(info.value)
    one_line_naming(message, path)
    reason = "(-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS"
    assert message == f"cannot decode {path}: OpenCV says {reason}"


def test_read_image_bytes_checks_the_header_then_reads_the_rest(tmp_path: Path) -> None:
    from hardnet_export.imagefile import ImageTooLargeError, read_image_bytes

    for fmt, data in image_samples().items():
        path = tmp_path / f"sample.{fmt}"
        path.write_bytes(data)
        assert read_image_bytes(path) == data, fmt
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_headers(60000, 60000)["png"])
    with pytest.raises(ImageTooLargeError, match="60000x60000"):
        read_image_bytes(bomb)
    with pytest.raises(InputError, match="is a folder"):
        read_image_bytes(tmp_path)
