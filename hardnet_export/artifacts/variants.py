"""The one table of exported variants: what each is, which tools build it, what it is called.

Export, calibration, the demo, the benchmark's default targets and the TensorRT builder all
iterate :data:`VARIANTS`. A new precision or flavour is one :class:`Variant` record added with
:func:`register_variant` (the built-in ones are listed here) plus the function its ``graph``
field names (``module:function``, imported only when used, taking the FP32 graph, the variant
and its options and returning the graph and its extra metadata) and, when it takes options,
the options type its ``options`` field names (``module:Class``). The records name both by
string because the floor may not import the export stage that holds them.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hardnet_export.errors import InputError, InputTypeError
from hardnet_export.host import VNNI_FLAGS, int8_isa

if TYPE_CHECKING:
    from hardnet_export.artifacts.metadata import GraphMetadata

#: A variant's graph function: (FP32 graph, variant, options) -> (graph, extra metadata as
#: :class:`~hardnet_export.artifacts.metadata.GraphMetadata` fields).
GraphFunction = Callable[[Any, "Variant", Any], tuple[Any, dict[str, Any]]]


def _resolve(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class NameRule:
    """When a registered model's name, loaded on the CPU with nothing named, runs the model's
    shipped graph of a variant rather than its FP32 graph (no tuning measured both here; see
    :func:`hardnet_export.runtime.policy.registered_graph`): on a CPU with any of the flags
    in ``needs``, for a graph that keeps no conv float when ``all_int8``, and whose every
    recorded accuracy gate passed with a worst cosine of at least ``min_cosine``. ``why``
    gives the measurement behind it."""

    needs: tuple[str, ...]
    all_int8: bool = False
    #: Only graphs of at least this many multiply-adds per patch (0: any).
    min_multiply_adds: int = 0
    min_cosine: float = 0.99
    why: str = ""

    def holds(
        self, metadata: GraphMetadata, flags: frozenset[str], multiply_adds: int | None = None
    ) -> bool:
        """Whether the rule picks the graph with ``metadata`` (``multiply_adds`` per patch,
        None: unknown) on a CPU with ``flags``: never one whose weights that CPU's int8
        kernels would clip (:func:`~hardnet_export.host.int8_kernels_fit`)."""
        quantisation = metadata.quantisation
        if quantisation is None or not any(f in flags for f in self.needs):
            return False
        if not metadata.int8_kernels_fit(int8_isa(flags)):
            return False
        if self.all_int8 and quantisation.settings.get("float_layers"):
            return False
        if self.min_multiply_adds and (multiply_adds or 0) < self.min_multiply_adds:
            return False
        gates = list(quantisation.gates.values())
        return bool(gates) and all(g.passed and g.min_cosine >= self.min_cosine for g in gates)


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One exported form of a HardNet model.

    Attributes:
        name: ``fp32``, ``fp16``, ``int8-tensorrt``, ``int8-cpu``: the file's middle name.
        precision: what the graph computes in: ``fp32``, ``fp16`` or ``int8``.
        summary: one line for tables and ``--help``.
        flavour: which of its precision's forms it is, where a precision has several
            (``tensorrt``, ``cpu`` for INT8); None for a precision with one form.
        graph: ``module:function`` turning the FP32 graph into this variant (None for FP32).
        options: ``module:Class``, the options its graph function takes (``Int8Options``);
            None for a variant without options. An options type with a ``force`` field has an
            accuracy gate that ``force`` overrides (:meth:`default_options`).
        tensorrt: TensorRT builds an engine from it.
        dla: a Jetson DLA core can run it (FP16 and INT8 only).
        demo_engine: the demo builds its engine (FP32 engines add little over FP16).
        image: it can be exported as an image graph (``onnx --with-extraction``).
        name_rules: when a registered model that ships a graph of this variant runs it, by
            its name on the CPU, instead of its FP32 graph (:class:`NameRule`, first match).
    """

    name: str
    precision: str
    summary: str
    flavour: str | None = None
    graph: str | None = None
    options: str | None = None
    tensorrt: bool = False
    dla: bool = False
    demo_engine: bool = False
    image: bool = False
    name_rules: tuple[NameRule, ...] = ()

    def file_name(self, stem: str = "model", suffix: str = ".onnx") -> str:
        """``model.fp16.onnx``, ``model.int8-cpu.onnx``, ``model.fp16.engine``, ..."""
        return f"{stem}.{self.name}{suffix}"

    def graph_function(self) -> GraphFunction | None:
        """The function that makes this variant's graph from the FP32 graph."""
        if self.graph is None:
            return None
        found: GraphFunction = _resolve(self.graph)
        return found

    def options_type(self) -> type | None:
        """The options type its graph function takes; None for a variant without options."""
        if self.options is None:
            return None
        found: type = _resolve(self.options)
        return found

    def default_options(self, *, force: bool = False) -> Any:
        """Its options with their defaults (None for a variant without options).

        Args:
            force: write the graph even when its accuracy gate fails (for a variant whose
                options have a ``force`` field; the others have no gate to override).
        """
        kind = self.options_type()
        if kind is None:
            return None
        gated = force and any(f.name == "force" for f in dataclasses.fields(kind))
        return kind(force=True) if gated else kind()

    def check_options(self, options: Any) -> Any:
        """``options`` if they are this variant's, or its default options when None.

        Raises:
            InputError: options given for a variant that takes none.
            InputTypeError: options of another type than the variant's.
        """
        kind = self.options_type()
        if options is None:
            return None if kind is None else kind()
        if kind is None:
            raise InputError(f"options given for the {self.name} variant, which takes none")
        if not isinstance(options, kind):
            raise InputTypeError(
                f"the {self.name} variant takes {kind.__name__}, got {type(options).__name__}"
            )
        return options


#: The variants this project ships, in table order.
BUILTIN: tuple[Variant, ...] = (
    Variant(
        name="fp32",
        precision="fp32",
        summary="float32, the reference",
        tensorrt=True,
        image=True,
    ),
    Variant(
        name="fp16",
        precision="fp16",
        summary="conv stack in float16; normalisation and L2 norm in float32",
        graph="hardnet_export.export.fp16:fp16_variant",
        tensorrt=True,
        dla=True,
        demo_engine=True,
        image=True,
    ),
    Variant(
        name="int8-tensorrt",
        precision="int8",
        flavour="tensorrt",
        summary="Q/DQ int8, symmetric activations: the graph TensorRT builds",
        graph="hardnet_export.export.int8:int8_variant",
        options="hardnet_export.export.int8:Int8Options",
        tensorrt=True,
        dla=True,
        demo_engine=True,
    ),
    Variant(
        name="int8-cpu",
        precision="int8",
        flavour="cpu",
        summary="Q/DQ with uint8 activations: the fastest graph on ONNX Runtime CPU",
        graph="hardnet_export.export.int8:int8_variant",
        options="hardnet_export.export.int8:Int8Options",
        name_rules=(
            NameRule(
                needs=VNNI_FLAGS,
                all_int8=True,
                why=(
                    "its shipped INT8 graph keeps every conv in int8 and this CPU's int8 dot "
                    "products accumulate in 32 bits: per 256 patches 1.29x (hardnet-fast) and "
                    "1.37x (hardnet-half) the FP32 graph's speed in OpenVINO's bf16 on an AMX "
                    "Xeon, 1.23x and 1.82x on a Zen 4; a narrow model's graph with a float conv "
                    "was not faster (hardnet-quarter 0.99x on the Xeon), and on CPUs without "
                    "VNNI 8-bit weights can saturate"
                ),
            ),
            NameRule(
                needs=(*VNNI_FLAGS, "avx2"),
                min_multiply_adds=20_000_000,
                why=(
                    "a wide model's INT8 graph (conv0 float) with weights this CPU's int8 "
                    "kernels compute without clipping: hardnet's (39.1 M multiply-adds per "
                    "patch; 7-bit weights) ran 1.70x per 256 patches and 1.63x per frame the "
                    "FP32 graph's bf16 on an AMX Xeon, 2.03x and 1.93x on a Zen 4 (8-bit "
                    "weights, the same speed on the Xeon); on a Zen 3 (AVX2, no "
                    "bf16) the full model's INT8 graphs with 7-bit weights ran 1.41-1.79x "
                    "ONNX Runtime's FP32 per 256 patches (int8-cpu-2core-amd-epyc-avx2.md); "
                    "hardnet-quarter's (2.7 M) 0.99x"
                ),
            ),
        ),
    ),
)
#: Every variant, in table order: the built-in ones, then those :func:`register_variant`
#: added (this list is the live table: iterate it, or :func:`variants` for a snapshot).
VARIANTS: list[Variant] = list(BUILTIN)
_lock = threading.Lock()


def variants() -> tuple[Variant, ...]:
    """Every variant now, in table order."""
    with _lock:
        return tuple(VARIANTS)


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` to the table (after the built-in ones): export, the metadata's
    precision check (so the runtime and ``check``), the demo and the benchmark's targets
    then know it.

    Raises:
        InputError: a variant of that name, or of that precision and flavour, exists.
    """
    with _lock:
        for known in VARIANTS:
            if known.name == variant.name:
                raise InputError(f"a variant called {variant.name!r} exists")
            if (known.precision, known.flavour) == (variant.precision, variant.flavour):
                raise InputError(
                    f"the {known.name} variant is already {variant.precision}"
                    + (f" ({variant.flavour})" if variant.flavour else "")
                )
        VARIANTS.append(variant)
    return variant


def unregister_variant(name: str) -> None:
    """Remove the variant called ``name`` (built-in ones stay).

    Raises:
        InputError: ``name`` is a built-in variant.
    """
    if any(v.name == name for v in BUILTIN):
        raise InputError(f"{name!r} is a built-in variant; it cannot be removed")
    with _lock:
        VARIANTS[:] = [v for v in VARIANTS if v.name != name]


def precisions() -> tuple[str, ...]:
    """Every precision a variant computes in, in table order."""
    return tuple(dict.fromkeys(v.precision for v in variants()))


def flavours(precision: str = "int8") -> tuple[str, ...]:
    """The flavours of ``precision`` (``tensorrt``, ``cpu`` for INT8), in table order."""
    return tuple(v.flavour for v in variants() if v.precision == precision and v.flavour)


def all_flavours() -> tuple[str, ...]:
    """Every flavour of every precision, in table order."""
    return tuple(dict.fromkeys(v.flavour for v in variants() if v.flavour))


def get_variant(name: str) -> Variant:
    """The variant called ``name``.

    Raises:
        InputError: no such variant; the message lists them.
    """
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise InputError(f"unknown variant {name!r}; known: {', '.join(v.name for v in VARIANTS)}")


def variant_for(precision: str, flavour: str | None = None) -> Variant:
    """The variant of ``precision`` and ``flavour`` (default: its first; ignored for a
    precision with one form).

    Raises:
        InputError: an unknown precision or flavour.
    """
    known = precisions()
    if precision not in known:
        raise InputError(f"precision must be one of {', '.join(known)}, got {precision!r}")
    candidates = [v for v in VARIANTS if v.precision == precision]
    if flavour is None:
        return candidates[0]
    for variant in candidates:
        if variant.flavour == flavour:
            return variant
    its = flavours(precision)
    if not its:
        return candidates[0]
    raise InputError(f"{precision} target must be one of {', '.join(its)}, got {flavour!r}")
