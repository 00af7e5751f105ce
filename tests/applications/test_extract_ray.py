"""The Ray engine: a local Ray it starts and stops itself, and a simulated two-node cluster
(``ray.cluster_utils.Cluster``) whose describer is SIGKILLed mid-run. Both must give the
local engine's features bit for bit (ONNX Runtime is deterministic across processes, and
every inference call has the same batch, see ``stages.describe_padded``)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from extract_fixtures import COMMON, assert_same_features, write_images

from hardnet_export.applications.extract import ExtractEvent, Scale, errors_path, extract, runs_of
from hardnet_export.shipped import WEIGHTS_DIR

ray = pytest.importorskip("ray")
pytest.importorskip("h5py")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """12 images and a corrupt one, and their features from the local engine."""
    root = tmp_path_factory.mktemp("ray") / "imgs"
    write_images(root, 12)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    reference = root.parent / "local.h5"
    extract(root, reference, **COMMON, scale=Scale(images_per_shard=5))
    return root, reference


def test_a_local_ray_for_the_run_matches_the_local_engine(
    images: tuple[Path, Path], tmp_path: Path
) -> None:
    root, reference = images
    assert not ray.is_initialized()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out = tmp_path / "ray.h5"
    scale = Scale(images_per_shard=2, workers=(2, 2))
    summary = extract(root, out, **COMMON, engine="ray", scale=scale)
    assert not ray.is_initialized()  # the engine stopped the Ray it started
    # ... and gave the process its signal handlers back (ray.init takes them).
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert (summary.described, summary.failed) == (12, 1)
    assert_same_features(out, reference)
    assert errors_path(out).read_text() == errors_path(reference).read_text()
    run = runs_of(out)[-1]
    assert run["engine"] == "ray" and run["scale"]["workers"] == [2, 2]
    assert len(run["nodes"]) == 1 and run["workers"]

    # Resume on Ray: only the new image is described.
    write_images(root.parent / "more", 2, seed=1)
    (root / "new.png").write_bytes((root.parent / "more" / "view01.png").read_bytes())
    again = extract(root, out, **COMMON, engine="ray", scale=scale)
    assert (again.described, again.skipped, again.failed) == (1, 12, 1)
    (root / "new.png").unlink()


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from ray.cluster_utils import Cluster

    store = 100 * 2**20
    head = {"num_cpus": 1, "object_store_memory": store, "include_dashboard": False}
    # The cluster's nodes and ray.init take SIGINT/SIGTERM; later tests need them back.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    simulated = Cluster(initialize_head=True, head_node_args=head)
    simulated.add_node(num_cpus=2, object_store_memory=store)
    simulated.wait_for_nodes()
    ray.init(address=simulated.address, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield simulated
    finally:
        ray.shutdown()
        simulated.shutdown()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def test_a_describer_killed_on_a_two_node_cluster_loses_nothing(
    tmp_path: Path, cluster: object
) -> None:
    # The full model at 400 keypoints: each image takes the describer a good part of a
    # second, so when the first image comes back the others are still to be described, and
    # the kill lands mid-run.
    root = tmp_path / "imgs"
    write_images(root, 10, size=(360, 480))
    options = {**COMMON, "model": str(WEIGHTS_DIR / "hardnet_builtin.fp32.onnx"),
               "max_keypoints": 400}  # fmt: skip
    reference = tmp_path / "local.h5"
    extract(root, reference, **options, scale=Scale(images_per_shard=1))
    killed: list[int] = []

    def kill_the_describer(event: ExtractEvent) -> None:
        if event.worker and not killed:
            pid = int(event.worker.rpartition(":")[2])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    out = tmp_path / "cluster.h5"
    scale = Scale(images_per_shard=1, workers=(1, 1))
    # Ray restarts the actor and retries its batch, or gives up on the run: either way the
    # rerun must complete the set, each image once.
    first = None
    with contextlib.suppress(Exception):
        first = extract(
            root, out, **options, engine="ray", scale=scale, progress=kill_the_describer
        )
    assert killed
    rerun = extract(root, out, **options, engine="ray", scale=scale)
    assert rerun.failed == 0 and rerun.described + rerun.skipped == 10
    assert_same_features(out, reference)
    if first is not None:  # Ray restarted the describer, which finished the run
        assert first.described == 10 and len(first.workers) == 2, first
        assert killed[0] in {int(w.rpartition(":")[2]) for w in first.workers}
        assert rerun.described == 0
