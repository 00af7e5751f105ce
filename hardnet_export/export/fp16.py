"""Float16 compute in an ONNX graph: the whole conv stack (FP16 export) or chosen nodes (the
float layers of a mixed-precision INT8 graph).

Graph surgery on the FP32 export (BatchNorm already folded into the convs): the chosen nodes
run in float16, with a ``Cast`` on every tensor that enters or leaves them. The per-patch
standardisation stays float32 because raw 0..255 input squared overflows float16
(255**2 * 1024 > 65504), and the L2 norm stays float32 for the same reason. The result is
strongly typed, so TensorRT 10 (STRONGLY_TYPED) and 11 build it as it is, and ONNX Runtime
runs it on a CPU.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export.errors import InputError

if TYPE_CHECKING:
    import onnx

    from hardnet_export.artifacts.variants import Variant

FP16_MAX = float(np.finfo(np.float16).max)
# Ops that keep their meaning when all their float inputs turn float16.
_FP16_SAFE_OPS = frozenset({"Conv", "Relu"})


def fp16_variant(
    fp32: onnx.ModelProto, variant: Variant, options: None = None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The ``fp16`` variant's graph (the entry point the variants table names)."""
    return convert_to_fp16(fp32), {}


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of an FP32 HardNet graph whose conv stack computes in float16.

    Raises:
        ValueError: the graph has no Conv, an op between the convs that is not known to be
            float16-safe, or a weight outside the float16 range.
    """
    nodes = list(model.graph.node)
    conv_positions = [i for i, node in enumerate(nodes) if node.op_type == "Conv"]
    if not conv_positions:
        raise InputError("FP16 conversion expects a graph with Conv nodes, found none")
    stack = nodes[conv_positions[0] : conv_positions[-1] + 1]
    graph_outputs = {out.name for out in model.graph.output}
    if graph_outputs & {out for node in stack for out in node.output}:
        raise InputError("FP16 conversion expects float32 ops (the L2 norm) after the last Conv")
    return nodes_to_fp16(model, [node.name for node in stack])


def nodes_to_fp16(model: onnx.ModelProto, names: Collection[str]) -> onnx.ModelProto:
    """A copy of ``model`` in which the nodes called ``names`` compute in float16.

    Their float32 weights become float16 (a weight shared with a float32 node is copied);
    each float32 tensor entering them gets one ``Cast`` to float16, and each tensor leaving
    them (to a float32 node or a graph output) one ``Cast`` back to float32, so the graph
    stays strongly typed. Neighbouring float16 nodes pass float16 tensors directly.

    Raises:
        ValueError: an unknown node name, an op not known to be float16-safe, or a weight
            outside the float16 range.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    nodes = list(graph.node)
    chosen = set(names)
    missing = sorted(chosen - {node.name for node in nodes})
    if missing:
        raise InputError(f"no node called {missing} in the graph")
    half = [node for node in nodes if node.name in chosen]
    unsafe = sorted({node.op_type for node in half} - _FP16_SAFE_OPS)
    if unsafe:
        raise InputError(f"float16 conversion does not know how to run {unsafe} in float16")

    initializers = {init.name: init for init in graph.initializer}
    used_by_float32 = {name for node in nodes if node.name not in chosen for name in node.input}
    weights: dict[str, str] = {}
    for name in sorted({n for node in half for n in node.input if n in initializers}):
        array = numpy_helper.to_array(initializers[name])
        if array.dtype != np.float32:
            continue
        if np.abs(array).max(initial=0.0) > FP16_MAX:
            raise InputError(f"weight {name} exceeds the float16 range ({FP16_MAX})")
        new_name = f"{name}_fp16" if name in used_by_float32 else name
        converted = numpy_helper.from_array(array.astype(np.float16), new_name)
        if new_name == name:
            initializers[name].CopyFrom(converted)
        else:
            graph.initializer.append(converted)
        weights[name] = new_name

    produced_half = {out for node in half for out in node.output}
    graph_outputs = {out.name for out in graph.output}
    if produced_half & graph_outputs:
        outputs = sorted(produced_half & graph_outputs)
        raise InputError(f"float16 nodes may not produce the graph outputs {outputs}")
    entering = sorted(
        {n for node in half for n in node.input if n and n not in weights}
        - produced_half
        - initializers.keys()
    )
    float32_inputs = {n for node in nodes if node.name not in chosen for n in node.input}
    leaving = sorted(produced_half & float32_inputs)
    to_half = {name: f"{name}_fp16" for name in entering}
    to_float = {name: f"{name}_fp32" for name in leaving}
    for node in nodes:
        rename = {**to_half, **weights} if node.name in chosen else to_float
        node.input[:] = [rename.get(name, name) for name in node.input]

    cast_in = {
        new: helper.make_node("Cast", [name], [new], to=TensorProto.FLOAT16, name=f"{new}_cast")
        for name, new in to_half.items()
    }
    cast_out = {
        name: helper.make_node("Cast", [name], [new], to=TensorProto.FLOAT, name=f"{new}_cast")
        for name, new in to_float.items()
    }
    # Keep topological order: a Cast to float16 right before its first float16 consumer, a
    # Cast to float32 right after its producer.
    ordered: list[onnx.NodeProto] = []
    for node in nodes:
        ordered.extend(cast_in.pop(name) for name in node.input if name in cast_in)
        ordered.append(node)
        ordered.extend(cast_out.pop(out) for out in node.output if out in cast_out)
    del graph.node[:]
    graph.node.extend(ordered)
    # The exporter's intermediate types are stale now; shape inference recomputes them.
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(copy, strict_mode=True)
