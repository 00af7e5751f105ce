"""Patch packing: a patch graph's narrow float convs rewritten to run several patches at once.

A CPU conv kernel works on channel blocks of 8 or 16 (AVX2, AVX-512): a conv with 4 or 8
output channels pads them to a block and wastes most of each vector, and the first convs of
the narrow widths also run at the full 32x32 side, so they take most of the time
(``hardnet-eighth`` on OpenVINO: conv0 and conv1, 4 channels, half of it). Packing puts
``G`` patches side by side in the channel axis instead: the batch ``(N, c, H, W)`` is read
as ``(N / G, G * c, H, W)`` (the same memory), and each conv's weights become ``G`` copies
of themselves on the block diagonal, so every patch still meets only its own weights. The
zeros off the diagonal add exact zeros: the descriptors are the graph's own, to the last
rounding of the backend's arithmetic, while the kernels see ``G * c`` channels.

Each packed conv gets ``G = max(1, channels // c_out)``; where ``G`` changes between convs,
and after the last packed conv, the activation is read back the other way (a ``Reshape``,
no copy in NCHW). Only the leading run of plain float convs (constant weights, no Q/DQ) is
packed: in an INT8 graph that is its float prefix, in an FP32 or FP16 graph every 3x3 conv
(the final conv covers the whole map and sees one patch at a time anyway). The batch must be
a multiple of the least common multiple of the ``G`` (:func:`PackedGraph.multiple`); the
describers pad it with zero patches and drop their descriptors, and run batches smaller than
that on the graph as written.

Needs the ``onnx`` package (``pip install onnx``); torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.artifacts.metadata import GraphMetadata
from hardnet_export.artifacts.models import LAYOUTS, conv_channels
from hardnet_export.errors import InputError, MissingDependencyError
from hardnet_export.host import installed
from hardnet_export.validate import check_int

#: The channel count ``hardnet-export tune`` packs narrow convs up to: one AVX-512 block of
#: f32. On a Zen 4 in OpenVINO bf16, ``hardnet-eighth`` packed to 32 channels took 26.1 ms
#: per 2000 patches against 18.1 to 16 (23.3 unpacked); to 8 (2 patches per row) as 16
#: (``docs/running.md``, Patch packing).
PACK_CHANNELS = 16
#: The rule table (no tuning measured) packs a graph whose first conv packs at least this many
#: patches per row: ``hardnet-eighth`` (4 channels, 4 patches) ran 1.36x faster packed on
#: OpenVINO in bf16 and 1.44x on ONNX Runtime on a Zen 4; ``hardnet-quarter`` (2 patches)
#: gained at most 4 % and lost in OpenVINO's f32, so only ``tune`` offers it there.
RULE_MIN_GROUP = 4
#: Most channels a pack may ask for (4096 patches' worth of a 1-channel conv is no kernel's
#: block size).
MAX_PACK_CHANNELS = 512


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError(
            "packing patches (pack_channels) rewrites the ONNX graph and needs the onnx "
            "package: pip install onnx"
        ) from exc
    return onnx


@dataclass(frozen=True)
class PackedGraph:
    """A packed graph and how it was packed.

    Attributes:
        model: the rewritten ``onnx.ModelProto`` (metadata and input/output unchanged).
        groups: patches per packed row of each packed conv, in order (``conv0`` first).
    """

    model: Any
    groups: tuple[int, ...]

    @property
    def multiple(self) -> int:
        """What the batch must be a multiple of."""
        return math.lcm(*self.groups) if self.groups else 1


def _initializer(graph: Any, name: str) -> Any | None:
    for tensor in graph.initializer:
        if tensor.name == name:
            return tensor
    return None


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _plain_conv(graph: Any, node: Any) -> bool:
    """A float conv with constant weights (and bias), not grouped: what packing can copy."""
    if node.op_type != "Conv" or _attribute(node, "group", 1) != 1:
        return False
    constants = [_initializer(graph, name) for name in node.input[1:3] if name]
    return all(tensor is not None for tensor in constants)


def _side(node: Any, side: int) -> int:
    """The output side of a square conv on a ``side`` x ``side`` input."""
    kernel = _attribute(node, "kernel_shape", [3, 3])[0]
    stride = _attribute(node, "strides", [1, 1])[0]
    pads = _attribute(node, "pads", [0, 0, 0, 0])
    return (side + pads[0] + pads[2] - kernel) // stride + 1


def pack_patch_graph(
    model: Any, channels: int = PACK_CHANNELS, *, source: str = "the graph"
) -> PackedGraph:
    """``model`` (a HardNet patch graph, ``onnx.ModelProto``) with its narrow float convs
    packed up to ``channels`` (see the module docstring). ``model`` is not changed.

    Raises:
        InputError: not a patch graph of this project's layout (a chain of convs on a
            (N, 1, 32, 32) input), a fixed batch, or ``channels`` out of range; the message
            names ``source``.
        MissingDependencyError: the onnx package is missing.
    """
    onnx = _import_onnx()
    from onnx import helper, numpy_helper

    channels = check_pack_channels(channels)
    if not channels:
        raise InputError("pack_patch_graph needs pack_channels of at least 2, got 0")
    packed = onnx.ModelProto()
    packed.CopyFrom(model)
    graph = packed.graph
    if len(graph.input) != 1:
        raise InputError(
            f"{source} has {len(graph.input)} inputs; packing needs a patch graph (one input)"
        )
    dims = graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4 or shape[1:] != [1, 32, 32]:
        raise InputError(f"{source}: packing needs a (N, 1, 32, 32) patch input, got {shape}")
    if shape[0] is not None:
        raise InputError(
            f"{source} has a fixed batch of {shape[0]}; packing reads the batch in groups "
            "of patches and needs a graph exported with a dynamic batch"
        )
    convs = [node for node in graph.node if node.op_type == "Conv"]
    plain: list[Any] = []
    for node in convs:
        if not _plain_conv(graph, node):
            break
        plain.append(node)
    # The last conv maps a whole patch to its descriptor: it always sees patches one by one.
    plain = [node for node in plain if node is not convs[-1]]
    weights = [numpy_helper.to_array(_initializer(graph, node.input[1])) for node in plain]
    groups = [max(1, channels // int(w.shape[0])) for w in weights]
    while groups and groups[-1] == 1:
        groups.pop()
    plain, weights = plain[: len(groups)], weights[: len(groups)]
    if not plain:
        return PackedGraph(packed, ())
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # The packed run's end: the Relu after its last conv (or the conv itself).
    last = plain[-1].output[0]
    follow = consumers.get(last, [])
    if len(follow) == 1 and follow[0].op_type == "Relu":
        last = follow[0].output[0]
    added: list[tuple[str, Any]] = []

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def reshape(tensor: str, rows_channels: int, side: int, tag: str) -> str:
        target = constant(f"pack_shape_{tag}", np.array([-1, rows_channels, side, side], np.int64))
        out = f"pack_{tag}"
        node = helper.make_node("Reshape", [tensor, target], [out], name=f"pack_reshape_{tag}")
        added.append((tensor, node))
        return out

    side, previous = 32, 1
    for index, (node, weight, group) in enumerate(zip(plain, weights, groups, strict=True)):
        c_out, c_in = int(weight.shape[0]), int(weight.shape[1])
        if group != previous:
            node.input[0] = reshape(node.input[0], group * c_in, side, f"in{index}")
        side = _side(node, side)
        block = np.zeros((group * c_out, group * c_in, *weight.shape[2:]), weight.dtype)
        for g in range(group):
            block[g * c_out : (g + 1) * c_out, g * c_in : (g + 1) * c_in] = weight
        node.input[1] = constant(f"pack{index}_{node.input[1]}", block)
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(_initializer(graph, node.input[2]))
            node.input[2] = constant(f"pack{index}_{node.input[2]}", np.tile(bias, group))
        previous = group
    c_last = int(weights[-1].shape[0])
    unpacked = reshape(last, c_last, side, "out")
    for node in consumers.get(last, []):
        for i, name in enumerate(node.input):
            if name == last:
                node.input[i] = unpacked
    _insert(graph, added)
    # The old value_info shapes no longer hold for the packed tensors; nothing needs them.
    del graph.value_info[:]
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(packed)
    return PackedGraph(packed, tuple(groups))


def _insert(graph: Any, added: list[tuple[str, Any]]) -> None:
    """Put each new node right after the node that makes its input tensor (first, for a
    graph input), keeping the node list topologically sorted."""
    nodes = list(graph.node)
    for tensor, node in added:
        made = [i for i, n in enumerate(nodes) if tensor in n.output]
        nodes.insert(made[0] + 1 if made else 0, node)
    del graph.node[:]
    graph.node.extend(nodes)


def _first_channels(metadata: GraphMetadata) -> int | None:
    """The first conv's output channels by the graph's recorded width and layout (None: a
    layout this version does not know)."""
    if metadata.layout is not None and metadata.layout not in LAYOUTS:
        return None
    return conv_channels(metadata.width or 1.0, metadata.layout)[0]


def packing_candidates(
    metadata: GraphMetadata, candidates: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``candidates`` (a backend's load-option sets for ``hardnet-export tune``), each also
    with ``pack_channels`` = :data:`PACK_CHANNELS` when the graph is a patch graph whose
    first conv is narrower than that and the onnx package is installed: the tuner times
    both and keeps the faster that passes the gate."""
    if metadata.kind != "patches" or not installed("onnx"):
        return candidates
    first = _first_channels(metadata)
    if first is None or first >= PACK_CHANNELS:
        return candidates
    return candidates + [{**options, "pack_channels": PACK_CHANNELS} for options in candidates]


def rule_packing(metadata: GraphMetadata) -> dict[str, Any]:
    """The packing the rule table adds for a graph (no tuning measured): ``pack_channels``
    = :data:`PACK_CHANNELS` for a patch graph whose first conv would pack at least
    :data:`RULE_MIN_GROUP` patches, where the onnx package is installed; else nothing."""
    if metadata.kind != "patches" or not installed("onnx"):
        return {}
    first = _first_channels(metadata)
    if first is None or PACK_CHANNELS // first < RULE_MIN_GROUP:
        return {}
    return {"pack_channels": PACK_CHANNELS}


def check_pack_channels(pack_channels: Any) -> int:
    """``pack_channels`` as an int: 0 (no packing) or 2 .. :data:`MAX_PACK_CHANNELS`.

    Raises:
        InputTypeError: not an integer.
        InputError: out of range.
    """
    value = check_int("pack_channels", pack_channels, low=0, high=MAX_PACK_CHANNELS)
    if value == 1:
        raise InputError("pack_channels must be 0 (no packing) or at least 2, got 1")
    return value


def packed_graph_file(path: Path, pack_channels: int) -> PackedGraph:
    """The ONNX patch graph at ``path`` packed up to ``pack_channels`` (see
    :func:`pack_patch_graph`); a backend compiles ``model.SerializeToString()``.

    Raises:
        InputError: not an ``.onnx`` file, unreadable, or not a packable patch graph; the
            message names ``path``.
        MissingDependencyError: the onnx package is missing.
    """
    onnx = _import_onnx()
    if path.suffix.lower() != ".onnx":
        raise InputError(
            f"{path}: pack_channels rewrites ONNX graphs; give the .onnx graph, not {path.suffix}"
        )
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError or its own errors for a bad file
        raise InputError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    return pack_patch_graph(model, pack_channels, source=str(path))
