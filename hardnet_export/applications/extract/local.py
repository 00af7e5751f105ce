"""The local engine: the stages in this process, no Ray needed.

Helper threads read, hash, decode, detect and cut the images ahead (in order, at most two
shards ahead, so memory stays bounded); this thread describes the patches of a whole shard's
images in one batch and writes the shard.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hardnet_export.applications.extract.engines import Scale
from hardnet_export.applications.extract.listing import ImageItem
from hardnet_export.applications.extract.shards import manifest, write_shard
from hardnet_export.applications.extract.stages import (
    DescribeStage,
    ExtractOptions,
    prepare_row,
)
from hardnet_export.host import usable_cpus


def run_local(
    items: Sequence[ImageItem], options: ExtractOptions, folder: Path, scale: Scale
) -> Iterator[dict[str, Any]]:
    """Describe ``items`` into shards in ``folder``; yield one row per image as its shard is
    written (see :mod:`~hardnet_export.applications.extract.engines`)."""
    if not items:
        return
    stage = DescribeStage(options)
    per_shard = scale.images_per_shard
    # OpenCV's detector and the describer both use every core; one or two helpers keep
    # the describer fed without fighting it.
    threads = max(1, min(2, usable_cpus() - 1))
    pool = ThreadPoolExecutor(threads, thread_name_prefix="hardnet-extract")
    ahead: collections.deque[Future[dict[str, Any]]] = collections.deque()
    todo = iter(items)
    try:

        def refill() -> None:
            while len(ahead) < 2 * per_shard:
                item = next(todo, None)
                if item is None:
                    return
                row = {"name": item.name, "path": item.path}
                ahead.append(pool.submit(prepare_row, row, options))

        refill()
        while ahead:
            rows = [ahead.popleft().result() for _ in range(min(per_shard, len(ahead)))]
            refill()
            described = stage.describe_rows(rows)
            shard = write_shard(folder, described)
            for row in described:
                yield manifest(row, shard)
    finally:
        for future in ahead:
            future.cancel()
        pool.shutdown(wait=True)
        stage.close()
