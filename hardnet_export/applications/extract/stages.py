"""The stages of a bulk extraction, as plain functions of rows: the local engine calls them
in threads, the Ray engine runs them as Ray Data operators. Each row is a dict of numpy
arrays and strings (Ray Data's row format), so both engines move the same data.

``prepare_row`` (read the bytes, hash them, decode, detect, cut patches; a bad image becomes
a row with an ``error``) -> :class:`DescribeStage` (one describer; the patches of many images
in one batch) -> ``write_shard`` (one atomic shard file, rows out without their arrays).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from hardnet_export.applications.detection import DETECTORS
from hardnet_export.applications.features import (
    PreparedImage,
    describe_prepared,
    prepare_image,
)
from hardnet_export.applications.images import decode_gray
from hardnet_export.errors import HardnetError, InputError
from hardnet_export.geometry import PATCH_SIZE
from hardnet_export.imagefile import read_image_bytes

DESCRIPTOR_SIZE = 128
#: The most patches one inference call gets: every call has exactly this many (padded), so
#: an image's descriptors do not depend on which images share its batch (bf16 kernels round
#: differently at other batch sizes).
MAX_CHUNK = 1024


@dataclass(frozen=True)
class ExtractOptions:
    """What every worker needs to prepare and describe images the same way (picklable).

    Attributes:
        model: the artifact path or registered model name (None: the shipped model).
        device, backend, load_options: as ``runtime.load``.
        detector, max_keypoints: as ``describe_image``.
        max_image_pixels: the most pixels an image may have.
        magnification: the describer's support region (from the driver's describer).
    """

    model: str | None
    detector: str
    max_keypoints: int | None
    max_image_pixels: int
    magnification: float
    device: str | None = None
    backend: str | None = None
    load_options: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["load_options"] = dict(self.load_options or {})
        return data


def _empty_arrays() -> dict[str, np.ndarray]:
    return {
        "keypoints": np.zeros((0, 4), np.float64),
        "patches": np.zeros((0, PATCH_SIZE, PATCH_SIZE), np.uint8),
        "valid": np.zeros(0, np.bool_),
        "scores": np.zeros(0, np.float32),
        "image_size": np.zeros(2, np.int64),
    }


def prepare_row(item: Mapping[str, Any], options: ExtractOptions) -> dict[str, Any]:
    """Read, hash, decode, detect and cut one image; a failure is the row's ``error``.

    Shape:
        - Output: keypoints (K, 4) float64, patches (K, 32, 32) uint8, valid (K,) bool,
          scores (K,) float32, image_size (2,) int64 [W, H]; K = 0 and ``error`` set when
          the image could not be read.
    """
    name, path = str(item["name"]), str(item["path"])
    row: dict[str, Any] = {"name": name, "path": path, "sha256": "", "size": -1, "mtime_ns": -1}
    try:
        status = os.stat(path)
        # The header first: an oversized image is refused without reading all its bytes.
        data = read_image_bytes(path, max_image_pixels=options.max_image_pixels)
        row.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        row["mtime_ns"] = status.st_mtime_ns
        image = decode_gray(data, path, max_image_pixels=options.max_image_pixels)
        prepared = prepare_image(
            image,
            magnification=options.magnification,
            detector=options.detector,
            max_keypoints=options.max_keypoints,
        )
    except (InputError, OSError, cv2.error) as exc:
        return {**row, **_empty_arrays(), "error": _one_line(exc, path)}
    return {
        **row,
        "keypoints": prepared.keypoints,
        "patches": prepared.patches,
        "valid": prepared.valid,
        "scores": prepared.scores,
        "image_size": np.array(prepared.image_size, np.int64),
        "error": "",
    }


def _one_line(exc: BaseException, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"image not found: {path}"
    if isinstance(exc, OSError) and not isinstance(exc, HardnetError):
        return f"cannot read {path}: {exc.strerror or exc}"
    text = " ".join(str(exc).split())
    return text if path in text else f"{path}: {text}"


def load_describer(options: ExtractOptions) -> Any:
    """The describer a worker runs (the patch kind: ``compute``-only image graphs cannot
    describe patches cut elsewhere)."""
    from hardnet_export import runtime
    from hardnet_export.runtime.base import patch_describer

    loaded = runtime.load(
        options.model,
        device=options.device,
        backend=options.backend,
        **dict(options.load_options or {}),
    )
    return patch_describer(loaded, "extract")


def chunk_of(describer: Any) -> int:
    """The patches per inference call: the graph's fixed batch, else its chunk size, at most
    :data:`MAX_CHUNK`."""
    return int(describer.fixed_batch or min(describer.max_batch or MAX_CHUNK, MAX_CHUNK))


def describe_padded(describer: Any, patches: np.ndarray, chunk: int) -> np.ndarray:
    """Descriptors of ``patches`` in calls of exactly ``chunk`` patches (the last one padded
    with zeros), so a patch's descriptor is the same whatever shares its batch.

    Shape:
        - patches: (N, 32, 32) uint8.
        - Output: (N, 128) float32.
    """
    out = np.empty((len(patches), DESCRIPTOR_SIZE), np.float32)
    for start in range(0, len(patches), chunk):
        part = patches[start : start + chunk]
        if len(part) < chunk:
            part = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), np.uint8)])
        out[start : start + chunk] = describer.describe(part)[: len(out) - start]
    return out


def rows_of(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A batch (columns, as Ray Data gives them) as rows."""
    count = len(batch["name"])
    return [{key: values[i] for key, values in batch.items()} for i in range(count)]


def columns_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows as a batch of columns; arrays of different shapes go in object columns."""
    if not rows:
        return {}
    batch: dict[str, Any] = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if isinstance(values[0], np.ndarray):
            column = np.empty(len(values), object)
            column[:] = values  # never stacked: K differs from image to image
            batch[key] = column
        else:
            batch[key] = np.array(values)
    return batch


class DescribeStage:
    """One describer, loaded once; describes the patches of many images in one batch.

    A row keeps its keypoints and gains ``descriptors`` (K, 128) float32, ``worker``: the
    host and process that described it (``host:pid``), and ``node``: its Ray node ("" when
    not on Ray).
    """

    def __init__(self, options: ExtractOptions) -> None:
        self.describer = load_describer(options)
        self.chunk = chunk_of(self.describer)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.node = _ray_node()

    def describe_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ok = [row for row in rows if not row["error"]]
        patches = [np.asarray(row["patches"], np.uint8) for row in ok]
        valid = [np.asarray(row["valid"], np.bool_) for row in ok]
        together = np.concatenate(patches) if patches else np.zeros((0, 32, 32), np.uint8)
        mask = np.concatenate(valid) if valid else np.zeros(0, np.bool_)
        described = np.zeros((len(together), DESCRIPTOR_SIZE), np.float32)
        # Only valid patches run (a zero patch would still give a unit descriptor).
        described[mask] = describe_padded(self.describer, together[mask], self.chunk)
        out = []
        start = 0
        for row in rows:
            count = 0 if row["error"] else len(row["patches"])
            features = describe_prepared(
                PreparedImage(
                    np.asarray(row["keypoints"], np.float64),
                    np.asarray(row["patches"]),
                    np.asarray(row["valid"], np.bool_),
                    np.asarray(row["scores"], np.float32),
                    (int(row["image_size"][0]), int(row["image_size"][1])),
                ),
                described[start : start + count],
            )
            start += count
            kept = {k: v for k, v in row.items() if k not in ("patches", "valid")}
            out.append(
                {
                    **kept,
                    "keypoints": features.keypoints,
                    "scores": features.scores,
                    "descriptors": features.descriptors,
                    "worker": self.worker,
                    "node": self.node,
                }
            )
        return out

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return columns_of(self.describe_rows(rows_of(batch)))

    def close(self) -> None:
        self.describer.close()


def _ray_node() -> str:
    """The Ray node this process runs on, "" outside Ray (ray is imported only where a Ray
    worker already has it)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())


def check_detector(detector: str) -> None:
    from hardnet_export.validate import check_str

    check_str("detector", detector, choices=DETECTORS)
