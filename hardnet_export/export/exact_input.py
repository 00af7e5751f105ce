"""The exact-input form of the patch graph: the first conv reads the grey levels themselves.

The graph standardises each patch (zero mean, unit standard deviation) before its first
conv. An INT8 graph then rounds the standardised patch to one uint8 scale shared by every
patch, and on a patch of faint texture (a few grey levels of variation) that rounding is a
tenth of a grey level: the worst held-out patches of the all-int8 graphs are such patches
(``hardnet-quarter``'s all-int8 QAT graph: worst cosine 0.962 to FP32 on one of seed 2's
held-out patches, where its gate's sample gave 0.990).

Standardisation is affine per patch, so it commutes with the first conv:

    conv(z) = (conv(x - 128) - (mean - 128) * conv(1)) / (std + eps) + bias

for ``z = (x - mean) / (std + eps)``, where ``conv(1)`` is the sum of the weights each output
position sees inside the patch (the zero padding adds nothing to either side). ``x - 128``
lies in [-128, 127], which uint8 holds at scale 1 and zero point 128: the first conv's input
is exact, and so is its int32 accumulation; the affine map runs in float on its output,
before the Relu whose uint8 range is the next conv's input. In float it is the same function
as the standard graph, to rounding. On a constant patch the two terms cancel only in exact
arithmetic (the conv adds in its own order, the correction is one product), and dividing
their rounding difference by ``eps`` would make noise of it: the difference is set to 0
where the standard deviation is 0, which gives such a patch the standard graph's descriptor.

The price is speed: OpenVINO runs the per-patch map on the first conv's output as separate
element-wise layers with layout reorders around them (the standard form's front is a few
small layers on the 32 x 32 input). Measured on a 2-core Zen 4 (AVX-512 VNNI), OpenVINO,
batch 256: ``hardnet-quarter`` 0.57x and ``hardnet-fast`` 0.56x the standard all-int8
graph's patches per second. Keeping conv0 float in a standard-form QAT graph
(``keep_float=("conv0",)``) removes the same rounding at 0.96x there (bf16 float parts), which
is what ``hardnet-quarter`` ships; this form is for runtimes that must run every conv in int8.

Only the ``cpu`` flavour takes this form: TensorRT's symmetric int8 cannot hold 256 levels
at scale 1. Quantisation-aware training trains it (:mod:`hardnet_export.train.qat`,
``exact_input``); :class:`~hardnet_export.export.int8.Quantizer` rewrites a QAT record's
FP32 graph with :func:`exact_input_graph` before quantising, and completes the Q/DQ graph
with :func:`drop_accumulator_qdq` and :func:`set_weight_sums` after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hardnet_export.artifacts.quantisation import EXACT_INPUT_OFFSET
from hardnet_export.errors import InputError
from hardnet_export.shipped import STD_EPSILON

if TYPE_CHECKING:
    import onnx

#: Names of the tensors this form adds.
CENTRED = "exact_input.centred"
WEIGHT_SUMS = "exact_input.weight_sums"
OFFSET = "exact_input.offset"
BIAS = "exact_input.bias"
EPSILON = "exact_input.epsilon"
#: The tensor the affine map writes: the first Relu's input, quantised with its range.
STANDARDISED_OUTPUT = "exact_input.conv0_standardised"


def _producers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in proto.graph.node for out in node.output}


def exact_input_graph(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """``fp32`` with its first conv moved in front of the standardisation (a copy).

    The standard graph ends its front in ``Div(Sub(x, mean), std + eps)`` feeding ``conv0``;
    the copy feeds ``conv0`` ``x - 128`` without its bias and applies the map above to its
    output. The weight sums are those of the float weights here; :func:`set_weight_sums`
    replaces them with those of the quantised weights.

    Raises:
        InputError: the graph's front is not the standardisation this project exports.
    """
    import onnx
    from onnx import helper, numpy_helper

    from hardnet_export.export.common import topological_sort

    proto = onnx.ModelProto()
    proto.CopyFrom(fp32)
    graph = proto.graph
    producers = _producers(proto)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    if not convs or convs[0].name != "conv0":
        raise InputError("the graph has no conv named conv0: not a HardNet patch graph")
    conv0 = convs[0]
    divide = producers.get(conv0.input[0])
    subtract = producers.get(divide.input[0]) if divide is not None else None
    if divide is None or divide.op_type != "Div" or subtract is None or subtract.op_type != "Sub":
        raise InputError(
            "conv0's input is not the per-patch standardisation (x - mean) / (std + eps): "
            "the exact-input form needs the patch graph this project exports"
        )
    pixels, mean = subtract.input
    spread = divide.input[1]
    inits = {t.name: t for t in graph.initializer}
    if len(conv0.input) < 3 or conv0.input[2] not in inits or conv0.input[1] not in inits:
        raise InputError("conv0 has no constant weight and bias: not an exported HardNet graph")
    weight = numpy_helper.to_array(inits[conv0.input[1]]).astype(np.float32)
    bias = numpy_helper.to_array(inits[conv0.input[2]]).astype(np.float32)
    conv_output = conv0.output[0]
    consumers = [n for n in graph.node if conv_output in n.input]
    if len(consumers) != 1 or consumers[0].op_type != "Relu":
        raise InputError("conv0's output does not go to one Relu: not a HardNet patch graph")
    side = input_side(fp32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(EXACT_INPUT_OFFSET, np.float32), OFFSET),
            numpy_helper.from_array(np.array(STD_EPSILON, np.float32), EPSILON),
            numpy_helper.from_array(weight_sums(weight, conv0, side), WEIGHT_SUMS),
            numpy_helper.from_array(bias.reshape(1, -1, 1, 1), BIAS),
        ]
    )
    del conv0.input[2:]
    conv0.input[0] = CENTRED
    consumers[0].input[0] = STANDARDISED_OUTPUT
    graph.node.extend(
        [
            helper.make_node("Sub", [pixels, OFFSET], [CENTRED], name="exact_input.centre"),
            helper.make_node(
                "Sub", [mean, OFFSET], ["exact_input.mean_centred"], name="exact_input.mean"
            ),
            helper.make_node(
                "Mul",
                ["exact_input.mean_centred", WEIGHT_SUMS],
                ["exact_input.correction"],
                name="exact_input.correction",
            ),
            helper.make_node(
                "Sub",
                [conv_output, "exact_input.correction"],
                ["exact_input.corrected"],
                name="exact_input.corrected",
            ),
            helper.make_node(
                "Greater", [spread, EPSILON], ["exact_input.textured"], name="exact_input.textured"
            ),
            helper.make_node(
                "Cast",
                ["exact_input.textured"],
                ["exact_input.mask"],
                name="exact_input.mask",
                to=onnx.TensorProto.FLOAT,
            ),
            helper.make_node(
                "Mul",
                ["exact_input.corrected", "exact_input.mask"],
                ["exact_input.masked"],
                name="exact_input.masked",
            ),
            helper.make_node(
                "Div",
                ["exact_input.masked", spread],
                ["exact_input.scaled"],
                name="exact_input.scaled",
            ),
            helper.make_node(
                "Add", ["exact_input.scaled", BIAS], [STANDARDISED_OUTPUT], name="exact_input.bias"
            ),
        ]
    )
    # The standardised patch is no longer read.
    dead = {divide.name, subtract.name}
    kept = [node for node in graph.node if node.name not in dead]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    topological_sort(proto)
    return proto


def input_side(proto: onnx.ModelProto) -> tuple[int, int]:
    """The patch graph's (H, W) (its input is (batch, 1, H, W))."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        raise InputError("the patch graph's input is not (batch, 1, H, W) with fixed H and W")
    return int(dims[2].dim_value), int(dims[3].dim_value)


def _conv_attributes(conv: onnx.NodeProto) -> tuple[int, int]:
    """conv0's (stride, padding), one value each for both axes, as this project exports."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    strides = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    dilations = list(attrs.get("dilations", [1, 1]))
    if len(set(strides)) != 1 or len(set(pads)) != 1 or dilations != [1, 1]:
        raise InputError(
            f"conv0 has strides {strides}, pads {pads}, dilations {dilations}: expected one "
            "stride and one padding for both axes, no dilation"
        )
    if attrs.get("group", 1) != 1:
        raise InputError("conv0 is a grouped conv: not a HardNet patch graph")
    return int(strides[0]), int(pads[0])


def weight_sums(weight: np.ndarray, conv: onnx.NodeProto, side: tuple[int, int]) -> np.ndarray:
    """``conv(1)``: each output position's sum of the weights that fall inside the patch,
    computed in float64 and stored in float32.

    Shape:
        - weight: (C, 1, k, k).
        - Output: (1, C, H', W').
    """
    stride, pad = _conv_attributes(conv)
    height, width = side
    ones = np.pad(np.ones((height, width)), pad)
    kernel = weight[:, 0].astype(np.float64)
    k = kernel.shape[-1]
    rows = (height + 2 * pad - k) // stride + 1
    cols = (width + 2 * pad - k) // stride + 1
    windows = np.lib.stride_tricks.sliding_window_view(ones, (k, k))[::stride, ::stride]
    sums = np.einsum("ijab,cab->cij", windows[:rows, :cols], kernel)
    return sums[None].astype(np.float32)


def set_weight_sums(model: onnx.ModelProto, side: tuple[int, int]) -> None:
    """Recompute the weight sums of an exact-input Q/DQ graph from conv0's dequantised int8
    weights, the weights the graph's conv0 computes with (in place).

    Raises:
        InputError: ``model`` is not in the exact-input form.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    if WEIGHT_SUMS not in inits:
        raise InputError("the graph is not in the exact-input form (no weight sums)")
    producers = _producers(model)
    conv0 = next(n for n in model.graph.node if n.op_type == "Conv" and n.name == "conv0")
    dq = producers.get(conv0.input[1])
    if dq is None or dq.op_type != "DequantizeLinear":
        weight = numpy_helper.to_array(inits[conv0.input[1]]).astype(np.float32)
    else:
        q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        zero = (
            numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64)
            if len(dq.input) > 2 and dq.input[2]
            else 0.0
        )
        # Per output channel (axis 0), as the quantiser writes conv weights.
        shape = (-1, 1, 1, 1)
        weight = ((q - np.reshape(zero, shape)) * np.reshape(scale, shape)).astype(np.float32)
    sums = numpy_helper.from_array(weight_sums(weight, conv0, side), WEIGHT_SUMS)
    inits[WEIGHT_SUMS].CopyFrom(sums)


def drop_accumulator_qdq(model: onnx.ModelProto) -> None:
    """Remove the Q/DQ pair ONNX Runtime's quantiser puts on conv0's output in the
    exact-input form (it quantises every conv output it is given a range for, and insists
    on one): the float standardisation reads the accumulation itself (in place).

    Raises:
        InputError: ``model`` has no conv0.
    """
    graph = model.graph
    conv0 = next((n for n in graph.node if n.op_type == "Conv" and n.name == "conv0"), None)
    if conv0 is None:
        raise InputError("the graph has no conv named conv0: not a HardNet patch graph")
    accumulated = conv0.output[0]
    quantise = [
        n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == accumulated
    ]
    for q in quantise:
        dequantise = [
            n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]
        ]
        for dq in dequantise:
            for node in graph.node:
                for i, name in enumerate(node.input):
                    if name == dq.output[0]:
                        node.input[i] = accumulated
            graph.node.remove(dq)
        graph.node.remove(q)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
