"""A toy precision: the whole of what a new variant needs besides its one record.

``toy-fp16`` is the FP16 graph under a precision of its own, made by a graph function that
takes an options type of its own (with a ``force`` field, so the benchmark's and the demo's
"write it even if its gate fails" reaches it without naming it): a stand-in for a precision
this project does not have, written only against the public records and the export's FP16
conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hardnet_export.artifacts.variants import Variant
from hardnet_export.errors import InputError


@dataclass(frozen=True)
class ToyOptions:
    """How to make the toy graph.

    Args:
        keep_fp32: leave the graph in FP32 (the FP16 conversion skipped).
        force: accepted for the common "force" convention; the toy has no gate.
    """

    keep_fp32: bool = False
    force: bool = False


def toy_graph(fp32: Any, variant: Variant, options: ToyOptions) -> tuple[Any, dict[str, Any]]:
    """The toy variant's graph from the FP32 graph (no extra metadata)."""
    from hardnet_export.export.fp16 import convert_to_fp16

    if not isinstance(options, ToyOptions):
        raise InputError(f"the {variant.name} variant takes ToyOptions")
    return (fp32 if options.keep_fp32 else convert_to_fp16(fp32)), {}


RECORD = Variant(
    name="toy-fp16",
    precision="toy",
    summary="a toy precision: the FP16 graph under its own name",
    graph=f"{__name__}:toy_graph",
    options=f"{__name__}:ToyOptions",
)
