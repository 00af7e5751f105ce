"""A toy backend: the whole of what a new backend needs besides its one record.

It runs ``.toy`` files (an ONNX patch graph under its own suffix) on ONNX Runtime's CPU provider
with sequential execution: a stand-in for a runtime this project does not have, written only
against the public base class and records.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.artifacts.backends import Backend
from hardnet_export.artifacts.metadata import GraphMetadata
from hardnet_export.artifacts.variants import Variant
from hardnet_export.benchmark.targets import BenchContext, Target
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.runtime.base import Describer
from hardnet_export.runtime.inputs import graph_input


class ToyDescriber(Describer):
    """A ``.toy`` graph in a single-threaded, sequential ONNX Runtime session."""

    backend = "toy"

    def __init__(self, session: Any, artifact: Path, metadata: GraphMetadata, **kw: Any) -> None:
        spec = session.get_inputs()[0]
        dtype = "uint8" if "uint8" in spec.type else "float32"
        super().__init__(artifact, precision=metadata.precision, input_dtype=dtype, **kw)
        self.session = session
        self._input, self._output = spec.name, session.get_outputs()[0].name

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        device: str | None = None,
        max_batch: int | None = None,
        threads: int = 1,
    ) -> Describer:
        import onnxruntime as ort

        if path is None or not Path(path).is_file():
            raise MissingFileError(f"toy model not found: {path}")
        if device not in (None, "cpu"):
            raise InputError(f"the toy backend runs on 'cpu', got device={device!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = GraphMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
        return cls(session, Path(path), metadata, device="cpu", max_batch=max_batch or 256)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(
            [self._output], {self._input: graph_input(batch, self.input_dtype, None)}
        )
        return np.asarray(out, np.float32)


def bench_targets(
    backend: Backend, variant: Variant, device: str, context: BenchContext
) -> list[Target]:
    """Every variant's graph, copied under the toy suffix."""
    if device != "cpu":
        return []
    graph = context.graph(variant)
    toy = graph.with_suffix(".toy")
    if not toy.is_file():
        shutil.copyfile(graph, toy)
    return [Target(f"{backend.name} {variant.name}", toy, backend.name, device)]


#: The one record that makes it a backend.
RECORD = Backend(
    name="toy",
    summary="a toy: ONNX Runtime, single-threaded and sequential, from a .toy graph",
    kinds={"patches": "toy_backend:ToyDescriber"},
    suffixes=(".toy",),
    devices=("cpu",),
    module="onnxruntime",
    distributions=("onnxruntime",),
    threads_option="threads",
    provenance="hardnet_export.artifacts.provenance:graph_provenance",
    bench="toy_backend:bench_targets",
)
