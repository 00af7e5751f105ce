"""Small datasets in their exact on-disk formats, written by tests into tmp folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def write_phototour(
    root: Path, name: str, patches: np.ndarray, labels: np.ndarray, m50: np.ndarray | None = None
) -> Path:
    """Write a PhotoTour subset in the exact on-disk layout: 1024x1024 BMP tiles of 16x16
    patches (64x64, row-major, last tile zero-padded), ``info.txt`` and optionally the
    standard ``m50_100000_100000_0.txt`` from rows ``(patch_i, patch_j)``."""
    import cv2

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    tiles = -(-len(patches) // 256)
    padded = np.zeros((tiles * 256, 64, 64), np.uint8)
    padded[: len(patches)] = patches
    for t in range(tiles):
        tile = padded[t * 256 : (t + 1) * 256].reshape(16, 16, 64, 64).transpose(0, 2, 1, 3)
        assert cv2.imwrite(str(folder / f"patches{t:04d}.bmp"), tile.reshape(1024, 1024))
    (folder / "info.txt").write_text("".join(f"{int(p)} 0\n" for p in labels))
    if m50 is not None:
        (folder / "m50_100000_100000_0.txt").write_text(
            "".join(f"{i} {labels[i]} 0 {j} {labels[j]} 0\n" for i, j in m50)
        )
    return folder


def write_hpatches_sequence(folder: Path, stacks: dict[str, np.ndarray]) -> Path:
    """Write one HPatches sequence: per image name a 65-px-wide PNG of N stacked patches."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for name, stack in stacks.items():
        assert cv2.imwrite(str(folder / f"{name}.png"), stack.reshape(-1, 65))
    return folder


def structured_patches(n_points: int, views: int, size: int, seed: int = 0) -> np.ndarray:
    """``views`` noisy, slightly shifted versions of ``n_points`` smooth random textures:
    learnable matching pairs without any dataset.

    Shape:
        - return: (n_points * views, size, size) uint8, grouped by point.
    """
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n_points, views, size, size), np.uint8)
    for i in range(n_points):
        base = cv2.GaussianBlur(rng.normal(128, 60, (size + 8, size + 8)), (0, 0), size / 16)
        for v in range(views):
            dy, dx = rng.integers(0, 3, 2)
            view = base[4 + dy - 1 : 4 + dy - 1 + size, 4 + dx - 1 : 4 + dx - 1 + size]
            view = view + rng.normal(0, 6, view.shape)
            out[i, v] = np.clip(view, 0, 255).astype(np.uint8)
    return out.reshape(-1, size, size)


def write_image_graph_stub(path: Path, *, levels: int = 3, **metadata: str) -> Path:
    """A tiny ONNX file with an image graph's inputs (image (H, W) uint8, keypoints (K, 4)
    float32) and metadata (graph_kind image, magnification 12, ``levels`` pyramid levels and
    their min_image_side) but no extraction inside: for the checks made before a graph runs
    (metadata, profile planning, the kind table), without the export's half minute.
    ``metadata`` replaces or adds metadata_props."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["height", "width"])
    keypoints = helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["k", 4])
    out = helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["k", 4])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["keypoints"], ["descriptors"])],
        "image_graph_stub",
        [image, keypoints],
        [out],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    props = {
        "producer": "hardnet-export test stub",
        "precision": "fp32",
        "graph_kind": "image",
        "magnification": "12.0",
        "pyramid_levels": str(levels),
        "min_image_side": str(2 ** (levels - 1) + 1),
        **metadata,
    }
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _tiff(order: str, big: bool, width: int, height: int, pixels: bytes) -> bytes:
    """An uncompressed 8-bit grayscale TIFF (``order`` II or MM; ``big``: BigTIFF) with
    ``pixels`` as its one strip; a ``pixels`` shorter than the size claims gives a header
    with no image behind it."""
    import struct

    o = "<" if order == "II" else ">"
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(pixels))]  # fmt: skip
    count, entry, value, header = ("Q", 20, 8, 16) if big else ("H", 12, 4, 8)
    ifd_size = struct.calcsize(o + count) + entry * len(entries) + value
    if big:
        out = order.encode() + struct.pack(o + "HHHQ", 43, 8, 0, header)
    else:
        out = order.encode() + struct.pack(o + "HI", 42, header)
    out += struct.pack(o + count, len(entries))
    for tag, kind, number in entries:
        number = header + ifd_size if tag == 273 else number
        field = struct.pack(o + ("H" if kind == 3 else "I"), number).ljust(value, b"\0")
        out += struct.pack(o + "HH" + ("Q" if big else "I"), tag, kind, 1) + field
    return out + bytes(value) + pixels


def image_samples() -> dict[str, bytes]:
    """An 80x64 photo-like image in every format OpenCV reads here, as real files: OpenCV's
    own encoders, and by hand the variants they do not write (big-endian TIFF, BigTIFF, WebP
    VP8X, OS/2 and top-down BMP, PNM with comments, a bare JPEG 2000 codestream, a JPEG with
    EXIF orientation 6 (decodes as 64x80), a JPEG with stray bytes before a marker)."""
    import struct

    import cv2

    rng = np.random.default_rng(0)
    colour = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (80, 64))
    gray = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)

    def encode(ext: str, image: np.ndarray, *params: int) -> bytes:
        ok, buf = cv2.imencode(ext, image, list(params))
        assert ok, ext
        return buf.tobytes()

    jpeg = encode(".jpg", gray)
    exif = b"Exif\0\0II*\0" + struct.pack("<IHHHIHHI", 8, 1, 0x112, 3, 1, 6, 0, 0)
    lossless = encode(".webp", gray, cv2.IMWRITE_WEBP_QUALITY, 101)
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (79).to_bytes(3, "little")
    vp8x += (63).to_bytes(3, "little")
    jp2 = encode(".jp2", gray)
    palette3 = b"".join(bytes([i, i, i]) for i in range(256))
    palette4 = b"".join(bytes([i, i, i, 0]) for i in range(256))
    bottom_up = gray[::-1].tobytes()  # 80 columns: rows need no padding
    os2_at, info_at = 14 + 12 + len(palette3), 14 + 40 + len(palette4)
    return {
        "png": encode(".png", colour),
        "png-16bit": encode(".png", gray.astype(np.uint16) * 257),
        "jpeg": jpeg,
        "jpeg-progressive": encode(".jpg", colour, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "jpeg-exif-rotated": jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
        + jpeg[2:],
        "jpeg-stray-bytes": jpeg[:20] + b"\x12\x34" + jpeg[20:],
        "bmp": encode(".bmp", colour),
        "bmp-os2": b"BM" + struct.pack("<IHHI", os2_at + len(bottom_up), 0, 0, os2_at)
        + struct.pack("<IHHHH", 12, 80, 64, 1, 8) + palette3 + bottom_up,
        "bmp-top-down": b"BM" + struct.pack("<IHHI", info_at + gray.size, 0, 0, info_at)
        + struct.pack("<IiiHHIIiiII", 40, 80, -64, 1, 8, 0, gray.size, 0, 0, 256, 0)
        + palette4 + gray.tobytes(),
        "tiff": encode(".tiff", colour),
        "tiff-big-endian": _tiff("MM", False, 80, 64, gray.tobytes()),
        "bigtiff": _tiff("II", True, 80, 64, gray.tobytes()),
        "bigtiff-big-endian": _tiff("MM", True, 80, 64, gray.tobytes()),
        "webp-lossy": encode(".webp", colour, cv2.IMWRITE_WEBP_QUALITY, 80),
        "webp-lossless": lossless,
        "webp-vp8x": b"RIFF" + struct.pack("<I", 4 + len(vp8x) + len(lossless) - 12) + b"WEBP"
        + vp8x + lossless[12:],
        "pbm": encode(".pbm", gray),
        "pgm": encode(".pgm", gray),
        "ppm": encode(".ppm", colour),
        "pgm-comments": b"P5\n# by hand\n80 # width\n64\n255\n" + gray.tobytes(),
        "pam": encode(".pam", colour),
        "pfm": encode(".pfm", colour.astype(np.float32) / 255),
        "sun-raster": encode(".sr", colour),
        "hdr": encode(".hdr", colour.astype(np.float32) / 255),
        "jp2": jp2,
        "j2k-codestream": jp2[jp2.find(b"jp2c") + 4 :],
        "gif": encode(".gif", colour),
        "avif": encode(".avif", colour),
    }  # fmt: skip


def bomb_headers(width: int, height: int) -> dict[str, bytes]:
    """Files of a few dozen bytes whose headers claim ``width`` x ``height`` (each at most
    65535 for the formats with 16-bit sizes, 16383 for WebP VP8, 16384 for VP8L), one per
    format whose header is parsed: what a decompression bomb looks like before decoding. The
    PNG is complete (IHDR, a little deflated data, IEND), like the 875 KB bomb of issue 22;
    the others stop after the header. The JPEG 2000 file's ihdr box claims 10x10: the
    decoder takes the codestream's size."""
    import struct
    import zlib

    w16, h16 = min(width, 65535), min(height, 65535)
    w14, h14 = min(width, 16384), min(height, 16384)
    siz = b"\xff\x4f\xff\x51" + struct.pack(">HHIIIIIIIIH", 41, 0, width, height, 0, 0,
                                            width, height, 0, 0, 1) + b"\x07\x01\x01"  # fmt: skip
    jp2h = b"jp2h" + struct.pack(">I4sIIHBBBB", 22, b"ihdr", 10, 10, 1, 7, 7, 0, 0)
    vp8l_bits = (w14 - 1) | ((h14 - 1) << 14)
    return {
        "png": b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(bytes(width + 1)))
        + _png_chunk(b"IEND", b""),
        "jpeg": b"\xff\xd8\xff\xdb" + struct.pack(">H", 67) + bytes(65)
        + b"\xff\xc0" + struct.pack(">HBHHBBBB", 11, 8, h16, w16, 1, 1, 0x11, 0),
        "bmp": b"BM" + struct.pack("<IHHI", 1078, 0, 0, 1078)
        + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, 2, 0, 0, 256, 0),
        "tiff": _tiff("II", False, width, height, b""),
        "tiff-big-endian": _tiff("MM", False, width, height, b""),
        "bigtiff": _tiff("II", True, width, height, b""),
        "webp-vp8": b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8 " + struct.pack("<I", 18)
        + b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", min(w14, 16383), min(h14, 16383)),
        "webp-vp8l": b"RIFF" + struct.pack("<I", 17) + b"WEBPVP8L" + struct.pack("<I", 5)
        + b"\x2f" + struct.pack("<I", vp8l_bits),
        "webp-vp8x": b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10)
        + bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"),
        "gif": b"GIF89a" + struct.pack("<HHBBB", w16, h16, 0, 0, 0),
        "pgm": f"P5\n{width} {height}\n255\n".encode(),
        "pam": f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH 1\nMAXVAL 255\nENDHDR\n".encode(),
        "pfm": f"Pf\n{width} {height}\n-1.0\n".encode(),
        "sun-raster": struct.pack(">8I", 0x59A66A95, width, height, 8, 0, 1, 0, 0),
        "hdr": f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode(),
        "jp2": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + struct.pack(">I", 20) + b"ftypjp2 "
        + bytes(4) + b"jp2 " + struct.pack(">I", 4 + len(jp2h)) + jp2h
        + struct.pack(">I", 8 + len(siz)) + b"jp2c" + siz,
        "j2k-codestream": siz,
    }  # fmt: skip


def run_main(arguments: list[str], capture: Any) -> tuple[int, str, str]:
    """Run ``hardnet-export ARGUMENTS`` in this process (``cli.main``): exit status, stdout,
    stderr, read from ``capture`` (pytest's ``capsys`` or ``capfd``)."""
    from hardnet_export.cli import main

    try:
        main(arguments)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    else:
        code = 0
    captured = capture.readouterr()
    return code, captured.out, captured.err


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``hardnet-export ARGS`` in a fresh interpreter (``python -m hardnet_export``), as a
    user would: exit status, stdout and stderr as text. ``timeout`` only guards against a hang.
    A test that calls it is slow (an interpreter start and the imports, seconds on 2 cores):
    prefer :func:`run_main` unless the test is about the process (exit code, signals,
    what gets imported)."""
    return subprocess.run(
        [sys.executable, "-m", "hardnet_export", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
