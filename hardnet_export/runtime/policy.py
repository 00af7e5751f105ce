"""The one policy that picks how an artifact runs on this host: backend, options, chunk size.

What the caller names always wins: a ``backend`` is taken as given. On the CPU (``device``
``cpu``, or no device on a host without a CUDA device), every backend installed here that
reads the artifact is a candidate, and:

1. the choice ``hardnet-export tune`` measured for this artifact on this CPU with these
   libraries (:mod:`hardnet_export.artifacts.tuning`) is taken when there is one;
2. otherwise the records' rule table (:class:`~hardnet_export.artifacts.backends.CpuRule`):
   the first rule of another backend that holds for the graph's precision and this CPU's
   instruction sets, unless the export measured the graph failing its accuracy gate there
   (a gated rule, bf16 arithmetic, needs the graph to record that it passed);
3. otherwise the suffix's default backend.

After 2 and 3 the narrowest graphs' convs are packed where the backend takes
``pack_channels`` (:mod:`hardnet_export.runtime.packing`: the same descriptors, so no gate).
After 1 and 2, calls of little work (a few patches of a narrow graph) go to another backend
where one of its ``small_batches`` rules holds (a path computing the same descriptors, or
closer to the graph's, and faster there: no gate either; :func:`small_batch_limit`).

A registered model's name has one more choice to make first, which of its shipped graphs runs
(:func:`registered_graph`): its FP32 graph, or a graph of another variant it ships (an INT8
graph) where the tuning measured that graph faster here, or without tuning where the
variant's ``name_rules`` hold.

Options the caller gives (an ``inference_precision``, a thread count) keep only the
backends that take them and override the rule's. Off the CPU the suffix's default backend
runs the artifact. Loads never measure, so the first one is as quick as any. Nothing here
names a backend.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.backends import (
    Backend,
    CpuRule,
    backend_for,
    backends,
    get_backend,
    plain_table,
)
from hardnet_export.artifacts.metadata import GraphMetadata, read_metadata
from hardnet_export.artifacts.models import ShippedModel, models, multiply_adds
from hardnet_export.artifacts.tuning import Choice, read_choice
from hardnet_export.artifacts.variants import NameRule, get_variant
from hardnet_export.errors import HardnetError, InputError, MissingFileError


def failed_gate(metadata: GraphMetadata, backend: str) -> bool:
    """Whether the export measured this graph on ``backend`` and it failed the gate there."""
    gate = metadata.gate_on(backend)
    return gate is not None and not gate.passed


def passed(metadata: GraphMetadata, rule: CpuRule, backend: Backend) -> bool:
    """Whether ``rule`` may run the graph: an ungated rule always, a gated one only where the
    graph's export measured its gate and the graph passed (reaching the rule's own
    ``min_cosine`` where it has one)."""
    if not rule.gated:
        return True
    gate = metadata.gate_on(rule.gate_key(backend.name))
    if gate is None or not gate.passed:
        return False
    return rule.min_cosine is None or gate.min_cosine >= rule.min_cosine


def load_options(describer: type[Any]) -> set[str]:
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


def on_cpu(device: str | None) -> bool:
    """Whether a load with ``device`` runs on this host's CPU: asked for, or left to the
    runtime on a host without a CUDA device."""
    if device == "cpu":
        return True
    if device not in (None, "auto"):
        return False
    from hardnet_export._cuda import cuda_status

    return cuda_status()[0] == 0


def cpu_runners(path: Path, options: Mapping[str, Any] = {}) -> list[Backend]:
    """The installed backends that run ``path`` on the CPU and take every one of ``options``,
    in the records' order."""
    return [
        b
        for b in backends()
        if b.reads(path)
        and "cpu" in b.devices
        and b.available()
        and set(options) <= load_options(b.describer_class())
    ]


def choose(
    path: Path,
    *,
    device: str | None = None,
    backend: str | None = None,
    options: Mapping[str, Any] = {},
) -> Choice:
    """How ``runtime.load`` runs ``path``: the backend, its options and the chunk size.

    Raises:
        InputError: an unknown ``backend``, or no backend reads the suffix.
        MissingFileError: no file at ``path`` whose suffix no backend reads.
    """
    if backend is not None:
        name = get_backend(backend).name
        return Choice(name, dict(options), source="explicit", why="the backend was given")
    default = backend_for(path)
    if not path.is_file() or not on_cpu(device):
        return Choice(default.name, dict(options), source="default", why="the suffix's default")
    runners = cpu_runners(path, options)
    if not runners:
        # The default backend's open says what is missing (its library, an option it lacks).
        return Choice(default.name, dict(options), source="default", why="no CPU backend here")
    names = [b.name for b in runners]
    try:
        metadata = read_metadata(path)
    except (HardnetError, ImportError):
        metadata = None
    if not options:
        try:
            tuned = read_choice(path)
        except OSError:
            tuned = None  # an unreadable artifact: its backend's open says why
        if tuned is not None and tuned.backend in names:
            return tuned if metadata is None else with_small_batches(tuned, metadata, runners)
    if metadata is None:
        return Choice(names[0], dict(options), source="default", why="unreadable metadata")
    choice = with_packing(rule_choice(metadata, runners, options), metadata, path)
    return with_small_batches(choice, metadata, runners)


def with_small_batches(
    choice: Choice,
    metadata: GraphMetadata,
    runners: list[Backend],
    flags: frozenset[str] | None = None,
) -> Choice:
    """``choice`` with the path of its smallest calls: the first ``small_batches`` rule of
    another backend among ``runners`` that holds for the graph on a CPU with ``flags`` (this
    one's by default). Only a choice the policy made (tuned or by rule) gets one: what the
    caller named runs every call."""
    from hardnet_export.host import cpu_flags

    if choice.source not in ("tuned", "rule") or choice.small_batches is not None:
        return choice
    flags = cpu_flags() if flags is None else flags
    for candidate in runners:
        if candidate.name == choice.backend or failed_gate(metadata, candidate.name):
            continue
        for rule in candidate.small_batches:
            if not rule.applies(metadata.precision, flags, metadata.flavour, metadata.made_for):
                continue
            limit = small_batch_limit(rule, metadata)
            if limit != 0:
                small = Choice(
                    candidate.name,
                    dict(rule.options),
                    max_batch=limit,
                    source=choice.source,
                    why=rule.why,
                )
                return replace(choice, small_batches=small)
    return choice


def small_batch_limit(rule: CpuRule, metadata: GraphMetadata) -> int | None:
    """The most patches per call a ``small_batches`` rule takes for a graph: its
    ``max_batch``, cut to its multiply-add budget where it has one (0: none, as for a graph
    that records no width or a layout this version does not know)."""
    if rule.max_multiply_adds is None:
        return rule.max_batch
    per_patch = graph_multiply_adds(metadata)
    if per_patch is None:
        return 0
    fit = rule.max_multiply_adds // per_patch
    return fit if rule.max_batch is None else min(fit, rule.max_batch)


def graph_multiply_adds(metadata: GraphMetadata) -> int | None:
    """A graph's multiply-adds per patch from the width and layout it records; None for a
    graph that records no width or a layout this version does not know."""
    if metadata.width is None:
        return None
    try:
        return multiply_adds(metadata.width, metadata.layout)
    except InputError:
        return None


def with_packing(choice: Choice, metadata: GraphMetadata, path: Path) -> Choice:
    """``choice`` with the rule table's patch packing added where it applies: an ``.onnx``
    graph narrow enough (:func:`~hardnet_export.runtime.packing.rule_packing`), a backend
    that takes ``pack_channels``, and no packing named by the caller. Packing leaves the
    descriptors as they are, so it needs no gate."""
    from hardnet_export.runtime.packing import rule_packing

    packing = rule_packing(metadata)
    backend = get_backend(choice.backend)
    if (
        not packing
        or path.suffix.lower() != ".onnx"
        or set(packing) & set(choice.options)
        or not set(packing) <= load_options(backend.describer_class())
    ):
        return choice
    why = f"{choice.why}; its narrow convs packed {packing['pack_channels']} channels wide"
    return replace(choice, options={**choice.options, **packing}, why=why)


def rule_choice(
    metadata: GraphMetadata,
    runners: list[Backend],
    options: Mapping[str, Any] = {},
    flags: frozenset[str] | None = None,
) -> Choice:
    """The rule table's choice for a graph among ``runners`` on a CPU with ``flags`` (this
    one's by default): another backend's first rule that holds, else the first runner (the
    suffix's default where it is installed)."""
    from hardnet_export.host import cpu_flags

    flags = cpu_flags() if flags is None else flags
    source = "explicit" if options else "rule"
    for candidate in runners[1:] + runners[:1]:
        if failed_gate(metadata, candidate.name):
            continue
        for rule in candidate.cpu_rules:
            applies = rule.applies(metadata.precision, flags, metadata.flavour, metadata.made_for)
            if applies and passed(metadata, rule, candidate):
                merged = {**rule.options, **options}
                return Choice(
                    candidate.name, merged, max_batch=rule.max_batch, source=source, why=rule.why
                )
    why = "no rule prefers another backend for this graph on this CPU"
    return Choice(runners[0].name, dict(options), source=source, why=why)


@dataclass(frozen=True)
class GraphPick:
    """Which of a registered model's graphs its name runs on the CPU, and why (empty: its
    FP32 graph, the one every name runs unless something measured says otherwise)."""

    graph: Path
    source: str = "default"
    why: str = ""


def registered_graph(
    entry: ShippedModel, flags: frozenset[str] | None = None, cache_dir: Path | None = None
) -> GraphPick:
    """The graph the name of ``entry`` runs on this CPU (or one with ``flags``).

    The candidates are its FP32 graph and the shipped graphs of variants that have
    ``name_rules`` (:class:`~hardnet_export.artifacts.variants.NameRule`). Where
    ``hardnet-export tune NAME`` measured every candidate here (the tuning cache holds a
    choice for each), the fastest at batch 256 runs; otherwise the first candidate whose
    variant's rule holds for its metadata and this CPU; otherwise the FP32 graph. A shipped
    graph missing from this installation is no candidate.
    """
    fp32 = entry.file("onnx")
    others = name_candidates(entry)
    if not others:
        return GraphPick(fp32)
    try:
        tuned = {path: read_choice(path, cache_dir) for path in (fp32, *(p for p, _ in others))}
    except OSError:
        tuned = {}
    measured = fastest_graph(tuned) if tuned else None
    if measured is not None:
        return measured
    from hardnet_export.host import cpu_flags

    flags = cpu_flags() if flags is None else flags
    for path, rules in others:
        try:
            metadata = read_metadata(path)
        except HardnetError:
            continue
        per_patch = graph_multiply_adds(metadata)
        for rule in rules:
            if rule.holds(metadata, flags, per_patch):
                return GraphPick(path, "rule", f"{entry.name} runs {path.name}: {rule.why}")
    return GraphPick(fp32)


def name_candidates(entry: ShippedModel) -> list[tuple[Path, tuple[NameRule, ...]]]:
    """The graphs besides its FP32 one that the name of ``entry`` may run, with their
    variants' rules: the shipped graphs of variants that have ``name_rules``, where this
    installation has the file."""
    found = []
    for name in entry.graphs:
        rules = get_variant(name).name_rules
        if not rules:
            continue
        try:
            found.append((entry.graph(name), rules))
        except MissingFileError:
            continue
    return found


def format_registered_graphs(
    flags: frozenset[str] | None = None, cache_dir: Path | None = None
) -> str:
    """Which graph each registered model's name runs on this CPU (or one with ``flags``), as
    plain text: what ``runtime.load(NAME, device="cpu")`` opens, measured or by rule."""
    rows = [("name", "runs on this CPU", "by")]
    for entry in models():
        try:
            pick = registered_graph(entry, flags, cache_dir)
        except HardnetError as exc:  # its FP32 graph is not in this installation
            rows.append((entry.name, f"- ({exc})", "-"))
            continue
        rows.append((entry.name, pick.graph.name, pick.source))
    head = (
        "A name on the CPU (runtime.load(NAME) with nothing named) runs: by tuned = the fastest "
        "graph tune measured here, rule = the variant's name rule, default = the FP32 graph"
    )
    return f"{head}\n{plain_table(rows)}"


def fastest_graph(choices: Mapping[Path, Choice | None]) -> GraphPick | None:
    """The graph whose tuned choice ran the most patches per second at batch 256, or None
    unless every one of ``choices`` was measured."""
    speeds = {path: c.patches_per_s for path, c in choices.items() if c and c.patches_per_s}
    if not speeds or len(speeds) < len(choices):
        return None
    best = max(speeds, key=lambda path: speeds[path])
    rest = ", ".join(f"{p.name} {speeds[p]:,.0f}" for p in speeds if p != best)
    why = f"measured here: {best.name} ran {speeds[best]:,.0f} patches/s at batch 256"
    return GraphPick(best, "tuned", f"{why} ({rest})" if rest else why)


def choose_backend(path: Path, *, device: str | None = None, backend: str | None = None) -> Backend:
    """The backend :func:`choose` runs ``path`` with."""
    return get_backend(choose(path, device=device, backend=backend).backend)
