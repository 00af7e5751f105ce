"""``runtime.load``: open an artifact with the backend the records and the policy choose.

What each backend is lives in one record (:mod:`hardnet_export.artifacts.backends`: suffixes,
devices, graph kinds, the ``module:Class`` per kind, load options, provenance, benchmark
targets, gates); which backend runs an artifact on this host is
:func:`hardnet_export.runtime.policy.choose_backend`. A new backend is one record
(:func:`~hardnet_export.artifacts.backends.register_backend`) plus its module, with a
:class:`Describer` subclass per graph kind that has an ``open(path, *, device, max_batch,
**options)`` classmethod; backend modules import their library lazily, so a missing library
is only an error when that backend is asked for. No backend module imports this one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.backends import (
    Backend,
    backend_for,
    backends,
    get_backend,
    register_backend,
)
from hardnet_export.artifacts.models import (
    DEFAULT_MODEL,
    ShippedModel,
    as_path,
    get_model,
    lookup,
)
from hardnet_export.artifacts.tuning import Choice
from hardnet_export.errors import InputError, InputTypeError, MissingFileError, Remedy
from hardnet_export.host import installed
from hardnet_export.runtime.base import Describer, KeypointDescriber
from hardnet_export.runtime.policy import (
    choose,
    cpu_runners,
    load_options,
    on_cpu,
    registered_graph,
)
from hardnet_export.shipped import SHIPPED_ONNX, require_shipped
from hardnet_export.validate import device_name

__all__ = [
    "Backend",
    "backend_for",
    "backends",
    "describer_for",
    "get_backend",
    "load",
    "load_options",
    "register_backend",
]


def describer_for(backend: str, kind: str, artifact: str | Path) -> type[Describer]:
    """The class backend ``backend`` builds for ``artifact``, a graph of kind ``kind``.

    Raises:
        InputError: no such backend, or it has no entry for ``kind``: the message names the
            kind, the artifact and the backends that open that kind.
    """
    chosen = get_backend(backend)
    if kind not in chosen.kinds:
        raise InputError(chosen.refusal(kind, str(artifact)))
    found: type[Describer] = chosen.describer_class(kind)
    return found


def load(
    path: str | Path | None = None,
    *,
    backend: str | None = None,
    device: str | None = None,
    max_batch: int | None = None,
    **options: Any,
) -> KeypointDescriber:
    """Load a descriptor model; the artifact decides the backend.

    A patch graph, checkpoint or engine gives a :class:`Describer` (``describe`` and
    ``compute``); an image graph an :class:`~hardnet_export.runtime.image.ImageDescriber`
    (``compute`` only); both are :class:`KeypointDescriber`.

    ``.pt``/``.pth`` -> PyTorch, ``.onnx`` -> ONNX Runtime, ``.xml`` (OpenVINO IR) ->
    OpenVINO, ``.engine``/``.plan`` -> TensorRT (its sidecar is checked against this TensorRT
    and GPU first). With ``device="cpu"`` and no ``backend``, an ``.onnx`` graph goes to the
    faster CPU backend installed (:func:`~hardnet_export.runtime.policy.choose_backend`:
    OpenVINO for INT8 graphs, ONNX Runtime for FP32 and FP16). A registered model's name
    (:func:`hardnet_export.models`) loads that model and ``path=None`` the default one
    (``hardnet``). On the CPU (``device="cpu"``, or none on a host without a CUDA device) with
    no ``backend`` and no options, that is the fastest gated graph the model ships for this CPU
    (:func:`~hardnet_export.runtime.policy.registered_graph`: its FP32 ONNX graph, or its
    INT8 graph where tuning measured it faster here or, untuned, where the variant's name
    rules hold: VNNI or AMX, and AVX2 for ``hardnet``'s 7-bit graph),
    run as any graph is run there (the tuned or rule path: gated bf16 where the CPU has it);
    with options, its FP32 graph; elsewhere its checkpoint with PyTorch where torch is
    installed; with a backend that reads ``.onnx`` (``onnxruntime``, ``openvino``), its FP32
    graph on that backend; with ``backend="torch"``, its checkpoint.

    Args:
        path: the artifact, a registered model's name, or None for the default model.
        backend: force a backend by name (it must read the artifact's suffix).
        device: ``auto`` or None (the best device here), ``cpu``, ``cuda``, ``cuda:N`` or an
            int N (and ``tensorrt`` for ONNX Runtime's TensorRT provider).
        max_batch: the largest batch per inference call; larger inputs are chunked.
        options: backend options (see each backend's class docstring).

    Raises:
        FileNotFoundError: no such artifact.
        ValueError: unknown suffix, backend or model name (the message lists the names), or
            a corrupt artifact.
        TypeError: an option the backend does not take (the message lists those it does).
        ImportError: the backend's library is not installed.
    """
    entry = None if path is None else lookup(path)
    if path is None or entry is not None:
        return _load_registered(entry, backend, device, max_batch, options)
    path = as_path(path)
    choice = choose(path, device=device, backend=backend, options=options)
    chosen = get_backend(choice.backend)
    if not chosen.reads(path):
        raise InputError(
            f"backend {chosen.name!r} reads {list(chosen.suffixes)} files, got {path.name}"
        )
    if not path.is_file():
        raise MissingFileError(f"model not found: {path}")
    chunks = None
    if choice.source in ("tuned", "rule"):
        # The policy decided for the CPU: its options, and its chunk size unless given.
        device = "cpu"
        chunks = None if max_batch is not None else choice.max_batch
    describer = _open(chosen, path, device, max_batch, dict(choice.options), choice)
    if chunks is not None and isinstance(describer, Describer):
        describer.use_chunks(chunks)
    small = choice.small_batches
    if small is not None and isinstance(describer, Describer):
        other = _open(get_backend(small.backend), path, "cpu", small.max_batch,
                      dict(small.options), small)  # fmt: skip
        if isinstance(other, Describer):
            describer.use_for_small_batches(other)
    return describer


def _open(
    chosen: Backend,
    path: Path | None,
    device: str | None,
    max_batch: int | None,
    options: dict[str, Any],
    choice: Choice | None = None,
) -> KeypointDescriber:
    """Open ``path`` with the class ``chosen`` has for its graph kind, once the options are
    known to be the backend's own."""
    known = load_options(chosen.describer_class())
    unknown = sorted(set(options) - known)
    if unknown:
        # Python's "unexpected keyword argument" would name neither the backend nor what
        # it takes, and would come after the artifact's checks.
        takes = ", ".join(sorted(known)) or "none"
        raise InputTypeError(
            f"unknown load() option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"for the {chosen.name} backend; its options: {takes}"
        )
    # The patch class's open reads the artifact once and builds the class the record names
    # for its graph kind (runtime.base.kind_class).
    describer: KeypointDescriber = chosen.describer_class().open(
        path, device=device, max_batch=max_batch, **options
    )
    if choice is None:
        why = "the backend was given" if options or device else "the suffix's default"
        choice = Choice(chosen.name, options, source="explicit" if options else "default", why=why)
    describer.choice = choice
    return describer


def model_backend() -> str:
    """The backend a registered model's name takes off the CPU path (and, for exact figures,
    evaluation everywhere): PyTorch on its checkpoint where torch is installed, else ONNX
    Runtime on its FP32 graph."""
    return "torch" if installed("torch") else "onnxruntime"


def _fp32_graph(entry: ShippedModel | None) -> Path:
    """A registered model's FP32 graph (None: the default model's)."""
    return require_shipped(SHIPPED_ONNX) if entry is None else entry.file("onnx")


def _load_registered(
    entry: ShippedModel | None,
    backend: str | None,
    device: str | None,
    max_batch: int | None,
    options: dict[str, Any],
) -> KeypointDescriber:
    """A registered model (None: the default): on the CPU the graph the policy picks (FP32, or
    a faster INT8 graph it ships) as :func:`load` runs any graph there, else its checkpoint on
    PyTorch, or its FP32 graph on a backend that reads ``.onnx``."""
    if backend is None and on_cpu(device_name(device)):
        # PyTorch eager took 2.7x (an AVX2 EPYC: ONNX Runtime by rule) to 7x (a Zen 4: bf16
        # by rule) the time of the graph's path per 256 patches (benchmarks/results/cpu-*.md).
        graph = _fp32_graph(entry)
        if not options:
            # The caller named nothing: the fastest gated graph the model ships may run.
            pick = registered_graph(get_model(DEFAULT_MODEL) if entry is None else entry)
            describer = load(pick.graph, device="cpu", max_batch=max_batch)
            if pick.why:
                describer.choice = replace(
                    describer.choice, why=f"{pick.why}; there: {describer.choice.why}"
                )
            return describer
        # Options no graph backend takes (PyTorch's own) keep the checkpoint.
        if cpu_runners(graph, options):
            return load(graph, device="cpu", max_batch=max_batch, **options)
    if backend is None:
        backend = model_backend()
    chosen = get_backend(backend)
    if chosen.name == "torch":
        # The default model by None: the torch backend's own "no shipped model" check.
        weights = None if entry is None else entry.file("weights")
        return _open(chosen, weights, device, max_batch, options)
    if ".onnx" in chosen.suffixes:
        return _open(chosen, _fp32_graph(entry), device, max_batch, options)
    what = "the shipped model" if entry is None else f"model {entry.name!r}"
    raise InputError(
        f"backend {backend!r} needs an artifact: export {what} ({{export}}), build an engine "
        "of the graph ({build}), then pass its path",
        remedies={
            "export": Remedy(
                stage="onnx",
                function="hardnet_export.export.onnx.export_onnx",
                arguments=(DEFAULT_MODEL if entry is None else entry.name,),
                options={"out": "MODEL.onnx"},
            ),
            "build": Remedy(
                stage="trt",
                function="hardnet_export.export.tensorrt.build_engine",
                arguments=("MODEL.onnx",),
                options={"out": "MODEL.engine"},
            ),
        },
    )
