"""The one table of backends: what each is, which artifacts it reads, where it runs.

A backend is one :class:`Backend` record plus its own module(s). The record names its code by
``module:attribute`` strings, imported only when used, so this table sits in the torch-free
floor and every layer above reads it: ``runtime.load`` (suffix, graph kind, load options),
the CPU policy (:mod:`hardnet_export.runtime.policy`), ``check`` (provenance), ``bench``
(targets, library versions), the INT8 export (gates per backend) and the CLI's help. Built-in
records are in :data:`BUILTIN`; :func:`register_backend` adds one (a plugin, or a test's toy
backend) without touching another file.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.quantisation import INT8_TARGET_COSINE
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.host import (
    BF16_FLAGS,
    VNNI_FLAGS,
    cpu_flags,
    distribution_version,
    installed,
    int8_isa,
    int8_kernels_fit,
)

#: Where a describer runs.
DEVICES = ("cpu", "cuda")


def resolve(target: str) -> Any:
    """The attribute ``module:name`` names, imported now."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True, kw_only=True)
class CpuRule:
    """One line of the CPU rule table: graphs of ``precisions`` (INT8 ones of ``flavours``
    only, when given) run on the backend whose record holds it, with load ``options``, on a
    CPU with any of the flags in ``needs`` (every CPU when empty), in chunks of ``max_batch``
    patches, and when ``gated`` only for graphs that passed its accuracy gate at export.
    ``why`` gives the measurement behind it."""

    precisions: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    needs: tuple[str, ...] = ()
    #: The INT8 flavours (``cpu``, ``tensorrt``) it speaks for; empty: every graph.
    flavours: tuple[str, ...] = ()
    #: Patches per inference call (None: the backend's default).
    max_batch: int | None = None
    #: Taken only for a graph whose metadata records a passed accuracy gate under
    #: :meth:`gate_key` (the export measures it where the CPU has ``needs``): arithmetic that
    #: changes the descriptors (bf16) is gated like INT8, per graph.
    gated: bool = False
    #: A gated rule's stricter bar: the recorded gate's worst cosine must reach it too.
    min_cosine: float | None = None
    #: A ``small_batches`` rule's budget: it takes calls of at most this many multiply-adds
    #: in all (patches x the graph's per patch, from the width and layout it records), so a
    #: narrow graph routes more patches and a wide one none; None: ``max_batch`` alone.
    max_multiply_adds: int | None = None
    #: INT8 graphs only where this CPU's fused int8 kernels compute their weights without
    #: saturating (``fit``, :func:`~hardnet_export.host.int8_kernels_fit`), or only where
    #: they would saturate (``misfit``); None: either.
    weights: str | None = None
    why: str = ""

    def applies(
        self,
        precision: str,
        flags: frozenset[str],
        flavour: str | None = None,
        made_for: str | None = None,
    ) -> bool:
        """Whether it speaks for a graph of ``precision`` (and INT8 ``flavour``, weights made
        for ``made_for`` int8 kernels) on a CPU with ``flags``."""
        native = not self.needs or any(f in flags for f in self.needs)
        # An INT8 graph that records no flavour (not this exporter's) counts as a CPU graph.
        kind = not self.flavours or (flavour or "cpu") in self.flavours
        if not (precision in self.precisions and native and kind):
            return False
        if self.weights is None or precision != "int8":
            return True
        fit = int8_kernels_fit(int8_isa(flags), flavour, made_for)
        return fit == (self.weights == "fit")

    def gate_key(self, backend: str) -> str:
        """The key of its gate in a graph's metadata: ``backend:inference precision``."""
        return f"{backend}:{self.options.get('inference_precision', 'graph')}"


@dataclass(frozen=True, kw_only=True)
class Backend:
    """What is known about one backend.

    Attributes:
        name: what ``runtime.load(..., backend=NAME)`` and the CLI's ``--backend`` take.
        summary: one line for tables and ``--help``.
        kinds: per graph kind (``patches``, ``image``) the ``module:Class`` of its describer.
            ``runtime.load`` calls the ``patches`` class's ``open(path, *, device, max_batch,
            **options)``, which reads the artifact once and builds the class named here for
            its kind (:func:`hardnet_export.runtime.base.kind_class`).
        suffixes: artifact suffixes it reads; the first record reading a suffix is that
            suffix's default backend.
        devices: where it runs (:data:`DEVICES`).
        module: the import name whose presence makes it available (None: always).
        distributions: the pip distributions that provide ``module``, first found wins (the
            version a benchmark or ``check`` records).
        threads_option: the ``load`` option that sets its CPU threads (None: no CPU threads).
        unsupported: per graph kind it has no entry for, why (for the refusal).
        provenance: ``module:function`` returning an artifact's
            :class:`~hardnet_export.artifacts.provenance.Provenance` (what ``check`` compares
            against).
        cpu_rules: when no tuning was measured on this host, which graphs it runs on the
            CPU instead of the suffix's default backend, and with which options: measured
            rules per instruction set (:class:`CpuRule`, first match wins; see the policy).
        tuning: ``module:function`` listing the load-option sets ``hardnet-export tune`` times
            on this host for a graph (``(metadata, cpu_flags) -> [options]``: the inference
            precisions it can run here); None: it is not a tuning candidate.
        bench: ``module:function`` listing its benchmark targets for one variant
            (``(backend, variant, device, context) -> [Target]``, see
            :mod:`hardnet_export.benchmark.targets`); None: the benchmark does not time it
            per variant (PyTorch is the baseline).
        gate: ``module:function`` giving a describe function that runs a graph on it
            (``(graph, **load options) -> describe``), for the export's gates on this
            backend (INT8, and its gated CPU rules' arithmetic).
        gate_targets: the INT8 flavours the export gates on it (where it is installed).
        small_batches: where the policy runs a graph on another backend, calls (and chunks)
            of at most a rule's ``max_batch`` patches run here instead, with its options,
            when the rule holds for the graph and this CPU (:class:`CpuRule`, first match;
            see the policy): a path faster for a few patches and computing them exactly.
    """

    name: str
    summary: str
    kinds: Mapping[str, str] = field(hash=False)
    suffixes: tuple[str, ...]
    devices: tuple[str, ...]
    module: str | None
    distributions: tuple[str, ...] = ()
    threads_option: str | None = None
    unsupported: Mapping[str, str] = field(default_factory=dict, hash=False)
    provenance: str
    cpu_rules: tuple[CpuRule, ...] = ()
    tuning: str | None = None
    bench: str | None = None
    gate: str | None = None
    gate_targets: tuple[str, ...] = ()
    small_batches: tuple[CpuRule, ...] = ()

    @property
    def target(self) -> str:
        """The ``module:Class`` of its patch describer."""
        return self.kinds["patches"]

    def available(self) -> bool:
        """Whether its library is installed here (nothing is imported)."""
        return self.module is None or installed(self.module)

    def version(self) -> str | None:
        """The installed version of its library, by distribution metadata; None if absent."""
        return distribution_version(*self.distributions)

    def reads(self, path: str | Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    def describer_class(self, kind: str = "patches") -> Any:
        """The describer class of graph kind ``kind``.

        Raises:
            InputError: it has no entry for ``kind``.
        """
        if kind not in self.kinds:
            raise InputError(self.refusal(kind, "an artifact"))
        return resolve(self.kinds[kind])

    def read_provenance(self, path: Path) -> Any:
        return resolve(self.provenance)(path)

    def gate_function(self) -> Callable[..., Callable[[Any], Any]] | None:
        return None if self.gate is None else resolve(self.gate)

    def refusal(self, kind: str, artifact: str) -> str:
        """Why it does not open ``artifact``, a graph of kind ``kind``, and who does."""
        others = [b.name for b in backends() if kind in b.kinds]
        why = self.unsupported.get(kind)
        return (
            f"{artifact} is a graph of kind {kind!r}, which the {self.name} backend does not "
            f"open{f' ({why})' if why else ''}; backends that open {kind} graphs: "
            f"{', '.join(others) if others else 'none'}"
        )


_RUNTIME = "hardnet_export.runtime"
_PROVENANCE = "hardnet_export.artifacts.provenance"
_BENCH = "hardnet_export.benchmark.targets"
BUILTIN: tuple[Backend, ...] = (
    Backend(
        name="torch",
        summary="PyTorch eager or a CUDA graph, from a .pth checkpoint",
        kinds={"patches": f"{_RUNTIME}.torch_backend:TorchDescriber"},
        suffixes=(".pt", ".pth"),
        devices=("cpu", "cuda"),
        module="torch",
        distributions=("torch",),
        threads_option="num_threads",
        unsupported={"image": "a checkpoint holds the patch network only"},
        provenance=f"{_PROVENANCE}:checkpoint_provenance",
    ),
    Backend(
        name="onnxruntime",
        summary="ONNX Runtime (CPU, CUDA or its TensorRT provider), from an .onnx graph",
        kinds={
            "patches": f"{_RUNTIME}.onnxruntime_backend:OnnxRuntimeDescriber",
            "image": f"{_RUNTIME}.onnxruntime_backend:OnnxRuntimeImageDescriber",
        },
        suffixes=(".onnx",),
        devices=("cpu", "cuda"),
        module="onnxruntime",
        distributions=("onnxruntime", "onnxruntime-gpu"),
        threads_option="intra_op_num_threads",
        provenance=f"{_PROVENANCE}:graph_provenance",
        cpu_rules=(
            CpuRule(
                precisions=("int8",),
                flavours=("tensorrt",),
                options={"graph_optimization_level": "disable"},
                why=(
                    "the TensorRT flavour was checked in exact Q/DQ arithmetic, which the "
                    "unfused graph computes on any CPU; fused int8 kernels on CPUs without "
                    "VNNI saturate on its symmetric activations (ONNX Runtime on a Zen 3: "
                    "0.985 to exact; OpenVINO restricted to AVX2 on a Zen 4: worst cosine "
                    "0.896 for hardnet-fast's graph). Taken where no OpenVINO rule holds"
                ),
            ),
            CpuRule(
                precisions=("int8",),
                flavours=("cpu",),
                options={"graph_optimization_level": "disable"},
                weights="misfit",
                why=(
                    "a cpu-flavour graph with 8-bit weights (made for VNNI or AMX) on a CPU "
                    "whose int8 kernels sum pairs in saturating 16 bits (x86 without VNNI): "
                    "ONNX Runtime's and OpenVINO's fused kernels can clip (a Q/DQ conv of "
                    "weights 127 and inputs 255: 2,359,224 for 4,663,440 in OpenVINO "
                    "restricted to AVX2); the unfused graph computes the exact Q/DQ "
                    "arithmetic it was checked in. A graph exported for such CPUs (7-bit "
                    "weights) runs fused"
                ),
            ),
        ),
        tuning=f"{_RUNTIME}.onnxruntime_backend:tuning_candidates",
        bench=f"{_BENCH}:cpu_graph_targets",
        small_batches=(
            CpuRule(
                precisions=("fp32",),
                max_multiply_adds=4_000_000,
                # Its spinning threads would slow the chosen backend's next call.
                options={"allow_spinning": False},
                why=(
                    "FP32 graphs' calls of little work, where OpenVINO's per-call overhead "
                    "dominates: on an AMX Xeon OpenVINO's bf16 took 0.43x-0.61x ONNX Runtime's "
                    "time at one patch for hardnet-fast and hardnet-eighth (1.0 and 0.76 M "
                    "multiply-adds per patch), 0.69x at four for hardnet-fast, about 1x at "
                    "4-8 M multiply-adds a call, and won above (1.63x at one patch of the full "
                    "model, 39 M); ONNX Runtime's threads not spinning"
                ),
            ),
            CpuRule(
                precisions=("int8",),
                # The flavour made for these kernels, on CPUs whose int8 products accumulate
                # in 32 bits: where OpenVINO's and ONNX Runtime's int8 agree (worst held-out
                # cosine 0.9999 between them for the three shipped all-int8 graphs).
                flavours=("cpu",),
                needs=VNNI_FLAGS,
                max_multiply_adds=6_000_000,
                options={"allow_spinning": False},
                why=(
                    "INT8 graphs' calls of little work: on an AMX Xeon ONNX Runtime took "
                    "0.59-0.72x OpenVINO's time (float parts f32, one patch on a graph compiled "
                    "for it) at 1-4 patches of hardnet-fast's all-int8 graph (1.0 M "
                    "multiply-adds per patch), 0.97x at 8; 0.89-0.93x at 1-2 of hardnet-"
                    "quarter's (2.7 M), 1.36x at 4; 1.03x at one of hardnet-half's (10.1 M)"
                ),
            ),
        ),
    ),
    Backend(
        name="openvino",
        summary="OpenVINO on the CPU, from an .onnx graph or OpenVINO IR (.xml + .bin)",
        kinds={
            "patches": f"{_RUNTIME}.openvino_backend:OpenVINODescriber",
            "image": f"{_RUNTIME}.openvino_backend:OpenVINOImageDescriber",
        },
        suffixes=(".xml", ".onnx"),
        devices=("cpu",),
        module="openvino",
        distributions=("openvino",),
        threads_option="num_threads",
        provenance=f"{_PROVENANCE}:graph_provenance",
        cpu_rules=(
            CpuRule(
                precisions=("fp32", "fp16"),
                options={"inference_precision": "bf16"},
                needs=BF16_FLAGS,
                max_batch=256,
                gated=True,
                why=(
                    "CPUs with native bf16: OpenVINO's bf16 inference ran the shipped FP32 graph "
                    "4.3x (AMX Xeon) and 1.9x (AVX512-BF16 EPYC) ONNX Runtime's FP32; it moves "
                    "descriptors (the shipped models' worst held-out cosine 0.990-0.994), so "
                    "only a graph whose export passed this gate takes it"
                ),
            ),
            CpuRule(
                precisions=("int8",),
                options={"inference_precision": "bf16"},
                needs=BF16_FLAGS,
                max_batch=256,
                gated=True,
                min_cosine=INT8_TARGET_COSINE,
                why=(
                    "INT8 graphs' float layers in bf16 where their gate keeps the graph at "
                    f"{INT8_TARGET_COSINE}: a float conv0 ran 1.6x faster than in f32 on an "
                    "AVX512-BF16 EPYC (hardnet-fast's, per-layer counters; the full model's "
                    "export keeps 0.9937); hardnet-fast's all-int8 graph, whose only float work "
                    "is the per-patch standardisation, fell to 0.9866 (0.990-0.995 in f32, "
                    "held-out seeds 0-3) for no measurable frame time"
                ),
            ),
            CpuRule(
                precisions=("int8",),
                flavours=("cpu",),
                max_batch=256,
                weights="fit",
                why=(
                    "INT8 graphs, float layers in f32: OpenVINO ran the cpu flavour 1.2x ONNX "
                    "Runtime on an AVX2 EPYC (a graph exported there: 7-bit weights); not a "
                    "graph whose 8-bit weights this CPU's kernels would clip"
                ),
            ),
            CpuRule(
                precisions=("int8",),
                flavours=("tensorrt",),
                needs=VNNI_FLAGS,
                max_batch=256,
                why=(
                    "the TensorRT flavour, float layers in f32, where int8 products accumulate "
                    "in 32 bits (VNNI, AMX): restricted to AVX2 code on a Zen 4, OpenVINO's "
                    "kernels put hardnet-fast's all-int8 graph at a worst cosine of 0.896"
                ),
            ),
        ),
        tuning=f"{_RUNTIME}.openvino_backend:tuning_candidates",
        bench=f"{_BENCH}:openvino_targets",
        gate=f"{_RUNTIME}.openvino_backend:ov_describe",
        gate_targets=("cpu",),
    ),
    Backend(
        name="tensorrt",
        summary="a TensorRT engine (.engine/.plan) on an NVIDIA GPU or Jetson DLA",
        kinds={
            "patches": f"{_RUNTIME}.tensorrt_backend:TensorRTDescriber",
            "image": f"{_RUNTIME}.tensorrt_image:TensorRTImageDescriber",
        },
        suffixes=(".engine", ".plan"),
        devices=("cuda",),
        module="tensorrt",
        distributions=("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
        provenance=f"{_PROVENANCE}:engine_provenance",
        bench=f"{_BENCH}:engine_targets",
    ),
)

_registered: list[Backend] = list(BUILTIN)
_lock = threading.Lock()


def backends() -> tuple[Backend, ...]:
    """Every registered backend, built-in ones first, in registration order."""
    return tuple(_registered)


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` to the table (after the built-in ones: a suffix it shares with one of
    those keeps its default backend).

    Raises:
        InputError: a backend of that name is registered already.
    """
    with _lock:
        if any(b.name == backend.name for b in _registered):
            raise InputError(f"a backend called {backend.name!r} is registered already")
        _registered.append(backend)
    return backend


def unregister_backend(name: str) -> None:
    """Remove the backend called ``name`` (built-in ones stay)."""
    if any(b.name == name for b in BUILTIN):
        raise InputError(f"{name!r} is a built-in backend; it cannot be removed")
    with _lock:
        _registered[:] = [b for b in _registered if b.name != name]


def get_backend(name: str) -> Backend:
    """The registered backend called ``name``.

    Raises:
        InputError: no such backend; the message lists them.
    """
    for backend in backends():
        if backend.name == name:
            return backend
    raise InputError(f"unknown backend {name!r}; known: {[b.name for b in backends()]}")


def backend_names() -> tuple[str, ...]:
    return tuple(b.name for b in backends())


def artifact_suffixes() -> tuple[str, ...]:
    """Every suffix some backend reads, in table order."""
    return tuple(dict.fromkeys(s for b in backends() for s in b.suffixes))


def backend_for(path: str | Path) -> Backend:
    """The default backend of ``path``: the first registered one that reads its suffix.

    Raises:
        MissingFileError: no file at ``path``, whose suffix no backend reads either (a
            missing file is the first thing to tell).
        InputError: no backend reads this suffix.
    """
    for backend in backends():
        if backend.reads(path):
            return backend
    if not Path(path).exists():
        raise MissingFileError(f"model not found: {path}")
    raise InputError(f"no backend reads {path}: expected one of {sorted(artifact_suffixes())}")


def format_backends(entries: tuple[Backend, ...] | None = None) -> str:
    """A plain-text table of ``entries`` (default: every registered backend): name, the
    artifacts it reads, where it runs, the installed version of its library, what it is."""
    rows = [("name", "reads", "devices", "installed", "what")]
    for backend in backends() if entries is None else entries:
        version = backend.version() if backend.available() else None
        installed_here = version or ("importable" if backend.available() else "no")
        rows.append(
            (
                backend.name,
                " ".join(backend.suffixes),
                ",".join(backend.devices),
                installed_here,
                backend.summary,
            )
        )
    return plain_table(rows)


def format_rules(flags: frozenset[str] | None = None) -> str:
    """The CPU rule table as plain text, each rule marked where it speaks on this CPU (or one
    with ``flags``): the backend, the graphs it takes, the CPUs, options, chunk size, whether
    the graph must have passed its gate, and why."""
    flags = cpu_flags() if flags is None else flags
    rows = [("here", "backend", "graphs", "CPUs with", "options", "chunk", "gated")]
    whys = []
    for backend in backends():
        for rule in backend.cpu_rules:
            native = not rule.needs or any(f in flags for f in rule.needs)
            options = ", ".join(f"{k}={v}" for k, v in rule.options.items()) or "-"
            rows.append(
                (
                    "*" if native else "",
                    backend.name,
                    ",".join(rule.precisions)
                    + (f" ({','.join(rule.flavours)})" if rule.flavours else ""),
                    " or ".join(rule.needs) or "any",
                    options,
                    str(rule.max_batch or "-"),
                    "yes" if rule.gated else "no",
                )
            )
            whys.append(f"{len(whys) + 1}. {backend.name}: {rule.why}")
    head = (
        "CPU rules (when tune measured nothing here; the first that holds wins, else the "
        "suffix's default backend; * = holds on this CPU)"
    )
    return "\n".join([head, plain_table(rows), *whys])


def plain_table(rows: list[tuple[str, ...]]) -> str:
    """``rows`` (the first a header) as left-aligned columns two spaces apart."""
    sizes = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip()
        for row in rows
    )
