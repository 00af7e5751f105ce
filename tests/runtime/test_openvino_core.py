"""One OpenVINO Core per process: describers freed in any order leave signals working.

Runs in the normal pytest process on purpose. Each ``openvino.Core`` installs an alternate
signal stack and restores the one it found when freed; with a Core per describer, three
describers freed in creation order left the process on an unmapped stack, and the next handled
signal (or a DataLoader worker's SIGCHLD) ended the whole process with SIGSEGV.
"""

from __future__ import annotations

import gc
import signal
import threading

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.models import models
from hardnet_export.runtime.openvino_backend import core, read_graph_metadata

pytest.importorskip("openvino")


def test_the_core_is_one_per_process_and_thread_safe() -> None:
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(core())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(c is core() for c in seen)


def test_describers_freed_in_creation_order_then_signals_and_a_worker() -> None:
    torch = pytest.importorskip("torch")
    graphs = [entry.onnx for entry in models()[:3]]
    assert len({g.name for g in graphs}) == 3
    patches = np.random.default_rng(0).integers(0, 256, (64, 32, 32), dtype=np.uint8)
    describers = [runtime.load(g, backend="openvino", num_threads=2) for g in graphs]
    # Threaded inference, as in real use (no loop variable may keep the last one alive).
    assert [d.describe(patches).shape for d in describers] == [(64, 128)] * 3
    assert read_graph_metadata(graphs[0]).precision == "fp32"
    while describers:
        describers.pop(0)  # creation order: the order that crashed
        gc.collect()

    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert caught == [signal.SIGINT]

    data = torch.utils.data.TensorDataset(torch.arange(8.0))
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=1)
    assert [batch[0].tolist() for batch in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
