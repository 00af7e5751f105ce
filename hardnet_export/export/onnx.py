"""PyTorch -> ONNX: one self-contained graph per precision, with provenance and a parity report.

The graph takes ``patches`` (N, 1, 32, 32) uint8 (or float32 0..255) with a dynamic batch axis
and returns ``descriptors`` (N, 128) float32; the per-patch standardisation and the L2 norm are
inside it. torch's dynamo exporter folds BatchNorm into the convs.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export import __version__
from hardnet_export._io import atomic_path, check_writable, sha256_file
from hardnet_export.artifacts.describe import DescribeFn
from hardnet_export.artifacts.metadata import PRODUCER, SEMANTICS_HOST, GraphMetadata
from hardnet_export.artifacts.variants import Variant, get_variant
from hardnet_export.errors import InputError, InputTypeError
from hardnet_export.export.parity import parity_report
from hardnet_export.host import host_record, require

if TYPE_CHECKING:
    import onnx

    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.model import HardNet

INPUT_DTYPES = {"uint8": np.uint8, "float32": np.float32}
INPUT_NAME = "patches"
OUTPUT_NAME = "descriptors"
MIN_OPSET = 18
PARITY_PATCHES = 300  # enough for batch 300 in one chunk


def export_onnx(
    weights: str | Path | HardNet | None,
    out: str | Path,
    *,
    variant: str | Variant = "fp32",
    input_dtype: str = "uint8",
    opset: int = MIN_OPSET,
    parity: bool = True,
    parity_patches: np.ndarray | None = None,
    int8: Int8Options | None = None,
    with_extraction: bool = False,
    magnification: float | None = None,
    pyramid_levels: int | None = None,
) -> Path:
    """Export HardNet as one variant (:data:`hardnet_export.artifacts.variants.VARIANTS`) to
    one ONNX file, written atomically to ``out``.

    Args:
        weights: a checkpoint path, a registered model's name (``hardnet``, ...), a
            :class:`~hardnet_export.model.HardNet`, or ``None`` for the default model shipped
            in the package. The graph's metadata records the model's name (when it is a
            registered one) and width.
        out: the ``.onnx`` file to write (its folder must exist).
        variant: ``fp32``, ``fp16`` (conv stack in float16), ``int8-tensorrt`` or
            ``int8-cpu`` (Q/DQ, calibrated on real patches and gated on held-out pairs; see
            ``int8``), or a :class:`~hardnet_export.artifacts.variants.Variant`.
        input_dtype: ``uint8`` (default) or ``float32`` (values 0..255) input.
        opset: ONNX opset, at least 18.
        parity: compare the graph with PyTorch at batch 1, 7 and 300 and store the report in
            the metadata under ``parity``.
        parity_patches: the patches for that report; default 300 held-out built-in patches.
        int8: calibration and gate options of an INT8 variant (defaults if ``None``).
        with_extraction: write the image graph instead (:mod:`hardnet_export.export.image_graph`:
            inputs ``image`` (H, W) uint8 and ``keypoints`` (K, 4) float32, patches cut in the
            graph); fp32 and fp16 only, uint8 image input, no PyTorch parity report.
        magnification: the image graph's support region in units of ``KeyPoint.size``
            (default :data:`hardnet_export.geometry.DEFAULT_MAGNIFICATION`).
        pyramid_levels: the image graph's pyramid levels, 1..15 (default 8): keypoint sizes
            below ``2**levels * 32 / magnification``, image sides of at least
            ``2**(levels - 1) + 1``.

    Shape:
        - parity_patches: (N, 32, 32) or (N, 1, 32, 32) uint8, N >= 2.

    Returns:
        ``out`` as a Path.
    """
    chosen = variant if isinstance(variant, Variant) else get_variant(variant)
    if input_dtype not in INPUT_DTYPES:
        raise InputError(
            f"input_dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}"
        )
    check_opset(opset)
    if int8 is not None and chosen.int8_target is None:
        raise InputError(f"int8 options given for the {chosen.name} variant")
    if with_extraction:
        if chosen.precision == "int8":
            raise InputError(
                f"an image graph (--with-extraction) is fp32 or fp16, got the {chosen.name} "
                "variant; export INT8 as a patch graph (without --with-extraction)"
            )
        if input_dtype != "uint8":
            raise InputError(
                f"an image graph (--with-extraction) takes a uint8 image, got input_dtype "
                f"{input_dtype!r}"
            )
    elif magnification is not None or pyramid_levels is not None:
        raise InputError(
            "magnification and pyramid_levels are settings of the image graph (with_extraction)"
        )
    # ONNX Runtime runs the parity report and the INT8 calibration and gate: a missing one
    # must not surface after the model was traced and calibrated.
    runs_graph = chosen.int8_target is not None or (parity and not with_extraction)
    require("an ONNX export", "torch", "onnx", "onnxscript", *(("onnxruntime",) * runs_graph))
    out = Path(out)
    check_writable(out)

    model, weights_sha, provenance = resolve_weights(weights)
    model_name = weights_model_name(weights)
    if with_extraction:
        return _export_image_graph(
            model, out, chosen, opset, magnification, pyramid_levels, weights_sha, provenance,
            model_name,
        )  # fmt: skip
    proto = torch_to_onnx(model, input_dtype=input_dtype, opset=opset)
    extra: dict[str, Any] = {}
    make_graph = chosen.graph_function()
    if make_graph is not None:
        proto, extra = make_graph(proto, chosen, int8)
    proto.producer_name, proto.producer_version = PRODUCER, __version__
    check_graph(proto)

    metadata = GraphMetadata(
        producer=f"{PRODUCER} {__version__}",
        precision=chosen.precision,
        input={
            "name": INPUT_NAME,
            "dtype": input_dtype,
            "shape": ["batch", 1, 32, 32],
            "range": [0, 255],
            "normalisation": "per-patch standardisation inside the graph",
        },
        output={"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", 128]},
        weights_sha256=weights_sha,
        weights_provenance=provenance,
        model_name=model_name,
        width=model.width,
        **extra,
    )
    if parity:
        from hardnet_export.runtime.onnxruntime_backend import ort_describe

        patches, source = (
            (parity_patches, "given patches")
            if parity_patches is not None
            else default_parity_patches()
        )
        # An INT8 graph's parity is computed in the same semantics as its gate.
        semantics = (metadata.int8_gate or {}).get("semantics", SEMANTICS_HOST)
        metadata = dataclasses.replace(
            metadata,
            parity={
                **parity_report(
                    torch_describe(model),
                    ort_describe(proto, semantics=semantics),
                    patches,
                    source=source,
                ),
                "semantics": semantics,
                "host": host_record(),
            },
        )
    set_metadata(proto, metadata)
    with atomic_path(out) as tmp:
        import onnx

        onnx.save_model(proto, tmp)
    return out


def _export_image_graph(
    model: HardNet,
    out: Path,
    variant: Variant,
    opset: int,
    magnification: float | None,
    pyramid_levels: int | None,
    weights_sha: str,
    provenance: dict[str, Any],
    model_name: str | None,
) -> Path:
    from hardnet_export.export.image_graph import (
        IMAGE_INPUT,
        KEYPOINTS_INPUT,
        PYRAMID_LEVELS,
        image_graph,
        min_image_side,
    )
    from hardnet_export.geometry import DEFAULT_MAGNIFICATION, _check_magnification
    from hardnet_export.validate import check_int

    scale = _check_magnification(DEFAULT_MAGNIFICATION if magnification is None else magnification)
    levels = check_int(
        "pyramid_levels",
        PYRAMID_LEVELS if pyramid_levels is None else pyramid_levels,
        low=1,
        high=15,
    )
    proto = image_graph(model, magnification=scale, opset=opset, levels=levels)
    extra: dict[str, Any] = {}
    make_graph = variant.graph_function()
    if make_graph is not None:
        proto, extra = make_graph(proto, variant, None)
    proto.producer_name, proto.producer_version = PRODUCER, __version__
    check_graph(proto)
    side = min_image_side(levels)
    metadata = GraphMetadata(
        producer=f"{PRODUCER} {__version__}",
        precision=variant.precision,
        input={
            "name": IMAGE_INPUT,
            "dtype": "uint8",
            "shape": ["height", "width"],
            "range": [0, 255],
            "keypoints": {
                "name": KEYPOINTS_INPUT,
                "dtype": "float32",
                "shape": ["keypoints", 4],
                "columns": ["x", "y", "size", "angle"],
            },
            "normalisation": "patches cut and standardised inside the graph",
        },
        output={"name": OUTPUT_NAME, "dtype": "float32", "shape": ["keypoints", 128]},
        weights_sha256=weights_sha,
        weights_provenance=provenance,
        graph_kind="image",
        magnification=scale,
        pyramid_levels=levels,
        min_image_side=side,
        model_name=model_name,
        width=model.width,
        **extra,
    )
    set_metadata(proto, metadata)
    with atomic_path(out) as tmp:
        import onnx

        onnx.save_model(proto, tmp)
    return out


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

    from hardnet_export.artifacts.models import resolve_model
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
    from hardnet_export.artifacts.models import DEFAULT_MODEL, lookup, registered_name

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
def _quiet_exporter() -> Iterator[None]:
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


def torch_to_onnx(
    model: HardNet, *, input_dtype: str = "uint8", opset: int = MIN_OPSET
) -> onnx.ModelProto:
    """The FP32 graph of ``model`` from ``torch.onnx.export(dynamo=True)``, batch axis dynamic,
    BatchNorm folded, constants folded, no Dropout."""
    import torch
    from torch.export import Dim

    dtype = torch.uint8 if input_dtype == "uint8" else torch.float32
    example = torch.zeros((2, 1, 32, 32), dtype=dtype)
    with _quiet_exporter():
        program = torch.onnx.export(
            fold_batchnorm(model),
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes={INPUT_NAME: {0: Dim("batch")}},
            external_data=False,
            optimize=False,  # see fold_batchnorm; constant folding alone is safe
            verbose=False,
        )
    proto = finish_export(program, opset)
    name_layers(proto)
    proto.producer_name = PRODUCER
    proto.producer_version = __version__
    return proto


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
    return proto


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


def torch_describe(model: HardNet) -> DescribeFn:
    """A describe function running ``model`` in PyTorch (the parity reference)."""
    import torch

    def describe(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return describe


def default_parity_patches(n: int = PARITY_PATCHES, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` real patches cut from the held-out built-in photos, and their description.

    Shape:
        - Output: (n, 32, 32) uint8.
    """
    from hardnet_export.data.builtin import make_patchset

    patchset = make_patchset(n_points=(n + 1) // 2, views_per_point=2, split="val", seed=seed)
    return patchset.patches[:n], f"built-in held-out photos (seed {seed})"
