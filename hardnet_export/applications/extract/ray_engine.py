"""The Ray engine: the stages as Ray Data operators, on one machine or a cluster.

list -> ``map(prepare_row)`` (CPU tasks: read the bytes, hash, decode, detect, cut) ->
``map_batches(DescribeStage)`` (a pool of actors, one describer each, on CPU or GPU) ->
``map_batches(write_shards)`` (tasks: one atomic shard per batch) -> rows to the driver, which
merges. Workers read images and write shards by path: on a cluster the images and the
output's folder must be on storage every node mounts at the same path (NFS, a shared disk),
and hardnet-export must be installed on every node.

Ray restarts a killed actor and retries its batch (and a killed task); an image whose shard
was written before the kill and again after is merged once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hardnet_export import _signals
from hardnet_export.applications.extract.engines import Scale
from hardnet_export.applications.extract.listing import ImageItem
from hardnet_export.applications.extract.shards import manifest, write_shard
from hardnet_export.applications.extract.stages import (
    DescribeStage,
    ExtractOptions,
    columns_of,
    prepare_row,
    rows_of,
)
from hardnet_export.host import usable_cpus

#: Object store of a local Ray started for a run: enough for a few shards in flight (Ray's
#: default, 30 % of memory, would reserve gigabytes of shared memory on a laptop).
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
#: What one preparing task reserves: the file's bytes, the decoded image and the detector's
#: pyramid of a large photo. It keeps a node from starting more decodes than its memory
#: holds, and it keeps the stage out of the actors' processes (Ray Data fuses operators
#: whose remote arguments are the same), so images are prepared while others are described.
PREPARE_MEMORY_BYTES = 512 * 2**20
#: Images per read block: each block is one preparing task, so small blocks spread the
#: decoding and detection over every CPU of the cluster (a task costs milliseconds; an
#: image hundreds).
IMAGES_PER_BLOCK = 4


def write_shards(batch: Mapping[str, Any], folder: str) -> dict[str, Any]:
    rows = rows_of(batch)
    shard = write_shard(folder, rows)
    return columns_of([manifest(row, shard) for row in rows])


@contextlib.contextmanager
def connected(address: str | None, cpus: int) -> Iterator[Any]:
    """Ray, joined at ``address`` or started here for the run (and stopped after it); a Ray
    this process already started (a library user's, a test's) is used as it is."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    # ray.init installs its own SIGINT/SIGTERM handlers over the process's and leaves them
    # after shutdown: the caller's (the command line's end a run cleanly, leaving no partial
    # output) are put back for the run and after it.
    saved = _handlers()
    try:
        if address is None:
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        _restore(saved)
        yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _restore(saved)


def _handlers() -> dict[int, Any]:
    """This process's SIGINT/SIGTERM handlers (none off the main thread, where Python can
    neither read nor set them)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in _signals.SIGNALS}


def _restore(saved: dict[int, Any]) -> None:
    for signum, handler in saved.items():
        if handler is not None:
            signal.signal(signum, handler)
    _signals.reclaim()


def run_ray(
    items: Sequence[ImageItem], options: ExtractOptions, folder: Path, scale: Scale
) -> Iterator[dict[str, Any]]:
    """Describe ``items`` into shards in ``folder`` on Ray; yield one row per image as its
    shard is written (see :mod:`~hardnet_export.applications.extract.engines`)."""
    if not items:
        return
    # The describers and the preparing tasks each need a CPU slot: a local Ray gets one
    # more slot per describer than cores, as the describers wait on the tasks' patches.
    low, high = scale.workers
    cpus = usable_cpus() + int(high * scale.cpus_per_worker + 0.999)
    with connected(scale.address, cpus) as ray:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        per_shard = scale.images_per_shard
        rows = [{"name": item.name, "path": item.path} for item in items]
        pool = (
            ray.data.ActorPoolStrategy(size=low)
            if low == high
            else (ray.data.ActorPoolStrategy(min_size=low, max_size=high))
        )
        dataset = (
            ray.data.from_items(rows, override_num_blocks=-(-len(rows) // IMAGES_PER_BLOCK))
            .map(
                prepare_row,
                fn_kwargs={"options": options},
                num_cpus=1,
                memory=PREPARE_MEMORY_BYTES,
            )
            .map_batches(
                DescribeStage,
                fn_constructor_kwargs={"options": options},
                batch_size=per_shard,
                compute=pool,
                num_cpus=scale.cpus_per_worker,
                num_gpus=scale.gpus_per_worker,
                batch_format="numpy",
            )
            .map_batches(
                write_shards,
                fn_kwargs={"folder": str(folder)},
                batch_size=None,
                num_cpus=0.5,
                batch_format="numpy",
            )
        )
        for row in dataset.iter_rows():
            _signals.check()
            yield {key: _plain(value) for key, value in row.items()}


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (the driver writes them to JSON)."""
    return value.item() if hasattr(value, "item") else value
