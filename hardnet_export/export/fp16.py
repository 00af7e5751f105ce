"""FP16 graph: the conv stack in float16, normalisation and the final L2 norm in float32.

Graph surgery on the FP32 export (BatchNorm already folded into the convs): every node from
the first to the last ``Conv`` runs in float16, with one ``Cast`` in front of the stack and one
behind it. The per-patch standardisation stays float32 because raw 0..255 input squared
overflows float16 (255**2 * 1024 > 65504), and the L2 norm stays float32 for the same reason.
The result is strongly typed, so TensorRT 10 (STRONGLY_TYPED) and 11 build it as it is, and
ONNX Runtime runs it on a CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

FP16_MAX = float(np.finfo(np.float16).max)
# Ops that keep their meaning when all their float inputs turn float16.
_FP16_SAFE_OPS = frozenset({"Conv", "Relu"})


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of an FP32 HardNet graph whose conv stack computes in float16.

    Raises:
        ValueError: the graph has no Conv, an op between the convs that is not known to be
            float16-safe, or a weight outside the float16 range.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    graph = model_copy.graph
    nodes = list(graph.node)
    conv_positions = [i for i, node in enumerate(nodes) if node.op_type == "Conv"]
    if not conv_positions:
        raise ValueError("FP16 conversion expects a graph with Conv nodes, found none")
    first, last = conv_positions[0], conv_positions[-1]
    stack = nodes[first : last + 1]
    unsafe = sorted({n.op_type for n in stack} - _FP16_SAFE_OPS)
    if unsafe:
        raise ValueError(f"FP16 conversion does not know how to run {unsafe} in float16")

    initializers = {init.name: init for init in graph.initializer}
    produced_inside = {out for node in stack for out in node.output}
    consumed_inside = {name for node in stack for name in node.input if name}
    for name in consumed_inside & initializers.keys():
        weights = numpy_helper.to_array(initializers[name])
        if weights.dtype != np.float32:
            continue
        if np.abs(weights).max(initial=0.0) > FP16_MAX:
            raise ValueError(f"weight {name} exceeds the float16 range ({FP16_MAX})")
        initializers[name].CopyFrom(numpy_helper.from_array(weights.astype(np.float16), name))

    # Casts at the boundaries: float32 -> float16 into the stack, float16 -> float32 out of it.
    inputs_from_outside = sorted(consumed_inside - produced_inside - initializers.keys())
    rename_in = {name: f"{name}_fp16" for name in inputs_from_outside}
    for node in stack:
        node.input[:] = [rename_in.get(name, name) for name in node.input]
    after = nodes[last + 1 :]
    if produced_inside & {out.name for out in graph.output}:
        raise ValueError("FP16 conversion expects float32 ops (the L2 norm) after the last Conv")
    leaving = sorted(name for name in produced_inside if any(name in n.input for n in after))
    rename_out = {name: f"{name}_fp32" for name in leaving}
    for node in after:
        node.input[:] = [rename_out.get(name, name) for name in node.input]
    cast_in = [
        helper.make_node("Cast", [name], [new], to=TensorProto.FLOAT16, name=f"cast_fp16_{i}")
        for i, (name, new) in enumerate(rename_in.items())
    ]
    cast_out = [
        helper.make_node("Cast", [name], [new], to=TensorProto.FLOAT, name=f"cast_fp32_{i}")
        for i, (name, new) in enumerate(rename_out.items())
    ]
    del graph.node[:]
    graph.node.extend([*nodes[:first], *cast_in, *stack, *cast_out, *after])
    # The exporter's intermediate types are stale now; shape inference recomputes them.
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model_copy, strict_mode=True)
