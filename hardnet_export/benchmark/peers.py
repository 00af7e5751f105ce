"""Ours against the peers: what a user gets from ``runtime.load`` by default, beside the
best a user would build alone with the usual tools, timed in the same run.

"Ours" is ``runtime.load(artifact, device="cpu")`` with no backend and no options, on the
artifacts a user would pick: the shipped FP32 graph and the INT8 CPU graph of the same
model. Each peer is one :class:`Peer` record (:data:`PEERS`) and becomes one benchmark
target labelled ``peer: ...``:

- PyTorch eager FP32 at its best batch: ``describe`` in chunks of several sizes, the fastest
  one used (batch 1 is batch 1); torch's threads are the run's threads.
- ``torch.compile`` of the model (default mode): compile time excluded, warm-up included;
  where compiling fails the target is skipped with a note saying why.
- ONNX Runtime on a plain FP32 export with default ``SessionOptions``: the project's FP32
  graph is such an export (``torch.onnx.export(dynamo=True)`` of ``HardNet.forward``, BatchNorm
  and constants folded, nothing rewritten), opened by an ``InferenceSession`` with a default
  ``SessionOptions`` on the CPU provider.
- OpenVINO with its default settings on the FP32 graph: ``compile_model(model, "CPU")`` with
  no config at all (on CPUs with native bf16 OpenVINO then runs the float layers in bf16; the
  inference precision it chose is recorded). The project's one OpenVINO Core compiles it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from hardnet_export.errors import HardnetError
from hardnet_export.host import installed

if TYPE_CHECKING:
    from hardnet_export.benchmark.targets import Target
    from hardnet_export.runtime.base import Describer

#: The variants "ours" is timed on: the graphs a user picks (FP32, and INT8 for this CPU).
OURS_VARIANTS = ("fp32", "int8-cpu")
#: Chunk sizes the eager peer tries for a large batch ("its best batch").
EAGER_CHUNKS = (16, 32, 64, 128, 256)
#: The goal per batch size: ours over the best peer (latency at 1, throughput at 256).
GOALS = {1: 1.0, 256: 1.5}
#: The per-frame goal: ours' time per frame over OpenCV SIFT compute()'s.
FRAME_GOAL_VS_SIFT = 0.5


class PeerUnavailable(HardnetError, RuntimeError):
    """A peer cannot run here (``torch.compile`` without a working compiler, ...): the
    benchmark skips it and says why."""


@dataclass(frozen=True, kw_only=True)
class Peer:
    """One way a user would run HardNet without this project's runtime.

    Attributes:
        name: short name (``torch-compile``).
        label: the benchmark target's label, ``peer: ...``.
        summary: what exactly is built, for tables and notes.
        module: the import name whose presence makes it available.
        source: what it runs: ``weights`` (the checkpoint) or ``fp32-graph`` (the FP32 export).
        load: ``module:function`` building its describer,
            ``(target, max_batch, threads) -> Describer``.
        chunks: chunk sizes to try for a batch (the best is used); empty: one call per batch.
    """

    name: str
    label: str
    summary: str
    module: str
    source: str
    load: str
    chunks: tuple[int, ...] = ()

    def available(self) -> bool:
        return installed(self.module)


_HERE = "hardnet_export.benchmark.peers"
PEERS: tuple[Peer, ...] = (
    Peer(
        name="torch-eager",
        label="peer: torch eager fp32 (best batch)",
        summary="PyTorch eager FP32, describe in the fastest of chunks "
        f"{'/'.join(map(str, EAGER_CHUNKS))}, torch threads = the run's threads",
        module="torch",
        source="weights",
        load=f"{_HERE}:load_torch_eager",
        chunks=EAGER_CHUNKS,
    ),
    Peer(
        name="torch-compile",
        label="peer: torch.compile fp32",
        summary="torch.compile(model) in its default mode; compile time excluded",
        module="torch",
        source="weights",
        load=f"{_HERE}:load_torch_compile",
    ),
    Peer(
        name="onnxruntime-default",
        label="peer: onnxruntime fp32 (default session)",
        summary="InferenceSession on the plain FP32 export (torch.onnx.export), default "
        "SessionOptions, CPU provider",
        module="onnxruntime",
        source="fp32-graph",
        load=f"{_HERE}:load_onnxruntime_default",
    ),
    Peer(
        name="openvino-default",
        label="peer: openvino fp32 graph (default settings)",
        summary='core.compile_model(model, "CPU") on the FP32 graph with no config',
        module="openvino",
        source="fp32-graph",
        load=f"{_HERE}:load_openvino_default",
    ),
)


def peers() -> tuple[Peer, ...]:
    """Every peer installed here, in the table's order."""
    return tuple(p for p in PEERS if p.available())


def load_ours(artifact: Path | None, device: str) -> Describer:
    """What a user gets by default: ``runtime.load(artifact, device=device)``, nothing else."""
    from hardnet_export.runtime import load
    from hardnet_export.runtime.base import patch_describer

    return patch_describer(load(artifact, device=device), "the benchmark")


def choice_summary(describer: Any) -> str | None:
    """What ``runtime.load`` chose for ``describer`` (its
    :class:`~hardnet_export.artifacts.tuning.Choice`), None for a describer built directly."""
    choice = describer.choice
    return None if choice is None else str(choice.summary())


def describe_what(describer: Any) -> str:
    """One line on what ran: backend, graph precision, OpenVINO's inference precision."""
    parts = [f"{describer.backend} {describer.precision}"]
    inference = getattr(describer, "inference_precision", None)
    small = getattr(describer, "small", None)
    if inference and inference != "f32":
        parts.append(f"inference {inference}")
    if small is not None:
        patches = "patch" if small.max_batch == 1 else "patches"
        parts.append(f"up to {small.max_batch} {patches} on {small.backend}")
    return ", ".join(parts)


def target_note(target: Target, describer: Any) -> str:
    """What ran, for ours and the peers (empty for other targets): backend and precision
    (OpenVINO's own inference precision where it differs), and the runtime's choice where
    it records one."""
    if target.role not in ("ours", "peer"):
        return ""
    choice = choice_summary(describer)
    return f"{describe_what(describer)}; choice: {choice}" if choice else describe_what(describer)


def load_torch_eager(target: Target, max_batch: int, threads: int) -> Describer:
    """PyTorch eager FP32 of the checkpoint, ``threads`` intra-op threads."""
    from hardnet_export.runtime.torch_backend import TorchDescriber

    return TorchDescriber.open(target.artifact, device="cpu", max_batch=max_batch,
                               num_threads=threads)  # fmt: skip


def load_torch_compile(target: Target, max_batch: int, threads: int) -> Describer:
    """``torch.compile`` of the checkpoint's model (default mode), compiled here by one call
    on a single patch so that a compiler that is missing or failing is known now.

    Raises:
        PeerUnavailable: compiling failed; the message says why.
    """
    from hardnet_export.runtime.torch_backend import TorchDescriber

    class CompiledTorchDescriber(TorchDescriber):
        """TorchDescriber whose forward pass is ``torch.compile(model)``."""

        _compiled: Any = None

        def _forward(self, x: Any) -> Any:
            return self._compiled(x)

    import torch

    # open is TorchDescriber's classmethod: it builds the subclass it is called on.
    describer = cast(
        CompiledTorchDescriber,
        CompiledTorchDescriber.open(
            target.artifact, device="cpu", max_batch=max_batch, num_threads=threads
        ),
    )
    describer._compiled = torch.compile(describer.model)
    try:
        describer.describe(np.zeros((1, 1, 32, 32), np.uint8))
    except Exception as exc:  # inductor raises many kinds (BackendCompilerFailed, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PeerUnavailable(
            f"torch.compile failed here ({type(exc).__name__}: {first[:200]})"
        ) from None
    return describer


def load_onnxruntime_default(target: Target, max_batch: int, threads: int) -> Describer:
    """The FP32 graph in an ONNX Runtime session with default ``SessionOptions`` (the
    runtime's ONNX Runtime describer without options builds exactly that), one call per
    batch up to ``max_batch``; ``threads`` is not applied (ONNX Runtime's default: all
    physical cores)."""
    from hardnet_export.runtime import load
    from hardnet_export.runtime.base import patch_describer

    describer = load(target.artifact, backend="onnxruntime", device="cpu", max_batch=max_batch)
    return patch_describer(describer, "the benchmark")


def load_openvino_default(target: Target, max_batch: int, threads: int) -> Describer:
    """The FP32 graph compiled by OpenVINO's CPU plugin with no config at all (its default
    inference precision, threads and performance hint), through the project's one Core;
    the describer's ``inference_precision`` is what OpenVINO chose."""
    from hardnet_export.runtime.openvino_backend import (
        OpenVINODescriber,
        _metadata,
        core,
        read_model,
    )

    path = Path(target.artifact) if target.artifact is not None else None
    if path is None:
        raise PeerUnavailable("the OpenVINO peer needs the FP32 graph")
    model = read_model(path)
    compiled = core().compile_model(model, "CPU")
    chose = ov_precision(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return OpenVINODescriber(
        compiled, path, _metadata(model, path), max_batch=max_batch, inference_precision=chose
    )


def ov_precision(value: Any) -> str:
    """OpenVINO's element type as the backend's option spells it (``bf16``, ``f32``)."""
    text = str(getattr(value, "get_type_name", lambda: value)())
    return {"bfloat16": "bf16", "float32": "f32", "float16": "f16"}.get(text, text)


def chunked(describer: Describer, batch: np.ndarray, chunk: int | None) -> Callable[[], None]:
    """One call of ``describe`` on ``batch``, in pieces of ``chunk`` patches (None: whole)."""
    parts = [batch]
    if chunk is not None and chunk < len(batch):
        parts = [batch[i : i + chunk] for i in range(0, len(batch), chunk)]

    def step() -> None:
        for part in parts:
            describer.describe(part)

    return step


def best_chunk(
    describer: Describer, batch: np.ndarray, chunks: Sequence[int], seconds: float
) -> int | None:
    """The chunk of ``chunks`` (those below the batch, and the whole batch) with which
    ``describe`` of ``batch`` takes the least time per call, each tried for ``seconds``
    (median of its calls); None: the whole batch in one call."""
    options: list[int | None] = [c for c in chunks if c < len(batch)] + [None]
    if len(options) == 1:
        return None
    best, best_s = None, float("inf")
    for chunk in options:
        step = chunked(describer, batch, chunk)
        step()  # warm-up: the first call of a new shape allocates
        times: list[float] = []
        start = time.perf_counter()
        while not times or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        if float(np.median(times)) < best_s:
            best, best_s = chunk, float(np.median(times))
    return best
