"""The one table of exported variants: what each is, which tools build it, what it is called.

Export, calibration, the demo, the benchmark's default targets and the TensorRT builder all
iterate :data:`VARIANTS`. A new precision or INT8 flavour is one entry here plus the one
function its ``graph`` field names (``module:function``, imported only when used, taking the
FP32 graph and the export's options and returning the graph and its extra metadata).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hardnet_export.errors import InputError


@dataclass(frozen=True)
class Variant:
    """One exported form of a HardNet model.

    Attributes:
        name: ``fp32``, ``fp16``, ``int8-tensorrt``, ``int8-cpu``: the file's middle name.
        precision: what the graph computes in: ``fp32``, ``fp16`` or ``int8``.
        int8_target: the INT8 flavour (``tensorrt``, ``cpu``); None for float variants.
        graph: ``module:function`` turning the FP32 graph into this variant (None for FP32).
        tensorrt: TensorRT builds an engine from it.
        dla: a Jetson DLA core can run it (FP16 and INT8 only).
        demo_engine: the demo builds its engine (FP32 engines add little over FP16).
        summary: one line for tables and ``--help``.
    """

    name: str
    precision: str
    int8_target: str | None
    graph: str | None
    tensorrt: bool
    dla: bool
    demo_engine: bool
    summary: str

    def file_name(self, stem: str = "model", suffix: str = ".onnx") -> str:
        """``model.fp16.onnx``, ``model.int8-cpu.onnx``, ``model.fp16.engine``, ..."""
        return f"{stem}.{self.name}{suffix}"

    def graph_function(self) -> Callable[..., tuple[Any, dict[str, Any]]] | None:
        """The function that makes this variant's graph from the FP32 graph."""
        if self.graph is None:
            return None
        module, _, function = self.graph.partition(":")
        found: Callable[..., tuple[Any, dict[str, Any]]] = getattr(
            importlib.import_module(module), function
        )
        return found


VARIANTS: tuple[Variant, ...] = (
    Variant("fp32", "fp32", None, None, True, False, False, "float32, the reference"),
    Variant(
        "fp16",
        "fp16",
        None,
        "hardnet_export.export.fp16:fp16_variant",
        True,
        True,
        True,
        "conv stack in float16; normalisation and L2 norm in float32",
    ),
    Variant(
        "int8-tensorrt",
        "int8",
        "tensorrt",
        "hardnet_export.export.int8:int8_variant",
        True,
        True,
        True,
        "Q/DQ int8, symmetric activations: the graph TensorRT builds",
    ),
    Variant(
        "int8-cpu",
        "int8",
        "cpu",
        "hardnet_export.export.int8:int8_variant",
        False,
        False,
        False,
        "Q/DQ with uint8 activations: the fastest graph on ONNX Runtime CPU",
    ),
)
#: Every precision a variant computes in, in table order.
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(v.precision for v in VARIANTS))
#: Every INT8 flavour, in table order.
INT8_TARGETS: tuple[str, ...] = tuple(v.int8_target for v in VARIANTS if v.int8_target)


def get_variant(name: str) -> Variant:
    """The variant called ``name``.

    Raises:
        InputError: no such variant; the message lists them.
    """
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise InputError(f"unknown variant {name!r}; known: {', '.join(v.name for v in VARIANTS)}")


def variant_for(precision: str, int8_target: str | None = None) -> Variant:
    """The variant of ``precision`` (and, for INT8, flavour ``int8_target``; default the
    first INT8 flavour).

    Raises:
        InputError: an unknown precision or flavour.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    candidates = [v for v in VARIANTS if v.precision == precision]
    if int8_target is None:
        return candidates[0]
    for variant in candidates:
        if variant.int8_target == int8_target:
            return variant
    if precision != "int8":
        return candidates[0]
    raise InputError(f"int8 target must be one of {', '.join(INT8_TARGETS)}, got {int8_target!r}")
