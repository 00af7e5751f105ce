"""Shards and the one merge: how a bulk extraction writes each image exactly once.

Workers write the described images in shards, ``OUT.parts/part-<id>.h5``: small files in
hloc's layout (plus ``frames``: each keypoint's x, y, size and angle, OpenCV's fields, for a
COLMAP database's six-column keypoints), each written under a temporary name and renamed
when whole, so a shard is either complete or absent. Every group carries the image's
``sha256``, ``size`` and ``mtime_ns``. The driver then merges the shards into ``OUT``: a
copy of the previous output (if any) gains each shard's groups, one per name (a retried
worker may have written an image twice; the copies are the same bytes of the same image),
and is renamed onto ``OUT`` only when complete. Shards are removed after the rename; one
that outlives it (a kill between the two) holds images already in ``OUT`` and is dropped by
the next merge. So a kill at any moment loses at most the images in flight, and never leaves
a partial file under a final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export._io import atomic_path, atomic_write_text
from hardnet_export.applications.hloc import (
    DATASETS,
    RUNS_ATTR,
    import_h5py,
    runs_of,
    write_group,
)
from hardnet_export.errors import InputError, OutputError, StateError

#: Per-group attributes: what identifies the image content a group was made from.
IDENTITY = ("sha256", "size", "mtime_ns")
PART_PREFIX = "part-"
LOCK_NAME = ".lock"
#: The settings of the run whose shards the parts folder holds (see :func:`check_settings`).
SETTINGS_NAME = "settings.json"


def parts_folder(out: Path) -> Path:
    """Where the shards of ``out`` are written: ``features.h5`` -> ``features.h5.parts``."""
    return out.with_name(out.name + ".parts")


def write_shard(folder: str | Path, rows: Sequence[Mapping[str, Any]]) -> str:
    """Write the described ``rows`` (those without an ``error``) to a new shard in
    ``folder``, atomically; return its file name ("" when no row had features).

    Shape:
        - each row: keypoints (K, 4), descriptors (K, 128), scores (K,), image_size (2,).
    """
    done = [row for row in rows if not row["error"]]
    if not done:
        return ""
    h5py = import_h5py()
    folder = Path(folder)
    name = f"{PART_PREFIX}{uuid.uuid4().hex}.h5"
    with atomic_path(folder / name) as tmp, h5py.File(tmp, "w") as f:
        for row in done:
            size = np.asarray(row["image_size"])
            write_group(
                f,
                str(row["name"]),
                np.asarray(row["keypoints"]),
                np.asarray(row["descriptors"]),
                np.asarray(row["scores"]),
                (int(size[0]), int(size[1])),
                attrs={key: row[key] for key in IDENTITY},
                # hloc keeps x, y only; a COLMAP database wants the frame each patch was
                # cut from (database_from_features).
                extra={"frames": np.asarray(row["keypoints"], np.float32)},
            )
    return name


def manifest(row: Mapping[str, Any], shard: str) -> dict[str, Any]:
    """What the driver hears of one image: its name, content hash, keypoint count, shard,
    worker, Ray node and error (the arrays stay in the shard)."""
    return {
        "name": str(row["name"]),
        "sha256": str(row["sha256"]),
        "keypoints": len(row["keypoints"]),
        "shard": "" if row["error"] else shard,
        "worker": str(row["worker"]),
        "node": str(row["node"]),
        "error": str(row["error"]),
    }


def complete_shards(folder: Path) -> list[Path]:
    """The whole shards in ``folder``, by name (temporaries are not shards)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PART_PREFIX}*.h5") if p.is_file())


def identities(path: Path) -> dict[str, tuple[str, int, int]]:
    """Image name -> (sha256, size, mtime_ns) of every complete group in a features file
    (groups written without them, e.g. by ``describe``, get ("", -1, -1))."""
    if not path.exists():
        return {}
    h5py = import_h5py()
    try:
        with h5py.File(path, "r") as f:
            return _identities(f, h5py)
    except OSError as exc:
        raise InputError(f"{path} is not an HDF5 file h5py can read ({exc})") from None


def _identities(f: Any, h5py: Any) -> dict[str, tuple[str, int, int]]:
    found: dict[str, tuple[str, int, int]] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Group) and all(d in item for d in DATASETS):
            a = item.attrs
            found[name] = (
                str(a.get("sha256", "")),
                int(a.get("size", -1)),
                int(a.get("mtime_ns", -1)),
            )

    f.visititems(visit)
    return found


@dataclass(frozen=True)
class MergeResult:
    """What one merge did: groups added, replaced (a changed image), and dropped (already
    in the output with the same content, or in two shards)."""

    added: int
    replaced: int
    dropped: int
    shards: int


def merge(
    out: Path,
    shards: Sequence[Path],
    run: Mapping[str, Any],
    before: Mapping[str, tuple[str, int, int]] | None = None,
) -> MergeResult:
    """Merge ``shards`` into ``out`` (created, or a copy of it updated) and rename it into
    place; then remove the shards. ``run`` is appended to the output's run record;
    ``before`` is :func:`identities` of ``out`` where the caller has read it already.

    Raises:
        InputError: a shard or the previous output that h5py cannot read.
        Interrupted: a signal before the rename (``out`` stays as it was).
    """
    h5py = import_h5py()
    if before is None:
        before = identities(out)
    added = replaced = dropped = 0
    with atomic_path(out) as tmp:
        if out.exists():
            shutil.copyfile(out, tmp)
        with h5py.File(tmp, "a") as f:
            merged: set[str] = set()
            for shard in shards:
                try:
                    src = h5py.File(shard, "r")
                except OSError as exc:
                    raise InputError(f"shard {shard} is not an HDF5 file ({exc})") from None
                with src:
                    for name, identity in _identities(src, h5py).items():
                        if name in merged or before.get(name, ("",))[0] == identity[0]:
                            dropped += 1
                            continue
                        if name in f:
                            del f[name]
                            replaced += 1
                        else:
                            added += 1
                        parent = name.rpartition("/")[0]
                        if parent:
                            f.require_group(parent)
                        src.copy(src[name], f, name=name)
                        merged.add(name)
            runs = json.loads(f.attrs.get(RUNS_ATTR, "[]"))
            f.attrs[RUNS_ATTR] = json.dumps([*runs, dict(run)])
    for shard in shards:
        with contextlib.suppress(FileNotFoundError):
            shard.unlink()
    return MergeResult(added, replaced, dropped, len(shards))


def run_settings(run: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a run's features comparable with another's: the model (its sha256, else
    its name), the detector, the keypoint budget and the patch support. (A run recorded
    before the support was would have cut ``magnification x size``.)"""
    options = run["options"]
    model = run["model"]
    support = run.get("patch_support") or {"per_size": options["magnification"], "min_px": 0.0}
    return {
        "model": model.get("sha256") or model.get("spec"),
        "detector": options["detector"],
        "max_keypoints": options["max_keypoints"],
        "patch_support": dict(support),
    }


def check_settings(out: Path, folder: Path, settings: Mapping[str, Any]) -> None:
    """Refuse to extend ``out``, or a killed run's shards in ``folder``, with features made
    with other :func:`run_settings` (one file would hold descriptors that cannot be
    matched with each other); then record ``settings`` for this run's shards.

    Raises:
        InputError: ``out`` (its last run) or the shards were made with other settings.
    """
    earlier: list[tuple[Path, Mapping[str, Any]]] = []
    runs = runs_of(out) if out.exists() else []
    if runs:
        earlier.append((out, run_settings(runs[-1])))
    recorded = folder / SETTINGS_NAME
    if recorded.exists() and complete_shards(folder):
        earlier.append((folder, json.loads(recorded.read_text())))
    for where, theirs in earlier:
        changed = [key for key in settings if theirs.get(key) != settings[key]]
        if changed:
            key = changed[0]
            raise InputError(
                f"{where} holds features made with {key} {theirs.get(key)!r}, this run's is "
                f"{settings[key]!r}: write to a new output, or rerun with the same model, "
                "detector, keypoint budget and patch support"
            )
    atomic_write_text(recorded, json.dumps(dict(settings)))


@contextlib.contextmanager
def claimed(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for one run: a second run on the same output is refused (its
    shards and merge would race this one's). Temporaries there are a killed run's: removed.
    The folder goes when it is left empty."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the shard folder {folder}: {exc.strerror}") from None
    lock = open(folder / LOCK_NAME, "a+")  # noqa: SIM115  # held for the whole run
    held = False
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(
                f"another extraction is writing {folder.name.removesuffix('.parts')} "
                f"(it holds {folder / LOCK_NAME}); wait for it to finish"
            ) from None
        held = True
        for stale in folder.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        yield
    finally:
        # Only the holder tidies up (a refused run must leave the holder's lock alone),
        # also after an error: a run that left no shard leaves no folder.
        if held:
            with contextlib.suppress(OSError):
                if not complete_shards(folder):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(folder / SETTINGS_NAME)
                    os.unlink(folder / LOCK_NAME)
                    folder.rmdir()
        lock.close()
