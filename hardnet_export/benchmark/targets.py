"""What to benchmark: given artifacts, or every variant of the shipped model that runs here.

The default set is exported once per weights file into a cache folder (the export takes
seconds to minutes; the benchmark reuses the files on the next run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hardnet_export
from hardnet_export import __version__
from hardnet_export.artifacts.backends import Backend, backend_for, backends, resolve
from hardnet_export.artifacts.variants import VARIANTS, Variant, get_variant
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.host import default_cache_dir, installed

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Target:
    """One thing to time: an artifact (``None``: the shipped model) with one backend on one
    device, and the load options that make it what it is (``cuda_graphs``, ...).

    ``role`` is ``ours`` (``runtime.load(artifact, device=...)`` with no backend and no
    options: what a user gets by default), ``peer`` (built as a user would without this
    project's runtime, see :mod:`hardnet_export.benchmark.peers`) or empty (one variant on
    one backend). ``loader`` (``module:function``, ``(target, max_batch, threads) ->
    Describer``) builds a target the runtime's ``load`` does not; ``chunks``: chunk sizes
    to try per batch, the fastest used (a peer "at its best batch").
    """

    label: str
    artifact: Path | None
    backend: str | None
    device: str
    options: Mapping[str, Any] = field(default_factory=dict)
    is_baseline: bool = False
    #: Load once per batch size with ``max_batch`` = that size (a CUDA graph or a TensorRT
    #: profile replays one fixed shape).
    per_batch: bool = False
    role: str = ""
    loader: str | None = None
    chunks: tuple[int, ...] = ()


def check_device(device: str) -> str:
    """``cpu`` or ``cuda``; raise ValueError for anything else, or for ``cuda`` without a GPU."""
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda":
        from hardnet_export._cuda import cuda_status

        count, why = cuda_status()
        if count == 0:
            raise InputError(f"device 'cuda' was asked for but {why}")
    return device


def artifact_targets(paths: Sequence[str | Path], device: str) -> list[Target]:
    """One target per given artifact (a file, or a registered model's name: its checkpoint
    where torch is installed, else its FP32 graph), backend chosen by the runtime from the
    file type."""
    from hardnet_export.artifacts.models import resolve_model

    targets = []
    for raw in paths:
        path = resolve_model(raw, "auto")
        if not path.is_file():
            raise MissingFileError(f"artifact not found: {path}")
        targets.append(Target(path.name, path, None, device))
    return targets


def baseline_target(device: str, weights: Path | None = None) -> Target:
    """PyTorch eager FP32 of ``weights`` (the shipped model by default): the 1x reference."""
    return Target(f"torch fp32 eager ({device})", weights, "torch", device, {}, is_baseline=True)


def shipped_weights() -> Path:
    """The shipped checkpoint; FileNotFoundError when this installation has none."""
    from hardnet_export.shipped import SHIPPED_WEIGHTS, require_shipped

    return require_shipped(SHIPPED_WEIGHTS, "pass artifacts to benchmark")


def exporter_fingerprint() -> str:
    """A hash of this version and the code exports depend on (patch geometry, artifacts,
    calibration, export): a cached export is reused only by the code that made it (a changed
    quantiser must not be timed with an old graph)."""
    import hashlib

    root = Path(hardnet_export.__file__).parent
    digest = hashlib.sha256(__version__.encode())
    sources = [root / "geometry.py"]
    for package in ("artifacts", "calibration", "export"):
        sources += (root / package).glob("*.py")
    for path in sorted(sources):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def exported_onnx(
    weights: Path | None, variant: Variant, cache_dir: Path, *, with_extraction: bool = False
) -> Path:
    """The ``variant`` export of ``weights`` (its image graph with ``with_extraction``), made
    once and cached by the weights' hash and :func:`exporter_fingerprint`."""
    from hardnet_export._io import sha256_file

    source = weights or shipped_weights()
    key = f"{sha256_file(source)[:16]}-{exporter_fingerprint()[:12]}"
    folder = Path(cache_dir) / "bench" / key
    out = folder / variant.file_name("hardnet.image" if with_extraction else "hardnet")
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    if with_extraction:
        from hardnet_export.export.image_graph import export_image_graph

        return export_image_graph(source, out, variant=variant)
    from hardnet_export.export.onnx import export_onnx

    # The benchmark shows each graph's accuracy beside its speed, so a graph that misses its
    # export gate is still timed (the failed gate stays in its metadata).
    options = variant.default_options(force=True)
    return export_onnx(source, out, variant=variant, options=options)


def built_engine(onnx_path: Path, max_batch: int, cache_dir: Path) -> Path:
    """A TensorRT engine for ``onnx_path`` with the batch profile 1..``max_batch``, built
    once beside it in the cache (the builder reuses a matching engine and timing cache)."""
    from hardnet_export.export.tensorrt import build_engine

    out = onnx_path.with_name(f"{onnx_path.stem}.b{max_batch}.engine")
    timing_cache = Path(cache_dir) / "bench" / "tensorrt.timing-cache"
    built = build_engine(
        onnx_path,
        out,
        min_batch=1,
        opt_batch=min(256, max_batch),
        max_batch=max_batch,
        timing_cache=timing_cache,
    )
    return built.engine


def cpu_backends() -> list[str]:
    """The CPU backends for ``.onnx`` graphs installed here, in the records' order (the
    suffix's default, ONNX Runtime, first)."""
    return [
        b.name for b in backends() if ".onnx" in b.suffixes and "cpu" in b.devices and b.available()
    ]


@dataclass(frozen=True)
class BenchContext:
    """What a backend's benchmark hook may use: where exports are cached, the largest batch
    and whether this CPU computes bf16 natively."""

    cache_dir: Path
    max_batch: int
    weights: Path
    bf16: bool = False

    def graph(self, variant: Variant) -> Path:
        """``variant``'s export of the weights, made once and cached."""
        return exported_onnx(self.weights, variant, self.cache_dir)


def cpu_graph_targets(
    backend: Backend, variant: Variant, device: str, context: BenchContext
) -> list[Target]:
    """A backend that runs ``.onnx`` graphs: every variant's graph, on the CPU."""
    if device != "cpu":
        return []
    return [Target(f"{backend.name} {variant.name}", context.graph(variant), backend.name, device)]


def openvino_targets(
    backend: Backend, variant: Variant, device: str, context: BenchContext
) -> list[Target]:
    """OpenVINO: every variant's graph, and the FP32 graph in bf16 inference where the CPU
    computes bf16 natively."""
    targets = cpu_graph_targets(backend, variant, device, context)
    if targets and context.bf16 and variant.name == "fp32":
        options = {"inference_precision": "bf16"}
        label = f"{backend.name} fp32 (bf16)"
        targets.append(Target(label, targets[0].artifact, backend.name, device, options))
    return targets


def engine_targets(
    backend: Backend, variant: Variant, device: str, context: BenchContext
) -> list[Target]:
    """TensorRT: an engine of every variant TensorRT builds, batch profile 1..max_batch."""
    from hardnet_export._cuda import tensorrt_status

    if device != "cuda" or not variant.tensorrt or tensorrt_status()[0] is None:
        return []
    engine = built_engine(context.graph(variant), context.max_batch, context.cache_dir)
    return [Target(f"{backend.name} {variant.name}", engine, backend.name, device)]


def variant_targets(
    variant: Variant,
    device: str,
    context: BenchContext,
    names: Sequence[str] | None = None,
) -> list[Target]:
    """``variant`` on every installed backend (or those in ``names``) whose record has a
    benchmark hook, in the records' order."""
    targets: list[Target] = []
    for backend in backends():
        if backend.bench is None or not backend.available() or device not in backend.devices:
            continue
        if names is not None and backend.name not in names:
            continue
        targets += resolve(backend.bench)(backend, variant, device, context)
    return targets


def peer_targets(device: str, context: BenchContext) -> list[Target]:
    """One target per installed peer (:data:`hardnet_export.benchmark.peers.PEERS`), CPU only:
    the goal and the peers are per CPU kind."""
    from hardnet_export.benchmark.peers import peers

    if device != "cpu":
        return []
    found = []
    for peer in peers():
        source = context.weights if peer.source == "weights" else context.graph(get_variant("fp32"))
        found.append(
            Target(
                peer.label, source, None, device, role="peer", loader=peer.load, chunks=peer.chunks
            )
        )
    return found


#: The label of ``runtime.load()`` with no path: the default model by its name.
DEFAULT_MODEL_LABEL = "ours: runtime.load() (the default model's name)"


def ours_targets(device: str, context: BenchContext) -> list[Target]:
    """``runtime.load(graph, device="cpu")``, no backend, no options, on the export of each
    of :data:`hardnet_export.benchmark.peers.OURS_VARIANTS`; for the shipped weights also
    ``runtime.load()`` itself, which runs the graph the default model's name picks on this
    CPU (its FP32 graph, or the INT8 graph that ships beside it:
    :func:`~hardnet_export.runtime.policy.registered_graph`)."""
    from hardnet_export.benchmark.peers import OURS_VARIANTS
    from hardnet_export.shipped import SHIPPED_WEIGHTS

    if device != "cpu":
        return []
    found = [
        Target(f"ours: {name} (runtime.load default)", context.graph(get_variant(name)), None,
               device, role="ours")
        for name in OURS_VARIANTS
    ]  # fmt: skip
    if SHIPPED_WEIGHTS.is_file() and context.weights.resolve() == SHIPPED_WEIGHTS.resolve():
        found.append(Target(DEFAULT_MODEL_LABEL, None, None, device, role="ours"))
    return found


def default_targets(
    device: str,
    cache_dir: Path | None = None,
    weights: Path | None = None,
    max_batch: int = 1024,
    notes: list[str] | None = None,
    peers: bool = True,
) -> list[Target]:
    """Every variant of the model that runs on ``device`` here, baseline first.

    CPU: PyTorch eager FP32, then every variant of the table on every installed backend
    whose record has a benchmark hook (ONNX Runtime, OpenVINO, with the FP32 graph also in
    OpenVINO's bf16 inference on CPUs with native bf16: AVX512-BF16, AMX), then ours
    (``runtime.load`` by default on the FP32 and INT8 CPU graphs) and the installed peers
    (:mod:`hardnet_export.benchmark.peers`) unless ``peers`` is False. Without torch
    (the core install) nothing can be exported: the shipped FP32 graph on every installed
    CPU backend, with no baseline (a line in ``notes`` says so). CUDA: PyTorch FP32, PyTorch
    FP16 replaying a CUDA graph per batch size, and a TensorRT engine of every variant
    TensorRT builds, with the batch profile 1..``max_batch``, where TensorRT is installed.
    """
    from hardnet_export.shipped import SHIPPED_ONNX, require_shipped

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not installed("torch"):
        if weights is not None or device != "cpu":
            raise InputError(
                "without torch only the shipped FP32 graph can be benchmarked by default, on "
                "the CPU; pass artifacts to benchmark, or install hardnet-export[train]"
            )
        require_shipped(SHIPPED_ONNX)
        if notes is not None:
            notes.append(
                "torch is not installed: only the shipped FP32 graph, no PyTorch baseline and "
                "no other variants (they are exported with torch)"
            )
        return [Target(f"{b} fp32", SHIPPED_ONNX, b, device) for b in cpu_backends()]
    from hardnet_export.artifacts.models import resolve_model

    weights = resolve_model(weights, "weights") if weights is not None else shipped_weights()
    targets = [baseline_target(device, weights)]
    if device == "cuda":
        targets.append(
            Target(
                "torch fp16 cuda-graph (cuda)",
                weights,
                "torch",
                device,
                {"fp16": True, "cuda_graph": True},
                per_batch=True,
            )
        )
    context = BenchContext(cache, max_batch, weights, bf16=device == "cpu" and _has_bf16())
    for variant in VARIANTS:
        targets += variant_targets(variant, device, context)
    if peers:
        targets += ours_targets(device, context) + peer_targets(device, context)
    return targets


def _has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (OpenVINO's bf16 inference is then a target)."""
    if not installed("openvino"):
        return False
    from hardnet_export.runtime.openvino_backend import has_bf16

    return has_bf16()


def image_graph_targets(
    device: str, cache_dir: Path | None = None, weights: Path | None = None
) -> list[Target]:
    """The per-frame benchmark's image graphs (``onnx --with-extraction``): FP32 and FP16 on
    ONNX Runtime on the CPU (where torch can export them); none on CUDA yet, and none
    without torch.
    """

    # The default backend of .onnx graphs (ONNX Runtime) runs the image graphs.
    runner = backend_for("graph.onnx")
    usable = device in runner.devices and "image" in runner.kinds and runner.available()
    if device != "cpu" or not installed("torch") or not usable:
        return []
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = weights or shipped_weights()
    targets = []
    for name in ("fp32", "fp16"):
        graph = exported_onnx(source, get_variant(name), cache, with_extraction=True)
        label = f"{runner.name} {name} image graph"
        targets.append(Target(label, graph, runner.name, device))
    return targets
