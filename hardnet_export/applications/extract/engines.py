"""The engines a bulk extraction runs on: one record each, the code in its own module.

An engine takes the images to describe and yields one small row per image as its shard is
written (``name``, ``sha256``, ``keypoints``: the count, ``shard``, ``worker``, ``error``);
the driver counts, reports progress and merges. A new engine is one :class:`Engine` record
and one module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardnet_export.applications.extract.listing import ImageItem
from hardnet_export.applications.extract.stages import ExtractOptions
from hardnet_export.errors import InputError
from hardnet_export.host import require


@dataclass(frozen=True)
class Scale:
    """How an engine spreads the work.

    Attributes:
        images_per_shard: images described in one batch and written in one shard (a kill
            loses at most the shards in flight).
        workers: describer processes (Ray actors), as (min, max); min == max: a fixed pool.
        cpus_per_worker, gpus_per_worker: what each describer reserves (Ray's ``num_cpus``,
            ``num_gpus``; a fraction shares a GPU).
        address: the Ray cluster to join (``auto``: the one this machine belongs to); None:
            a local Ray started for the run and stopped after it.
    """

    images_per_shard: int = 16
    workers: tuple[int, int] = (1, 1)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    address: str | None = None


#: An engine's run: (items, options, shard folder, scale) -> rows as shards are written.
EngineRun = Callable[[Sequence[ImageItem], ExtractOptions, Path, Scale], Iterator[dict[str, Any]]]


@dataclass(frozen=True)
class Engine:
    """One engine: where its code lives and what it needs installed."""

    name: str
    module: str
    function: str
    summary: str
    #: Import names of :data:`~hardnet_export.host.OPTIONAL_PACKAGES` it needs.
    needs: tuple[str, ...] = ()

    def runner(self) -> EngineRun:
        self.check_installed()
        run: EngineRun = getattr(importlib.import_module(self.module), self.function)
        return run

    def check_installed(self) -> None:
        """Raise, before any work, when the engine's library is missing."""
        require(f"the {self.name} engine", *self.needs)


ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine(
            "local",
            "hardnet_export.applications.extract.local",
            "run_local",
            "this process: reading, detection and patch cutting in threads, one describer",
        ),
        Engine(
            "ray",
            "hardnet_export.applications.extract.ray_engine",
            "run_ray",
            "Ray Data: CPU tasks prepare, a pool of actors (one describer each) describes, on "
            "one machine or a cluster",
            needs=("ray",),
        ),
    )
}


def get_engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise InputError(f"engine must be one of {sorted(ENGINES)}, got {name!r}") from None
