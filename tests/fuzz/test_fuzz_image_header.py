"""Fuzzing the image header reader (``hardnet_export.imagefile``) with broken files of every
format it parses.

Real files of each format (OpenCV's encoders and hand-made variants, plus headers claiming
30000x30000) are truncated, have bytes flipped or size fields overwritten, get bytes inserted
or removed, or keep only their signature before random bytes. Whatever the bytes, the reader
returns a positive size, None (a format it does not parse) or a one-line InputError naming
the file, within the hang guard; a truncated file never claims another size. Mutated files
are then decoded by OpenCV in a separate process whose own cap (OPENCV_IO_MAX_IMAGE_PIXELS) is
4 MP: OpenCV must never decode more pixels than the header reader said, the property that
keeps a bomb from slipping past the limit. Files made to be slow (megabytes of markers, fill
bytes, whitespace, boxes, chunks) are answered in well under a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fixture_files import bomb_headers, image_samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardnet_export.errors import InputError
from hardnet_export.imagefile import ImageTooLargeError, decode_image, read_header

pytestmark = pytest.mark.slow

SEEDS = {
    **{name: data for name, data in image_samples().items() if name != "avif"},
    **{f"bomb-{name}": data for name, data in bomb_headers(30000, 30000).items()},
}
NAME = "/data/photos/fuzzed image.bin"
FUZZ = settings(
    max_examples=400,
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SIZE_FIELDS = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
               b"\x00\x00\x75\x30", b"\x30\x75\x00\x00", b"\x00\x01\x00\x00"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    head = min(len(data), 256)  # the header lies here; mutations aim at it
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "tail"]))
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, head - 1))] = draw(st.integers(0, 255))
    elif kind == "overwrite":
        at = draw(st.integers(0, head - 1))
        field = draw(st.one_of(st.sampled_from(SIZE_FIELDS), st.binary(min_size=2, max_size=4)))
        data[at : at + len(field)] = field
    elif kind == "insert":
        at = draw(st.integers(0, head))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "delete":
        at = draw(st.integers(0, head - 1))
        del data[at : at + draw(st.integers(1, 32))]
    else:
        data = data[: draw(st.integers(1, 16))] + draw(st.binary(max_size=512))
    return name, kind, bytes(data)


@FUZZ
@given(case=mutated())
def test_broken_headers_give_a_size_none_or_one_line(case: tuple[str, str, bytes]) -> None:
    name, kind, data = case
    try:
        header = read_header(data, NAME)
    except InputError as exc:
        assert type(exc) is InputError, type(exc)
        message = str(exc)
        assert "\n" not in message and message.count(NAME) == 1, message
        return
    if header is None:
        return
    assert isinstance(header.width, int) and isinstance(header.height, int)
    assert header.width > 0 and header.height > 0, header
    if kind == "truncate":
        original = read_header(SEEDS[name], NAME)
        assert original is not None and (header.width, header.height) == (
            original.width,
            original.height,
        )


@settings(FUZZ, max_examples=120)
@given(case=mutated())
def test_broken_files_are_decoded_or_refused_in_one_line(
    case: tuple[str, str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The 1 MP limit keeps what a mutated header may make OpenCV allocate small.
    path = tmp_path_factory.getbasetemp() / "fuzzed image.bin"
    path.write_bytes(case[2])
    try:
        image = decode_image(path, max_image_pixels=1 << 20)
    except ImageTooLargeError as exc:
        assert exc.width * exc.height > 1 << 20
        return
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message and message.count(str(path)) == 1, message
        assert "but its" not in message, message  # the decoder and the header disagree
        return
    assert image.size > 0


DECODE_SCRIPT = """
import json, sys
import cv2, numpy as np
from hardnet_export.errors import InputError
from hardnet_export.imagefile import read_header

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
cap = int(sys.argv[1])
found, decoded = [], 0
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    try:
        header = read_header(data, path)
    except InputError:
        continue
    if header is None or header.pixels > cap:
        continue  # refused by the limit before decoding, or not parsed
    for flags in (cv2.IMREAD_GRAYSCALE, cv2.IMREAD_UNCHANGED):
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        except cv2.error as exc:
            if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
                found.append([path, header.width, header.height, "over OpenCV's cap"])
            continue
        if image is not None:
            decoded += 1
            if image.shape[0] * image.shape[1] > header.pixels:
                found.append([path, header.width, header.height, list(image.shape)])
print(json.dumps({"bypasses": found, "decoded": decoded}))
"""


def test_opencv_never_decodes_more_than_the_header_said(tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    paths = []
    for name, seed in SEEDS.items():
        head = min(len(seed), 256)
        for i in range(25):
            data = bytearray(seed)
            for _ in range(rng.integers(1, 6)):
                at = int(rng.integers(0, head))
                field = SIZE_FIELDS[int(rng.integers(0, len(SIZE_FIELDS)))]
                if rng.random() < 0.5:
                    field = bytes([int(rng.integers(0, 256))])
                elif rng.random() < 0.5:
                    field = field[:2]
                data[at : at + len(field)] = field[: len(data) - at]
            path = tmp_path / f"{name}-{i}"
            path.write_bytes(bytes(data))
            paths.append(str(path))
    cap = 1 << 22
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": str(cap)}
    result = subprocess.run(
        [sys.executable, "-c", DECODE_SCRIPT, str(cap), *paths],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["bypasses"] == []
    assert report["decoded"] > 100  # the mutations left many files decodable


SLOW = {
    "jpeg-markers": b"\xff\xd8\xff" + b"\xff\x01" * (2 << 20),
    "jpeg-fill": b"\xff\xd8" + b"\xff" * (4 << 20),
    "jpeg-stuffed": b"\xff\xd8" + b"\xff\x00" * (2 << 20),
    "pnm-space": b"P5" + b" " * (4 << 20),
    "pnm-comment": b"P5\n#" + b"x" * (4 << 20),
    "pfm-token": b"PF\n" + b"9" * (4 << 20),
    "pam-lines": b"P7\n" + b"X 1\n" * (1 << 20),
    "hdr-lines": b"#?RADIANCE\n" + b"x\n" * (2 << 20),
    "jp2-boxes": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x08free" * (1 << 19),
    "tiff-entries": b"II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00\x01\x03\x00" * (3 << 16),
}


@pytest.mark.parametrize("name", sorted(SLOW))
def test_files_made_to_be_slow_are_answered_at_once(name: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match="fuzzed image.bin"):
        read_header(SLOW[name], NAME)
    assert time.perf_counter() - started < 1.0


def test_a_png_of_a_million_chunks_is_checked_at_once(tmp_path: Path) -> None:
    png = SEEDS["png"]
    chunks = b"\x00\x00\x00\x00teXt" + b"\x00" * 4
    path = tmp_path / "chunks.png"
    path.write_bytes(png[:33] + chunks * (1 << 20))  # no IEND: truncated
    started = time.perf_counter()
    with pytest.raises(InputError, match="truncated: it ends before its IEND chunk"):
        decode_image(path)
    assert time.perf_counter() - started < 3.0
