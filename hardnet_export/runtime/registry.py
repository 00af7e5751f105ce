"""The one backend registry and :func:`load`: the artifact's suffix picks the backend.

A new backend is one module in ``hardnet_export/runtime/`` with a :class:`Describer`
subclass that has an ``open(path, *, device, max_batch, **options)`` classmethod, plus one
entry in :data:`BACKENDS` (its suffixes and the load option that sets its CPU threads, which
the benchmark uses). Backend modules import their library lazily, so a missing library is
only an error when that backend is asked for.

A graph kind (:data:`~hardnet_export.artifacts.metadata.GRAPH_KINDS`: ``patches``, ``image``)
is one entry per backend in :attr:`Backend.kinds`: the backend's ``open`` (its ``patches``
class's) loads the artifact, reads its kind from the metadata or sidecar, and builds the class
:func:`describer_for` names; a backend without an entry for a kind refuses it in one sentence.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.models import ShippedModel, as_path, lookup
from hardnet_export.errors import InputError, InputTypeError, MissingFileError
from hardnet_export.host import installed
from hardnet_export.runtime.base import Describer
from hardnet_export.shipped import SHIPPED_ONNX


@dataclass(frozen=True)
class Backend:
    """A registered backend: its name, the ``module:Class`` of its describer per graph kind,
    the artifact suffixes it reads, and the ``load`` option that sets its CPU threads (None:
    no CPU). ``unsupported`` says, per graph kind it has no entry for, why (for the error)."""

    name: str
    kinds: Mapping[str, str] = field(hash=False)
    suffixes: tuple[str, ...]
    threads_option: str | None = None
    unsupported: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def target(self) -> str:
        """The ``module:Class`` of the patch describer, whose ``open`` loads every artifact of
        this backend (and hands image graphs to the ``image`` entry)."""
        return self.kinds["patches"]

    def describer_class(self, kind: str = "patches") -> type[Describer]:
        """The describer class of graph kind ``kind`` (the entry point ``load`` calls for
        ``patches``).

        Raises:
            InputError: this backend has no entry for ``kind``.
        """
        target = self.kinds.get(kind)
        if target is None:
            raise InputError(self._refusal(kind, "an artifact"))
        module, _, cls = target.partition(":")
        found: type[Describer] = getattr(importlib.import_module(module), cls)
        return found

    def _refusal(self, kind: str, artifact: str) -> str:
        others = [b.name for b in BACKENDS if kind in b.kinds]
        why = self.unsupported.get(kind)
        return (
            f"{artifact} is a graph of kind {kind!r}, which the {self.name} backend does not "
            f"open{f' ({why})' if why else ''}; backends that open {kind} graphs: "
            f"{', '.join(others) if others else 'none'}"
        )


_RUNTIME = "hardnet_export.runtime"
BACKENDS: tuple[Backend, ...] = (
    Backend(
        "torch",
        {"patches": f"{_RUNTIME}.torch_backend:TorchDescriber"},
        (".pt", ".pth"),
        threads_option="num_threads",
        unsupported={"image": "a checkpoint holds the patch network only"},
    ),
    Backend(
        "onnxruntime",
        {
            "patches": f"{_RUNTIME}.onnxruntime_backend:OnnxRuntimeDescriber",
            "image": f"{_RUNTIME}.onnxruntime_backend:OnnxRuntimeImageDescriber",
        },
        (".onnx",),
        threads_option="intra_op_num_threads",
    ),
    Backend(
        "openvino",
        {
            "patches": f"{_RUNTIME}.openvino_backend:OpenVINODescriber",
            "image": f"{_RUNTIME}.openvino_backend:OpenVINOImageDescriber",
        },
        (".xml", ".onnx"),
        threads_option="num_threads",
    ),
    Backend(
        "tensorrt",
        {
            "patches": f"{_RUNTIME}.tensorrt_backend:TensorRTDescriber",
            "image": f"{_RUNTIME}.tensorrt_image:TensorRTImageDescriber",
        },
        (".engine", ".plan"),
    ),
)


def describer_for(backend: str, kind: str, artifact: str | Path) -> type[Describer]:
    """The class backend ``backend`` builds for ``artifact``, a graph of kind ``kind``; each
    backend's ``open`` calls this once it has read the artifact's kind.

    Raises:
        InputError: no such backend, or it has no entry for ``kind``: the message names the
            kind, the artifact and the backends that open that kind.
    """
    chosen = get_backend(backend)
    if kind not in chosen.kinds:
        raise InputError(chosen._refusal(kind, str(artifact)))
    return chosen.describer_class(kind)


def get_backend(name: str) -> Backend:
    """The registered backend called ``name``.

    Raises:
        ValueError: no such backend.
    """
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise InputError(f"unknown backend {name!r}; known: {[b.name for b in BACKENDS]}")


def backend_for(path: str | Path) -> Backend:
    """The backend that reads ``path``, by suffix.

    Raises:
        ValueError: no backend reads this suffix.
        FileNotFoundError: no file at ``path``, whose suffix no backend reads either (a
            missing file is the first thing to tell).
    """
    suffix = Path(path).suffix.lower()
    for backend in BACKENDS:
        if suffix in backend.suffixes:
            return backend
    if not Path(path).exists():
        raise MissingFileError(f"model not found: {path}")
    known = sorted({s for b in BACKENDS for s in b.suffixes})
    raise InputError(f"no backend reads {path}: expected one of {known}")


#: Precisions that run faster on OpenVINO than on ONNX Runtime on a CPU, where both are
#: installed (measured with ``hardnet-export bench`` on an AVX2 CPU, README speed table:
#: ONNX Runtime has no fast int8 path for the TensorRT flavour's symmetric activations on
#: AVX2, OpenVINO's kernels run it about 2x faster and the cpu flavour no slower; FP32 and
#: FP16 were no faster on OpenVINO there).
OPENVINO_FIRST_PRECISIONS = ("int8",)


def cpu_backend_for(path: Path) -> Backend:
    """The backend ``load`` picks for an ``.onnx`` graph on the CPU: OpenVINO for the
    precisions in :data:`OPENVINO_FIRST_PRECISIONS` when it is installed (unless the export
    measured the graph failing the INT8 gate on OpenVINO), else ONNX Runtime (and ONNX
    Runtime whenever it is the only one)."""
    onnxruntime, openvino = get_backend("onnxruntime"), get_backend("openvino")
    if not installed("openvino"):
        return onnxruntime
    if not installed("onnxruntime"):
        return openvino
    from hardnet_export.runtime.openvino_backend import failed_openvino_gate, read_graph_metadata

    metadata = read_graph_metadata(path)
    if metadata.precision not in OPENVINO_FIRST_PRECISIONS or failed_openvino_gate(metadata):
        return onnxruntime
    return openvino


def load(
    path: str | Path | None = None,
    *,
    backend: str | None = None,
    device: str | None = None,
    max_batch: int | None = None,
    **options: Any,
) -> Describer:
    """Load a descriptor model; the artifact decides the backend.

    ``.pt``/``.pth`` -> PyTorch, ``.onnx`` -> ONNX Runtime, ``.xml`` (OpenVINO IR) ->
    OpenVINO, ``.engine``/``.plan`` -> TensorRT (its sidecar is checked against this TensorRT
    and GPU first). With ``device="cpu"`` and no ``backend``, an ``.onnx`` graph goes to the
    faster CPU backend installed (:func:`cpu_backend_for`: OpenVINO for INT8 graphs, ONNX
    Runtime for FP32 and FP16). A registered model's name (:func:`hardnet_export.models`)
    loads that model and ``path=None`` the default one (``hardnet``): its checkpoint with
    PyTorch (on CUDA when available) where torch is installed, else, or with a backend that
    reads ``.onnx`` (``onnxruntime``, ``openvino``), its FP32 ONNX graph, which ships beside
    it.

    Args:
        path: the artifact, a registered model's name, or None for the default model.
        backend: force a backend by name (it must read the artifact's suffix).
        device: ``cpu``, ``cuda``, ``cuda:N`` (and ``tensorrt`` for ONNX Runtime's TensorRT
            provider); None picks the best available.
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
    chosen = backend_for(path) if backend is None else get_backend(backend)
    if backend is None and device == "cpu" and chosen.name == "onnxruntime" and path.is_file():
        chosen = cpu_backend_for(path)
    if path.suffix.lower() not in chosen.suffixes:
        raise InputError(
            f"backend {chosen.name!r} reads {list(chosen.suffixes)} files, got {path.name}"
        )
    if not path.is_file():
        raise MissingFileError(f"model not found: {path}")
    return _open(chosen, path, device, max_batch, options)


def _open(
    chosen: Backend,
    path: Path | None,
    device: str | None,
    max_batch: int | None,
    options: dict[str, Any],
) -> Describer:
    """``open`` of the backend's describer, once its options are known to be its own."""
    describer = chosen.describer_class()
    known = load_options(describer)
    unknown = sorted(set(options) - known)
    if unknown:
        # Python's "unexpected keyword argument" would name neither the backend nor what
        # it takes, and would come after the artifact's checks.
        takes = ", ".join(sorted(known)) or "none"
        raise InputTypeError(
            f"unknown load() option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"for the {chosen.name} backend; its options: {takes}"
        )
    return describer.open(path, device=device, max_batch=max_batch, **options)


def load_options(describer: type[Describer]) -> set[str]:
    """The keyword options ``runtime.load`` passes on to ``describer.open`` (``device`` and
    ``max_batch`` aside): its own, and where it forwards ``**options`` to the constructor,
    the constructor's."""
    own = {"path", "device", "max_batch"}
    known: set[str] = set()
    for function in (describer.open, describer.__init__):
        parameters = inspect.signature(function).parameters.values()
        known |= {
            p.name
            for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in own
        }
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return known


def _load_registered(
    entry: ShippedModel | None,
    backend: str | None,
    device: str | None,
    max_batch: int | None,
    options: dict[str, Any],
) -> Describer:
    """A registered model (None: the default) in its checkpoint form on PyTorch, or its FP32
    graph on a backend that reads ``.onnx``."""
    if backend is None:
        backend = "torch" if installed("torch") else "onnxruntime"
    chosen = get_backend(backend)
    if chosen.name == "torch":
        # The default model by None: the torch backend's own "no shipped model" check.
        weights = None if entry is None else entry.file("weights")
        return _open(chosen, weights, device, max_batch, options)
    if ".onnx" in chosen.suffixes:
        if entry is None:
            if not SHIPPED_ONNX.is_file():
                raise MissingFileError(
                    f"no shipped model in this installation ({SHIPPED_ONNX} is missing)"
                )
            graph = SHIPPED_ONNX
        else:
            graph = entry.file("onnx")
        return _open(chosen, graph, device, max_batch, options)
    what = "the shipped model" if entry is None else f"model {entry.name!r}"
    raise InputError(
        f"backend {backend!r} needs an artifact: build one from {what} with "
        "'hardnet-export onnx' and 'hardnet-export trt', then pass its path"
    )
