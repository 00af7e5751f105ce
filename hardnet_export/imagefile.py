"""Image files: their size read from the header before decoding, and a pixel limit on it.

An 875 KB PNG of 30000x30000 zeros decodes to 900 MB, and SIFT detection on it wants about
190 GB: a file's claimed size must be refused before OpenCV decodes a single row. Every reader
of image files in the package goes through :func:`decode_image`, which

1. reads the width and height from the header (:func:`read_header`: PNG, JPEG, BMP, TIFF
   and BigTIFF, WebP, PNM/PAM/PFM, GIF, Sun raster, Radiance HDR, JPEG 2000), refusing a
   truncated or corrupt header, or a size above the limit (:func:`image_pixel_limit`), in
   one line naming the file;
2. refuses a PNG or JPEG whose data is cut short before OpenCV sees it (both decoders would
   fail on it anyway, after printing their own messages);
3. decodes with OpenCV's log silenced (its failures become one line of ours) and checks the
   decoded size against the header and the limit. A format without a parser here (AVIF)
   is decoded under OpenCV's own cap (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2**30 by default)
   and its codec's, then refused by that check.

Where a header is ambiguous the parser takes what the decoder would take, and where it cannot
tell, the larger size: a parser may refuse a file OpenCV reads, never pass one bigger than it
says. Torch-free, numpy and OpenCV only: part of the floor.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.validate import check_int

#: The largest image read by default, in pixels: 2**26 = 67,108,864 (8192x8192). Above every
#: full-frame camera (61 MP: 9504x6336), below the 100 MP of medium-format ones (which need
#: it raised) and far below a decompression bomb. Why not higher: ``describe`` with SIFT
#: detection holds about 210 bytes per pixel (measured: 3.0 GB resident for a 12 MP photo),
#: so an image at this limit takes some 14 GB, and one at 2**27 would not fit the 24 GB
#: machines this project runs on. Lower it on a small machine.
DEFAULT_MAX_IMAGE_PIXELS = 1 << 26
#: The environment variable that sets the limit where no ``max_image_pixels`` is given.
MAX_IMAGE_PIXELS_ENV = "HARDNET_EXPORT_MAX_IMAGE_PIXELS"

# Headers are read from this much of the file first; a JPEG with large EXIF/ICC segments or
# a TIFF whose directory sits after the pixels reads the rest.
_HEAD_BYTES = 1 << 20
# Text headers (PNM, PAM, PFM, HDR) longer than this are refused rather than scanned.
_TEXT_HEADER_BYTES = 1 << 16
# Real JPEGs have tens of segments before the frame header; the bound keeps a file made
# of nothing but markers from taking seconds in Python.
_MAX_JPEG_SEGMENTS = 1 << 16
# Real JPEG 2000 files have a handful of boxes before the codestream.
_MAX_JP2_BOXES = 1 << 12
_INT_MAX = (1 << 31) - 1
# A pixel count is a 64-bit integer in numpy and OpenCV.
_MAX_LIMIT = (1 << 63) - 1


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: its format and size, before any decoding."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ImageTooLargeError(InputError):
    """An image whose header (or decoded size) has more pixels than the limit.

    ``parameter`` is the keyword of the API that was called (None where it has none); the
    CLI renders the remedy with its own option instead (:meth:`message`).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        limit: int,
        *,
        source: str = "",
        parameter: str | None = "max_image_pixels",
    ) -> None:
        self.path = str(path)
        self.width = width
        self.height = height
        self.limit = limit
        self.source = source
        self.parameter = parameter
        super().__init__(self.message())

    def message(self, option: str | None = None) -> str:
        """The sentence, naming ``option`` (a CLI flag) as the way to raise the limit."""
        how = option or (f"{self.parameter}=" if self.parameter else None)
        env = f"the environment variable {MAX_IMAGE_PIXELS_ENV}"
        where = f" (from its {self.source})" if self.source else ""
        return (
            f"{self.path} is {self.width}x{self.height} = {self.width * self.height:,} "
            f"pixels{where}, above the limit of {self.limit:,} that guards against "
            f"decompression bombs; if the image is trusted, raise the limit with "
            f"{f'{how} or {env}' if how else env}"
        )


def image_pixel_limit(max_image_pixels: int | None = None) -> int:
    """The pixel limit: ``max_image_pixels`` when given, else the environment variable
    :data:`MAX_IMAGE_PIXELS_ENV`, else :data:`DEFAULT_MAX_IMAGE_PIXELS`.

    Raises:
        ValueError: a limit (or the variable) that is not a whole number above 0.
    """
    if max_image_pixels is not None:
        return check_int("max_image_pixels", max_image_pixels, low=1, high=_MAX_LIMIT)
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_LIMIT:
        raise InputError(
            f"the environment variable {MAX_IMAGE_PIXELS_ENV} must be a whole number of "
            f"pixels from 1 to 2**63 - 1, got {text[:40]!r}"
        )
    return value


def read_header(data: bytes, name: str | Path) -> ImageHeader | None:
    """The format and size an image's header claims; None for a format not parsed here.

    Raises:
        ValueError: empty data, or a header of a known format that is truncated, corrupt
            or gives a size of 0; the one-line message names ``name``.
    """
    if not data:
        raise InputError(f"{name} is empty (0 bytes), not an image")
    found = _parser_for(data)
    if found is None:
        return None
    fmt, parse = found
    with _named(name, fmt):
        width, height = parse(data)
    if width <= 0 or height <= 0:
        raise InputError(
            f"cannot decode {name}: not a valid {fmt} file: its header gives a size of "
            f"{width}x{height}"
        )
    return ImageHeader(fmt, width, height)


def file_header(path: str | Path) -> ImageHeader | None:
    """:func:`read_header` of an image file without reading all of it: the first MiB, the
    rest only where the header lies further on (a JPEG's large EXIF segments, a TIFF's
    directory after its pixels).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an empty file, a truncated or corrupt header.
    """
    path = _image_file(path)
    with open(path, "rb") as file:
        data = _head(file)
    return read_header(data, path)


def _head(file: BinaryIO) -> bytes:
    """The first MiB of an open image file, or more where its header lies further on."""
    data = file.read(_HEAD_BYTES)
    try:
        found = _parser_for(data)
        if found is not None:
            found[1](data)
    except _Truncated:
        data += file.read()
    except _Corrupt:
        pass  # read_header words it
    return data


def read_image_bytes(
    path: str | Path,
    *,
    max_image_pixels: int | None = None,
    parameter: str | None = "max_image_pixels",
) -> bytes:
    """An image file's bytes, read once, its header checked against the limit before the
    rest is read: an oversized image is refused after its first MiB, and a stream (a pipe)
    is read only once.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an empty file, a truncated or corrupt header, or a size above
            the limit (:class:`ImageTooLargeError`).
    """
    path = _image_file(path)
    limit = image_pixel_limit(max_image_pixels)
    with open(path, "rb") as file:
        data = _head(file)
        header = read_header(data, path)
        if header is not None:
            _check_header(path, header, limit, parameter)
        return data + file.read()


def image_header(
    path: str | Path,
    *,
    max_image_pixels: int | None = None,
    parameter: str | None = "max_image_pixels",
) -> ImageHeader | None:
    """Check an image file's header against the limit without decoding it: a cheap check of
    many files before any work starts. None for a format not parsed here, which
    :func:`decode_image` checks after decoding.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an empty file, a truncated or corrupt header, or a size above
            the limit (:class:`ImageTooLargeError`).
    """
    limit = image_pixel_limit(max_image_pixels)
    header = file_header(path)
    if header is not None:
        _check_header(Path(path), header, limit, parameter)
    return header


def decode_image(
    path: str | Path,
    *,
    flags: int = cv2.IMREAD_GRAYSCALE,
    max_image_pixels: int | None = None,
    parameter: str | None = "max_image_pixels",
) -> np.ndarray:
    """Decode an image file with OpenCV (``cv2.imdecode`` with ``flags``), its size checked
    from the header first.

    Args:
        path: the image file.
        flags: OpenCV's ``IMREAD_*`` flags.
        max_image_pixels: the most pixels accepted (see :func:`image_pixel_limit`).
        parameter: the caller's keyword for the limit, named in the error (None: only the
            environment variable is named).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an empty, truncated or corrupt file, one OpenCV cannot
            decode, or one above the limit (:class:`ImageTooLargeError`); one line naming
            the file.

    Shape:
        - Output: (H, W) or (H, W, C), as OpenCV decodes it with ``flags``.
    """
    path = _image_file(path)
    return decode_bytes(
        path.read_bytes(),
        path,
        flags=flags,
        max_image_pixels=max_image_pixels,
        parameter=parameter,
    )


def decode_bytes(
    data: bytes,
    name: str | Path,
    *,
    flags: int = cv2.IMREAD_GRAYSCALE,
    max_image_pixels: int | None = None,
    parameter: str | None = "max_image_pixels",
) -> np.ndarray:
    """:func:`decode_image` of a file's bytes already read (the bulk extractor hashes the
    very bytes it decodes); ``name`` is the file the errors name.

    Raises:
        ValueError: as :func:`decode_image`.

    Shape:
        - Output: (H, W) or (H, W, C), as OpenCV decodes it with ``flags``.
    """
    path = Path(name)
    limit = image_pixel_limit(max_image_pixels)
    header = read_header(data, path)
    if header is not None:
        _check_header(path, header, limit, parameter)
        _check_complete(data, header.format, path)
    # imdecode instead of imread: it handles non-ASCII paths on every platform.
    try:
        with _opencv_quiet():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise InputError(f"cannot decode {path}: OpenCV says {_opencv_reason(exc)}") from None
    if image is None:
        if header is None:
            raise InputError(f"{path} is not an image OpenCV can read")
        raise InputError(
            f"cannot decode {path}: OpenCV rejects it as a corrupt or truncated "
            f"{header.format} file"
        )
    height, width = image.shape[:2]
    _check_limit(path, width, height, limit, "", parameter)
    # EXIF orientation may turn the image by 90 degrees.
    if header is not None and (width, height) not in (
        (header.width, header.height),
        (header.height, header.width),
    ):
        raise InputError(
            f"cannot decode {path}: it decodes to {width}x{height} pixels, but its "
            f"{header.format} header says {header.width}x{header.height}"
        )
    return image


def _image_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected an image file")
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")
    return path


def _check_limit(
    path: Path, width: int, height: int, limit: int, source: str, parameter: str | None
) -> None:
    if width * height > limit:
        raise ImageTooLargeError(path, width, height, limit, source=source, parameter=parameter)


def _check_header(path: Path, header: ImageHeader, limit: int, parameter: str | None) -> None:
    _check_limit(path, header.width, header.height, limit, f"{header.format} header", parameter)


def _opencv_reason(exc: cv2.error) -> str:
    """``(-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS`` from OpenCV's
    multi-line message with source paths."""
    text = " ".join(str(exc).split())
    reason = text.partition(" error: ")[2] or text
    return reason.partition(" in function ")[0]


class _Quiet:
    """OpenCV's log level silenced while any thread decodes, restored after the last one:
    its ERROR lines would repeat, with source paths, what our one-line error says."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        logging = getattr(getattr(cv2, "utils", None), "logging", None)
        if logging is None:
            yield
            return
        with self.lock:
            if self.depth == 0:
                self.saved = logging.getLogLevel()
                logging.setLogLevel(logging.LOG_LEVEL_SILENT)
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if self.depth == 0:
                    logging.setLogLevel(self.saved)


_opencv_quiet = _Quiet()


class _Truncated(Exception):
    """The data ends before what the message names (``before the image size``)."""


class _Corrupt(Exception):
    """The header is not one the format allows; the message says how."""


@contextmanager
def _named(name: str | Path, fmt: str) -> Iterator[None]:
    """A parser's truncation or corruption as the one-line error naming the file."""
    try:
        yield
    except _Truncated as exc:
        message = f"cannot decode {name}: the {fmt} file is truncated: it ends {exc}"
        raise InputError(message) from None
    except _Corrupt as exc:
        raise InputError(f"cannot decode {name}: not a valid {fmt} file: {exc}") from None


def _unpack(fmt: str, data: bytes, offset: int, what: str) -> tuple[int, ...]:
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        raise _Truncated(f"before {what}")
    return struct.unpack_from(fmt, data, offset)


def _png(data: bytes) -> tuple[int, int]:
    length, kind = _unpack(">I4s", data, 8, "its IHDR chunk")
    if kind != b"IHDR" or length != 13:
        raise _Corrupt("it does not start with a 13-byte IHDR chunk")
    width, height = _unpack(">II", data, 16, "the image size")
    return width, height


#: Start-of-frame markers libjpeg reads the size from (not DHT 0xC4, JPG 0xC8, DAC 0xCC).
_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
#: Markers without a length field: TEM and RST0-7 (SOI and EOI too, handled apart).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# libjpeg skips stray bytes and 0xFF fill before a marker; a marker is 0xFF followed by
# neither 0x00 (a stuffed byte) nor 0xFF. A two-byte pattern: no backtracking on long runs.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff]")


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, offset, end) of each segment after SOI, in order, as libjpeg finds them."""
    pos = 2
    for _ in range(_MAX_JPEG_SEGMENTS):
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            raise _Truncated("before the frame header")
        at = found.start()
        marker = data[at + 1]
        if marker in _JPEG_STANDALONE or marker in (0xD8, 0xD9):
            yield marker, at, at + 2
            pos = at + 2
            continue
        (length,) = _unpack(">H", data, at + 2, f"the length of marker 0x{marker:02X}")
        if length < 2:
            raise _Corrupt(f"marker 0x{marker:02X} at byte {at} has a length of {length}")
        yield marker, at, at + 2 + length
        pos = at + 2 + length
    raise _Corrupt(f"more than {_MAX_JPEG_SEGMENTS} markers before the image data")


def _jpeg(data: bytes) -> tuple[int, int]:
    for marker, at, _end in _jpeg_segments(data):
        if marker in _JPEG_SOF:
            height, width = _unpack(">HH", data, at + 5, "the image size")
            return width, height
        if marker in (0xD8, 0xD9, 0xDA):
            name = {0xD8: "a second start of image", 0xD9: "the end of image"}
            raise _Corrupt(f"{name.get(marker, 'image data')} comes before the frame header")
    raise AssertionError("unreachable: _jpeg_segments raises when it runs out")


def _bmp(data: bytes) -> tuple[int, int]:
    (size,) = _unpack("<I", data, 14, "its DIB header")
    # OpenCV's reader: a header of 36 bytes or more holds 32-bit sizes, a 12-byte one
    # (OS/2) 16-bit ones; a negative height means rows top-down.
    if 36 <= size <= _INT_MAX:
        width, height = _unpack("<ii", data, 18, "the image size")
        return width, abs(height)
    if size == 12:
        width, height = _unpack("<HH", data, 18, "the image size")
        return width, height
    raise _Corrupt(f"its DIB header size {size} is none OpenCV reads (12, or 36 and more)")


_TIFF_SHORT, _TIFF_LONG, _TIFF_LONG8 = 3, 4, 16
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (magic,) = _unpack(order + "H", data, 2, "its version")
    if magic == 42:
        (ifd,) = _unpack(order + "I", data, 4, "its first directory offset")
        count_fmt, entry_size, value_at = "H", 12, 8
    else:
        bytesize, zero, ifd = _unpack(order + "HHQ", data, 4, "its first directory offset")
        if bytesize != 8 or zero != 0:
            raise _Corrupt(f"a BigTIFF header with offsets of {bytesize} bytes")
        count_fmt, entry_size, value_at = "Q", 20, 12
    if ifd < 8:
        raise _Corrupt(f"its first image directory is at byte {ifd}")
    (count,) = _unpack(order + count_fmt, data, ifd, "its first image directory")
    if not 0 < count <= 0xFFFF:
        raise _Corrupt(f"its first image directory has {count} entries")
    start = ifd + struct.calcsize(order + count_fmt)
    if start + count * entry_size > len(data):
        raise _Truncated("inside its first image directory")
    sizes: dict[int, int] = {}
    for i in range(count):
        at = start + i * entry_size
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag not in (_TIFF_WIDTH, _TIFF_LENGTH):
            continue
        (n,) = struct.unpack_from(order + ("I" if magic == 42 else "Q"), data, at + 4)
        fmt = {_TIFF_SHORT: "H", _TIFF_LONG: "I", _TIFF_LONG8: "Q"}.get(kind)
        if fmt is None or n != 1 or (fmt == "Q" and magic == 42):
            raise _Corrupt(f"tag {tag} has type {kind} and count {n}; expected one integer")
        (value,) = struct.unpack_from(order + fmt, data, at + value_at)
        # Tags are unique in a directory; one given twice with two values leaves the size to
        # whichever the decoder keeps (libtiff kept the first, 80 against a later 5120).
        if sizes.get(tag, value) != value:
            name = "ImageWidth" if tag == _TIFF_WIDTH else "ImageLength"
            raise _Corrupt(
                f"its first image directory gives {name} twice, {sizes[tag]} and {value}"
            )
        sizes[tag] = value
    if _TIFF_WIDTH not in sizes or _TIFF_LENGTH not in sizes:
        raise _Corrupt("its first image directory has no ImageWidth or ImageLength")
    return sizes[_TIFF_WIDTH], sizes[_TIFF_LENGTH]


def _webp(data: bytes) -> tuple[int, int]:
    chunk = bytes(data[12:16])
    _unpack("<I", data, 16, "its first chunk")
    if chunk == b"VP8 ":
        start, width, height = _unpack("<3sHH", data, 23, "the VP8 frame size")
        if start != b"\x9d\x01\x2a":
            raise _Corrupt("its VP8 frame has no start code")
        return width & 0x3FFF, height & 0x3FFF  # the top 2 bits scale, libwebp ignores them
    if chunk == b"VP8L":
        signature, bits = _unpack("<BI", data, 20, "the VP8L image size")
        if signature != 0x2F:
            raise _Corrupt("its VP8L chunk has no signature byte")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        if len(data) < 30:
            raise _Truncated("before the canvas size")
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    raise _Corrupt(f"its first chunk is {chunk!r}, not VP8, VP8L or VP8X")


def _gif(data: bytes) -> tuple[int, int]:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise _Corrupt(f"version {bytes(data[3:6])!r}, not 87a or 89a")
    # Every frame must lie inside the logical screen (OpenCV asserts it), so the screen's
    # size bounds what is decoded.
    width, height = _unpack("<HH", data, 6, "the screen size")
    return width, height


def _sun_raster(data: bytes) -> tuple[int, int]:
    width, height = _unpack(">II", data, 4, "the image size")
    return width, height


# OpenCV's PNM reader: whitespace and comments from '#' to the end of the line between
# numbers; any other byte ends the header with an error.
_PNM_GAP = re.compile(rb"(?:[ \t\n\v\f\r]|#[^\n\r]*[\n\r])*")
_DIGITS = re.compile(rb"[0-9]+")


def _pnm_number(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """The decimal number after whitespace and comments from ``pos``, and where the next one
    starts: like OpenCV's reader, the byte after the digits is consumed, whatever it is (in
    ``80#9 ...`` the 9 is the next number, not part of a comment)."""
    gap = _PNM_GAP.match(data, pos, _TEXT_HEADER_BYTES)
    assert gap is not None  # the pattern matches the empty string
    pos = gap.end()
    if pos >= min(len(data), _TEXT_HEADER_BYTES) or data[pos] == ord("#"):
        if len(data) > _TEXT_HEADER_BYTES:
            raise _Corrupt(f"its header is longer than {_TEXT_HEADER_BYTES} bytes")
        raise _Truncated(f"before {what}")
    digits = _DIGITS.match(data, pos)
    if digits is None:
        raise _Corrupt(f"byte 0x{data[pos]:02X} at {pos} where {what} should be")
    if digits.end() >= len(data):
        raise _Truncated(f"inside {what}")  # more digits may follow: OpenCV reads one byte on
    text = digits.group()
    if len(text) > 10 or int(text) > _INT_MAX:
        raise _Corrupt(f"{what} has more digits than OpenCV reads")
    return int(text), digits.end() + 1


def _pnm(data: bytes) -> tuple[int, int]:
    width, pos = _pnm_number(data, 2, "the width")
    height, _ = _pnm_number(data, pos, "the height")
    return width, height


_PFM_TOKEN = re.compile(rb"[^ \t\n\v\f\r]{0,2048}")
_ATOI = re.compile(rb"[+-]?[0-9]+")


def _pfm(data: bytes) -> tuple[int, int]:
    # OpenCV's reader: a line break after PF/Pf, then tokens up to the next whitespace byte
    # (at most 2048 bytes), each read with atoi (leading digits; anything else gives 0).
    if data[2:3] != b"\n":
        raise _Corrupt("no line break after its PF or Pf")
    pos, sizes = 3, []
    for what in ("the width", "the height"):
        token = _PFM_TOKEN.match(data, pos)
        assert token is not None  # the pattern matches the empty string
        if token.end() >= len(data):
            raise _Truncated(f"inside {what}")
        pos = token.end() + (len(token.group()) < 2048)
        number = _ATOI.match(token.group())
        if number is None:
            raise _Corrupt(f"{what} is {token.group()[:20]!r}, not a number")
        if len(number.group().lstrip(b"+-")) > 10 or abs(int(number.group())) > _INT_MAX:
            raise _Corrupt(f"{what} has more digits than OpenCV reads")
        sizes.append(int(number.group()))
    return sizes[0], sizes[1]


def _pam(data: bytes) -> tuple[int, int]:
    head = bytes(data[:_TEXT_HEADER_BYTES])
    end = re.search(rb"(?m)^[ \t]*ENDHDR\b", head)
    if end is None:
        if len(data) > _TEXT_HEADER_BYTES:
            raise _Corrupt(f"no ENDHDR in the first {_TEXT_HEADER_BYTES} bytes")
        raise _Truncated("before ENDHDR")
    sizes: dict[bytes, int] = {}
    for line in re.split(rb"[\r\n]", head[3 : end.start()]):
        words = line.split(b"#", 1)[0].split()
        if len(words) >= 2 and words[0] in (b"WIDTH", b"HEIGHT"):
            if not words[1].isdigit() or len(words[1]) > 10:
                raise _Corrupt(f"{words[0].decode()} is {words[1][:20]!r}")
            # A repeated field: the larger value, whichever one the reader keeps.
            sizes[words[0]] = max(int(words[1]), sizes.get(words[0], 0))
    if b"WIDTH" not in sizes or b"HEIGHT" not in sizes:
        raise _Corrupt("its header has no WIDTH or HEIGHT")
    return sizes[b"WIDTH"], sizes[b"HEIGHT"]


def _hdr_line(data: bytes, pos: int) -> tuple[bytes, int]:
    """One ``fgets(buf, 128)`` of OpenCV's RGBE reader: up to 127 bytes, through a newline."""
    if pos >= len(data):
        raise _Truncated("inside its header")
    newline = data.find(b"\n", pos, pos + 127)
    stop = min(len(data), pos + 127 if newline < 0 else newline + 1)
    return bytes(data[pos:stop]), stop


_HDR_SIZE = re.compile(rb"-Y\s*([+-]?[0-9]{1,10})\s*\+X\s*([+-]?[0-9]{1,10})")


def _hdr(data: bytes) -> tuple[int, int]:
    # The same line splitting as OpenCV's reader, so that both find the same size line.
    _, pos = _hdr_line(data, 0)
    has_format = False
    while True:
        if pos > _TEXT_HEADER_BYTES:
            raise _Corrupt(f"its header is longer than {_TEXT_HEADER_BYTES} bytes")
        line, pos = _hdr_line(data, pos)
        if line.startswith(b"\n"):
            break
        has_format = has_format or line == b"FORMAT=32-bit_rle_rgbe\n"
    if not has_format:
        raise _Corrupt("its header has no FORMAT=32-bit_rle_rgbe line")
    line, _ = _hdr_line(data, pos)
    if not line.endswith(b"\n") and len(line) < 127:
        raise _Truncated("inside its size line")  # a cut "-Y 30000" would read as -Y 3
    size = _HDR_SIZE.match(line)
    if size is None:
        raise _Corrupt(f"its size line is {line[:40]!r}, not -Y HEIGHT +X WIDTH")
    return int(size.group(2)), int(size.group(1))


def _j2k_size(data: bytes, at: int) -> tuple[int, int]:
    marks, _lsiz, _rsiz, x1, y1, x0, y0 = _unpack(">4sHHIIII", data, at, "the image size")
    if marks != b"\xff\x4f\xff\x51":
        raise _Corrupt("its codestream does not start with SOC and SIZ markers")
    return x1 - x0, y1 - y0


def _jp2(data: bytes) -> tuple[int, int]:
    if data[:4] == b"\xff\x4f\xff\x51":
        return _j2k_size(data, 0)
    # The decoded size is the codestream's (OpenJPEG reads SIZ, not the ihdr box).
    pos = 0
    for _ in range(_MAX_JP2_BOXES):
        if pos >= len(data):
            raise _Truncated("before its codestream box")
        length, kind = _unpack(">I4s", data, pos, "a box header")
        header = 8
        if length == 1:
            (length,) = _unpack(">Q", data, pos + 8, "a box length")
            header = 16
        elif length == 0:
            length = len(data) - pos
        if length < header:
            raise _Corrupt(f"a box at byte {pos} is {length} bytes long")
        if kind == b"jp2c":
            return _j2k_size(data, pos + header)
        pos += length
    raise _Corrupt(f"more than {_MAX_JP2_BOXES} boxes before its codestream")


def _parser_for(data: bytes) -> tuple[str, Callable[[bytes], tuple[int, int]]] | None:
    """The format whose signature ``data`` starts with, as OpenCV's decoders recognise them."""
    head = bytes(data[:16])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", _png
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", _jpeg
    if head.startswith(b"BM"):
        return "BMP", _bmp
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF", _tiff
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", _webp
    if head.startswith(b"GIF8"):
        return "GIF", _gif
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return "Sun raster", _sun_raster
    if head.startswith((b"#?RGBE", b"#?RADIANCE")):
        return "Radiance HDR", _hdr
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG 2000", _jp2
    if len(head) >= 3 and head[0:1] == b"P" and head[2:3].isspace():
        kind = head[1:2]
        if kind in (b"1", b"2", b"3", b"4", b"5", b"6"):
            return "PNM", _pnm
        if kind == b"7":
            return "PAM", _pam
        if kind in (b"F", b"f"):
            return "PFM", _pfm
    return None


def _check_complete(data: bytes, fmt: str, path: Path) -> None:
    """Refuse a PNG or JPEG that is cut short (or a PNG whose critical chunks fail their
    CRC) before OpenCV's decoders see it: libpng and libjpeg would fail on it too, after
    printing their own messages."""
    check = {"PNG": _png_complete, "JPEG": _jpeg_complete}.get(fmt)
    if check is None:
        return
    with _named(path, fmt):
        check(data)


def _png_complete(data: bytes) -> None:
    view = memoryview(data)
    pos = 8
    while True:
        if pos + 8 > len(data):
            raise _Truncated("before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        name = kind.decode("latin-1")
        if not kind.isalpha():
            raise _Corrupt(f"a chunk at byte {pos} has the type {kind!r}, not four letters")
        if end > len(data):
            raise _Truncated(f"inside its {name!r} chunk")
        # libpng refuses a critical chunk (upper-case first letter) with a bad CRC and only
        # warns about an ancillary one.
        if (
            kind[0] < 0x61
            and zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]
        ):
            raise _Corrupt(f"its {name!r} chunk at byte {pos} fails its CRC check")
        if kind == b"IEND":
            return
        pos = end


def _jpeg_complete(data: bytes) -> None:
    scan = -1
    try:
        for marker, _at, end in _jpeg_segments(data):
            if marker in (0xD9, 0xDA):
                scan = end if marker == 0xDA else -1
                break
    except (_Truncated, _Corrupt):
        pass
    if scan < 0 or scan > len(data):
        raise _Truncated("before its image data")
    if data.find(b"\xff\xd9", scan) < 0:
        raise _Truncated("before its end-of-image marker")
