"""What the patch graph and the image graph exports share: the weights they start from, the
opset, torch's exporter and its clean-up, layer names, the checks and the metadata of the file
they write (:mod:`~hardnet_export.export.onnx`, :mod:`~hardnet_export.export.image_graph`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardnet_export import __version__
from hardnet_export._io import atomic_path, sha256_file
from hardnet_export.artifacts.metadata import PRODUCER, GraphMetadata
from hardnet_export.artifacts.models import (
    BASE_CHANNELS,
    DEFAULT_MODEL,
    lookup,
    registered_name,
    resolve_model,
)
from hardnet_export.errors import InputError, InputTypeError

if TYPE_CHECKING:
    import onnx

    from hardnet_export.artifacts.variants import Variant
    from hardnet_export.model import HardNet

OUTPUT_NAME = "descriptors"
MIN_OPSET = 18
#: The names :func:`name_layers` gives the convs, in order: the six 3x3 convs and the 8x8 one.
LAYER_NAMES = tuple(f"conv{i}" for i in range(len(BASE_CHANNELS) + 1))


def max_opset() -> int:
    """The newest opset the installed onnx knows (torch's exporter is checked after export)."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> None:
    """Raise InputError unless ``opset`` is one the exporter writes (18 to :func:`max_opset`)."""
    from hardnet_export.validate import check_int

    check_int("opset", opset)
    newest = max_opset()
    if not MIN_OPSET <= opset <= newest:
        raise InputError(
            f"opset must be between {MIN_OPSET} and {newest} (the newest the installed onnx "
            f"knows), got {opset}"
        )


def resolve_weights(weights: str | Path | HardNet | None) -> tuple[HardNet, str, dict[str, Any]]:
    """The model in eval mode, the sha256 of its weights and their provenance.

    For a file the hash is the file's; for an in-memory module it is the hash of its
    state_dict tensors (names, dtypes, shapes and bytes in key order).
    """
    from torch import nn

    from hardnet_export.model import SHIPPED_WEIGHTS, HardNet, load_model, read_checkpoint

    if isinstance(weights, nn.Module):
        if not isinstance(weights, HardNet):
            raise InputTypeError(f"weights must be a HardNet module, got {type(weights).__name__}")
        model = copy.deepcopy(weights).cpu().eval()
        return model, state_dict_sha256(model), {"source": "in-memory HardNet module"}
    if weights is not None and not isinstance(weights, (str, Path)):
        raise InputTypeError(
            f"weights must be a checkpoint path, a HardNet or None, got {type(weights).__name__}"
        )
    # load_model(None) gives the clear "no shipped model in this installation" error.
    model = load_model(None if weights is None else weights)
    path = SHIPPED_WEIGHTS if weights is None else resolve_model(weights, "weights")
    checkpoint = read_checkpoint(path)
    provenance = {"file": path.name, "format": checkpoint.format, **checkpoint.meta}
    return model, sha256_file(path), provenance


def weights_model_name(weights: str | Path | HardNet | None) -> str | None:
    """The registered model ``weights`` are (by name, or the path of its checkpoint); None
    for other weights and in-memory modules."""

    if weights is None:
        return DEFAULT_MODEL
    if not isinstance(weights, (str, Path)):
        return None
    entry = lookup(weights)
    return entry.name if entry is not None else registered_name(weights)


def state_dict_sha256(model: HardNet) -> str:
    """Content hash of a module's weights, independent of how they were saved."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    # The exporter logs one warning per missing torchvision op; none of them matter here.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def fold_batchnorm(model: HardNet) -> HardNet:
    """A copy of ``model`` (eval mode) with every BatchNorm folded into the conv before it.

    Folding in PyTorch rather than by the exporter's optimiser: that optimiser's rewrite rules
    treat ``x + 1e-10`` as ``x + 0`` (constants within 1e-8 of zero) and drop the L2 norm's
    epsilon, which turns the all-zero descriptor of a flat patch into NaN.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).cpu().eval()
    layers = list(folded.features)
    fused: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and fused and isinstance(fused[-1], nn.Conv2d):
            fused[-1] = fuse_conv_bn_eval(fused[-1], layer)
        elif not isinstance(layer, nn.Dropout):  # identity in eval mode
            fused.append(layer)
    folded.features = nn.Sequential(*fused)
    return folded


def finish_export(program: Any, opset: int) -> onnx.ModelProto:
    """The ModelProto of a ``torch.onnx.export(dynamo=True)`` program: constants folded,
    initializers lifted and deduplicated, common subexpressions merged, the exporter's own
    metadata removed, and the opset checked to be the one asked for.

    Raises:
        InputError: the exporter wrote another opset than ``opset``.
    """
    import onnx_ir
    import onnxscript.optimizer
    from onnx_ir.passes import common as passes

    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    graph = program.model
    onnxscript.optimizer.fold_constants(graph)
    for cleanup in (
        passes.RemoveUnusedNodesPass(),
        passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        passes.DeduplicateInitializersPass(),
        passes.CommonSubexpressionEliminationPass(),
        passes.RemoveUnusedNodesPass(),
    ):
        cleanup(graph)
    proto = onnx_ir.serde.serialize_model(graph)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        # The exporter falls back to another opset with a warning; the user asked for this one.
        raise InputError(f"torch's exporter wrote opset {written} where {opset} was asked for")
    # Keep only our provenance; the exporter's per-value torch metadata is noise to users.
    del proto.metadata_props[:]
    for node in proto.graph.node:
        del node.metadata_props[:]
    cast_uint8_inputs_once(proto)
    return proto


#: Nodes that read only the shape of their input, never its values: reading the shape of the
#: input's float Cast instead gives the same result.
SHAPE_ONLY_OPS = ("Shape", "Size")


def uint8_input_consumers(proto: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Each uint8 graph input and the nodes that read it."""
    import onnx

    uint8 = [
        i.name for i in proto.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    ]
    return {name: [node for node in proto.graph.node if name in node.input] for name in uint8}


def cast_uint8_inputs_once(proto: onnx.ModelProto) -> None:
    """Make every uint8 graph input feed exactly one node, a Cast, in place.

    TensorRT's ONNX parser wants a UINT8 network input to feed a Cast directly and nothing
    else (an NVIDIA maintainer in NVIDIA/TensorRT issue 3985; TensorRT's Shape layer lists
    no uint8 input), while torch's exporter reads the batch size (and an image's sides)
    straight from the input with ``Shape``. Those nodes read the shape only, so they are
    moved onto the Cast's output, which has the same shape; any other second reader is an
    exporter change this function does not know, and is refused rather than rewired.

    Raises:
        InputError: a uint8 input read by no Cast, by several, or by a node that reads its
            values other than the Cast.
    """
    for name, readers in uint8_input_consumers(proto).items():
        casts = [node for node in readers if node.op_type == "Cast"]
        others = [node for node in readers if node.op_type != "Cast"]
        if len(casts) != 1 or any(node.op_type not in SHAPE_ONLY_OPS for node in others):
            raise InputError(
                f"the exported graph's uint8 input {name!r} is read by "
                f"{', '.join(sorted(n.op_type for n in readers)) or 'nothing'}; expected one "
                f"Cast and at most {'/'.join(SHAPE_ONLY_OPS)} nodes beside it"
            )
        cast_output = casts[0].output[0]
        for node in others:
            node.input[:] = [cast_output if value == name else value for value in node.input]
    # The rewired Shape nodes now come before the Cast they read: restore topological order.
    topological_sort(proto)


def topological_sort(proto: onnx.ModelProto) -> None:
    """Reorder ``proto.graph.node`` so that every node follows the producers of its inputs,
    keeping the existing order wherever it is already valid."""
    available = {i.name for i in proto.graph.input} | {t.name for t in proto.graph.initializer}
    available.add("")  # an omitted optional input
    pending = list(proto.graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(value in available for value in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise InputError(f"the graph has a cycle or a missing input at {rest[0].name!r}")
        pending = rest
    copies = [type(node)() for node in ordered]
    for copy_, node in zip(copies, ordered, strict=True):
        copy_.CopyFrom(node)
    del proto.graph.node[:]
    proto.graph.node.extend(copies)


def name_layers(proto: onnx.ModelProto) -> None:
    """Name the convs ``conv0`` ... ``conv6`` and each ReLU after a conv after it (``relu0``
    ...), in graph order: the names INT8 sensitivity reports, ``--keep-float`` and TensorRT's
    layer profiles use."""
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for index, conv in enumerate(convs):
        conv.name = f"conv{index}"
        after = consumers.get(conv.output[0], [])
        if len(after) == 1 and after[0].op_type == "Relu":
            after[0].name = f"relu{index}"


def check_graph(proto: onnx.ModelProto) -> None:
    """``onnx.checker`` (full check, with shape inference) or an InputError saying why not."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"exported graph fails onnx.checker: {exc}") from exc


def set_metadata(proto: onnx.ModelProto, metadata: GraphMetadata) -> None:
    """Replace the graph's metadata_props with ``metadata``."""
    del proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def variant_graph(
    fp32: onnx.ModelProto, variant: Variant, options: Any
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """``variant``'s graph made from the FP32 graph by its graph function (the FP32 graph
    itself for a variant without one), stamped with the producer and checked, and the extra
    metadata fields the function returned."""
    proto = fp32
    extra: dict[str, Any] = {}
    make_graph = variant.graph_function()
    if make_graph is not None:
        proto, extra = make_graph(fp32, variant, options)
    proto.producer_name, proto.producer_version = PRODUCER, __version__
    check_graph(proto)
    return proto, extra


def producer() -> str:
    """``hardnet-export <version>``: the producer every exported graph's metadata names."""
    return f"{PRODUCER} {__version__}"


def write_graph(proto: onnx.ModelProto, metadata: GraphMetadata, out: Path) -> Path:
    """Store ``metadata`` in ``proto`` and write it to ``out`` atomically."""
    set_metadata(proto, metadata)
    with atomic_path(out) as tmp:
        import onnx

        onnx.save_model(proto, tmp)
    return out
