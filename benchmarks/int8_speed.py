"""INT8 graphs against each other, per patch at batch 256 on ONNX Runtime and OpenVINO.

    python benchmarks/int8_speed.py REFERENCE.onnx OTHER.onnx [...]

Every graph is loaded on both CPU backends; rounds of 1 s each are interleaved (a shared
machine's load changes within a run), and each graph's throughput is reported as the median
over the rounds and, per round, as a ratio to the first graph on the same backend.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from hardnet_export import runtime
from hardnet_export.data.builtin import validation_pairs

BATCH = 256
ROUNDS = 7
BACKENDS = ("onnxruntime", "openvino")


def main(graphs: list[str]) -> None:
    batch = np.ascontiguousarray(validation_pairs(BATCH, seed=0).anchors[:BATCH, None])
    models = {}
    for graph in graphs:
        for backend in BACKENDS:
            models[graph, backend] = runtime.load(graph, backend=backend, device="cpu")
            models[graph, backend].describe(batch)  # warm-up
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in models}
    for _ in range(ROUNDS):
        for key, model in models.items():
            start, calls = time.perf_counter(), 0
            while time.perf_counter() - start < 1.0:
                model.describe(batch)
                calls += 1
            rates[key].append(calls * BATCH / (time.perf_counter() - start))
    print("| graph | backend | patches/s (median) | x first graph (median of rounds) |")
    print("|---|---|---:|---:|")
    for (graph, backend), values in rates.items():
        first = rates[graphs[0], backend]
        ratio = statistics.median(a / b for a, b in zip(values, first, strict=True))
        print(f"| {graph} | {backend} | {statistics.median(values):,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
