"""One bulk extraction: list, plan (what is new or changed), run an engine, merge, report."""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hardnet_export import __version__
from hardnet_export._io import atomic_write_text, check_writable, sha256_file
from hardnet_export.applications.detection import SUPPORTS
from hardnet_export.applications.extract.engines import Scale, get_engine
from hardnet_export.applications.extract.listing import ImageItem, list_images
from hardnet_export.applications.extract.shards import (
    MergeResult,
    check_settings,
    claimed,
    complete_shards,
    identities,
    merge,
    parts_folder,
    run_settings,
)
from hardnet_export.applications.extract.stages import (
    ExtractOptions,
    check_detector,
    load_describer,
)
from hardnet_export.applications.features import model_record
from hardnet_export.applications.hloc import import_h5py
from hardnet_export.artifacts.backends import artifact_suffixes, backend_for
from hardnet_export.errors import InputError, OutputIsFolderError
from hardnet_export.host import cpu_model
from hardnet_export.imagefile import image_pixel_limit
from hardnet_export.validate import check_int

#: Suffixes of the output: hloc's features file.
OUTPUT_SUFFIXES = (".h5", ".hdf5")


@dataclass(frozen=True)
class ExtractEvent:
    """One image finished (described and in a shard, or failed), for a progress display:
    its name, keypoints and error, the describer process (``host:pid``, "" for a failed
    image), and the run's counts so far."""

    name: str
    keypoints: int
    error: str
    worker: str
    done: int
    failed: int
    patches: int
    total: int


@dataclass(frozen=True)
class ExtractSummary:
    """What a run did.

    Attributes:
        out: the features file.
        engine: the engine's name.
        images: images listed.
        skipped: already in the output with the same content.
        described: described this run.
        failed: could not be read (see ``errors_file``).
        patches: keypoints described this run.
        seconds: wall time from the plan to the last image (the workers' model loading
            included, the merge not).
        merged: what the merge did (None when no shard was there to merge).
        errors_file: the failures of this run (None when there were none).
        workers: the describer processes, ``host:pid``.
        nodes: the Ray nodes they ran on (empty for the local engine).
    """

    out: Path
    engine: str
    images: int
    skipped: int
    described: int
    failed: int
    patches: int
    seconds: float
    merged: MergeResult | None
    errors_file: Path | None
    workers: tuple[str, ...]
    nodes: tuple[str, ...] = ()

    @property
    def images_per_s(self) -> float:
        return self.described / self.seconds if self.seconds > 0 else 0.0

    @property
    def patches_per_s(self) -> float:
        return self.patches / self.seconds if self.seconds > 0 else 0.0


def errors_path(out: Path) -> Path:
    """``features.h5`` -> ``features.h5.errors.jsonl``: one JSON line (name, reason) per
    image that failed in the last run."""
    return out.with_name(out.name + ".errors.jsonl")


def extract(
    source: str | Path,
    out: str | Path,
    *,
    model: str | Path | None = None,
    root: str | Path | None = None,
    detector: str = "sift",
    max_keypoints: int | None = 2000,
    device: str | None = None,
    backend: str | None = None,
    max_image_pixels: int | None = None,
    engine: str = "local",
    scale: Scale | None = None,
    progress: Callable[[ExtractEvent], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
) -> ExtractSummary:
    """Describe every image of a folder (or list file) into one hloc ``features.h5``,
    exactly once, on this machine or on Ray.

    A rerun describes only what the output lacks: images not in it, and images whose file
    changed (same size and modification time: unchanged; otherwise compared by sha256).
    An image that cannot be read (missing, empty, truncated, corrupt, oversized) is skipped
    and listed in :func:`errors_path`; the others go on. The output is replaced only by a
    complete merge (see :mod:`~hardnet_export.applications.extract.shards`).

    Args:
        source: a folder of images (named relative to it) or a list file of names.
        out: the ``.h5`` to write (created, or extended).
        model, device, backend: as ``runtime.load``.
        root: the folder a list file's names are relative to.
        detector, max_keypoints: as ``describe_image``.
        max_image_pixels: the most pixels an image may have (see ``read_image``).
        engine: ``local`` or ``ray`` (:data:`~.engines.ENGINES`).
        scale: shard size, workers, CPUs and GPUs per worker, Ray address.
        progress: called after each image.
        on_plan: called once with (images listed, images to describe) before the work.

    Raises:
        ValueError: bad options, no images, a bad list file or output name.
        FileNotFoundError: no such folder, list file or model.
        ImportError: h5py missing, or the engine's library (the message names the extra).
        StateError: another extraction holds the output.
    """
    out = Path(out)
    scale = scale or Scale()
    chosen = get_engine(engine)
    _check_options(out, detector, max_keypoints, scale)
    import_h5py()
    chosen.check_installed()
    limit = image_pixel_limit(max_image_pixels)
    items = list_images(source, root=root)
    if not out.exists():
        check_writable(out)
    options, model_record = _model(model, device, backend, detector, max_keypoints, limit, scale)
    folder = parts_folder(out)
    started = time.time()
    with claimed(folder):
        check_settings(out, folder, run_settings(_run_head(options, model_record)))
        existing = identities(out)
        done = dict(existing)
        for shard in complete_shards(folder):
            done.update(identities(shard))
        todo = _plan(items, done)
        if on_plan is not None:
            on_plan(len(items), len(todo))
        rows = _run(chosen.runner(), todo, options, folder, scale, progress)
        seconds = time.time() - started
        failures = [row for row in rows if row["error"]]
        described = [row for row in rows if not row["error"]]
        workers = tuple(sorted({str(row["worker"]) for row in described}))
        nodes = tuple(sorted({str(row["node"]) for row in described} - {""}))
        run = {
            "run": uuid.uuid4().hex,
            "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(),
            "seconds": round(seconds, 3),
            "hardnet_export": __version__,
            "host": socket.gethostname(),
            "cpu": cpu_model(),
            "engine": chosen.name,
            "scale": {**asdict(scale), "workers": list(scale.workers)},
            **_run_head(options, model_record),
            "images": {
                "listed": len(items),
                "skipped": len(items) - len(todo),
                "described": len(described),
                "failed": len(failures),
            },
            "workers": list(workers),
            "nodes": list(nodes),
        }
        shards = complete_shards(folder)
        merged = merge(out, shards, run, existing) if shards else None
    errors_file = _write_errors(out, failures)
    return ExtractSummary(
        out=out,
        engine=chosen.name,
        images=len(items),
        skipped=len(items) - len(todo),
        described=len(described),
        failed=len(failures),
        patches=sum(int(row["keypoints"]) for row in described),
        seconds=seconds,
        merged=merged,
        errors_file=errors_file,
        workers=workers,
        nodes=nodes,
    )


def _check_options(out: Path, detector: str, max_keypoints: int | None, scale: Scale) -> None:
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"the output must be an hloc features file (.h5), got {out}")
    if out.is_dir():
        raise OutputIsFolderError(f"cannot write {out}: it is a folder; give an .h5 file name")
    check_detector(detector)
    if max_keypoints is not None:
        check_int("max_keypoints", max_keypoints, low=1)
    check_int("images_per_shard", scale.images_per_shard, low=1)
    low, high = scale.workers
    check_int("workers", low, low=1)
    check_int("workers", high, low=low)
    if not scale.cpus_per_worker > 0:
        raise InputError(f"cpus_per_worker must be above 0, got {scale.cpus_per_worker}")
    if not scale.gpus_per_worker >= 0:
        raise InputError(f"gpus_per_worker must be 0 or more, got {scale.gpus_per_worker}")


def _model(
    model: str | Path | None,
    device: str | None,
    backend: str | None,
    detector: str,
    max_keypoints: int | None,
    limit: int,
    scale: Scale,
) -> tuple[ExtractOptions, dict[str, Any]]:
    """Load the model here once, before any work: a bad artifact or a missing backend is
    reported now, and its magnification and provenance go to the workers and the output.
    Where the workers have GPUs and this machine may not, it is checked on the CPU."""
    spec = None if model is None else str(model)
    here = "cpu" if scale.gpus_per_worker > 0 and _runs_on_cpu(spec) else device
    checked = ExtractOptions(spec, detector, max_keypoints, limit, 0.0, here, backend)
    describer = load_describer(checked)
    try:
        record = {**model_record(describer), "spec": spec, "checked_on": here or "auto"}
        magnification = float(describer.magnification)
    finally:
        describer.close()
    options = ExtractOptions(spec, detector, max_keypoints, limit, magnification, device, backend)
    return options, record


def _runs_on_cpu(spec: str | None) -> bool:
    """Whether the model can be loaded on a CPU: a registered name, or an artifact whose
    backend runs there (a TensorRT engine does not)."""
    if spec is None or Path(spec).suffix.lower() not in artifact_suffixes():
        return True
    return "cpu" in backend_for(spec).devices


def _run_head(options: ExtractOptions, model_record: dict[str, Any]) -> dict[str, Any]:
    """The part of a run record that says how its features were made."""
    return {
        "options": options.to_dict(),
        "patch_support": _support_record(options.detector, options.magnification),
        "model": model_record,
    }


def _support_record(detector: str, magnification: float) -> dict[str, float]:
    """The square each detected keypoint was described from: ``max(per_size x size, min_px)``
    (the detector's support, or the describer's magnification)."""
    rule = SUPPORTS.get(detector)
    return asdict(rule) if rule else {"per_size": magnification, "min_px": 0.0}


def _plan(items: Sequence[ImageItem], done: dict[str, tuple[str, int, int]]) -> list[ImageItem]:
    """The items the output lacks or holds from another version of the file."""
    todo = []
    for item in items:
        known = done.get(item.name)
        if known is None or not known[0]:
            todo.append(item)
            continue
        try:
            status = os.stat(item.path)
        except OSError:
            todo.append(item)  # the engine words the error
            continue
        if (status.st_size, status.st_mtime_ns) == known[1:]:
            continue
        # Touched but maybe not changed: the content decides.
        if status.st_size != known[1] or sha256_file(item.path) != known[0]:
            todo.append(item)
    return todo


def _run(
    runner: Any,
    todo: Sequence[ImageItem],
    options: ExtractOptions,
    folder: Path,
    scale: Scale,
    progress: Callable[[ExtractEvent], None] | None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    failed = patches = 0
    seen: set[str] = set()
    for row in runner(todo, options, folder, scale):
        if row["name"] in seen:
            continue  # a retried batch reported again; its shard copy is merged once
        seen.add(row["name"])
        rows.append(row)
        failed += bool(row["error"])
        patches += 0 if row["error"] else int(row["keypoints"])
        if progress is not None:
            progress(
                ExtractEvent(
                    row["name"],
                    int(row["keypoints"]),
                    row["error"],
                    "" if row["error"] else str(row["worker"]),
                    len(rows),
                    failed,
                    patches,
                    len(todo),
                )
            )
    return rows


def _write_errors(out: Path, failures: Sequence[dict[str, Any]]) -> Path | None:
    path = errors_path(out)
    if not failures:
        if path.exists():
            path.unlink()  # the last run's failures were all described this time
        return None
    lines = [json.dumps({"name": row["name"], "reason": row["error"]}) for row in failures]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
