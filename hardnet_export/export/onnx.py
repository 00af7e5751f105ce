"""PyTorch -> ONNX: one self-contained patch graph per variant, with provenance and a parity
report.

The graph takes ``patches`` (N, 1, 32, 32) uint8 (or float32 0..255) with a dynamic batch axis
and returns ``descriptors`` (N, 128) float32; the per-patch standardisation and the L2 norm are
inside it. torch's dynamo exporter folds BatchNorm into the convs. The image graph, which cuts
the patches itself, is :func:`hardnet_export.export.image_graph.export_image_graph`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export import __version__
from hardnet_export._io import check_writable
from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE, DescribeFn
from hardnet_export.artifacts.metadata import PRODUCER, SEMANTICS_HOST, GraphMetadata
from hardnet_export.artifacts.variants import Variant, get_variant
from hardnet_export.errors import InputError
from hardnet_export.export.common import (
    MIN_OPSET,
    OUTPUT_NAME,
    check_opset,
    finish_export,
    fold_batchnorm,
    name_layers,
    producer,
    quiet_exporter,
    resolve_weights,
    variant_graph,
    weights_model_name,
    write_graph,
)
from hardnet_export.export.inference_gates import inference_gates
from hardnet_export.export.parity import parity_report
from hardnet_export.export.sensitivity import SensitivityReport, write_report
from hardnet_export.host import host_record, require
from hardnet_export.shipped import PATCH_SIZE

if TYPE_CHECKING:
    import onnx

    from hardnet_export.model import HardNet

INPUT_DTYPES = {"uint8": np.uint8, "float32": np.float32}
INPUT_NAME = "patches"
PARITY_PATCHES = 300  # enough for batch 300 in one chunk


def export_onnx(
    weights: str | Path | HardNet | None,
    out: str | Path,
    *,
    variant: str | Variant = "fp32",
    options: Any = None,
    input_dtype: str = "uint8",
    opset: int = MIN_OPSET,
    parity: bool = True,
    parity_patches: np.ndarray | None = None,
    gate_inference: bool = True,
) -> Path:
    """Export HardNet as one variant (:data:`hardnet_export.artifacts.variants.VARIANTS`) to
    one ONNX patch graph, written atomically to ``out``.

    Args:
        weights: a checkpoint path, a registered model's name (``hardnet``, ...), a
            :class:`~hardnet_export.model.HardNet`, or ``None`` for the default model shipped
            in the package. The graph's metadata records the model's name (when it is a
            registered one) and width.
        out: the ``.onnx`` file to write (its folder must exist).
        variant: ``fp32``, ``fp16`` (conv stack in float16), ``int8-tensorrt`` or
            ``int8-cpu`` (Q/DQ, calibrated on real patches and gated on held-out pairs; see
            ``options``), or a :class:`~hardnet_export.artifacts.variants.Variant`.
        options: the variant's options (its ``options`` type:
            :class:`~hardnet_export.export.int8.Int8Options` for INT8, calibration and gate);
            None: the variant's defaults. A variant without options takes None.
        input_dtype: ``uint8`` (default) or ``float32`` (values 0..255) input.
        opset: ONNX opset, at least 18.
        parity: compare the graph with PyTorch at batch 1, 7 and 300 and store the report in
            the metadata under ``parity``.
        parity_patches: the patches for that report; default 300 held-out built-in patches.
        gate_inference: measure the arithmetic the CPU rules may run the graph in on this
            CPU (OpenVINO's bf16 where it is native) on held-out pairs and record the gates
            (:mod:`hardnet_export.export.inference_gates`); without them those rules pass
            the graph by.

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
    options = chosen.check_options(options)
    # ONNX Runtime runs the parity report and a variant's calibration and gate: a missing one
    # must not surface after the model was traced and calibrated.
    runs_graph = options is not None or parity
    require("an ONNX export", "torch", "onnx", "onnxscript", *(("onnxruntime",) * runs_graph))
    out = Path(out)
    check_writable(out)

    model, weights_sha, provenance = resolve_weights(weights)
    options = with_qat_ranges(options, provenance, weights)
    fp32 = torch_to_onnx(model, input_dtype=input_dtype, opset=opset)
    proto, extra = variant_graph(fp32, chosen, options)
    metadata = GraphMetadata(
        producer=producer(),
        precision=chosen.precision,
        input={
            "name": INPUT_NAME,
            "dtype": input_dtype,
            "shape": ["batch", 1, PATCH_SIZE, PATCH_SIZE],
            "range": [0, 255],
            "normalisation": "per-patch standardisation inside the graph",
        },
        output={"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", DESCRIPTOR_SIZE]},
        weights_sha256=weights_sha,
        weights_provenance=provenance,
        model_name=weights_model_name(weights),
        width=model.width,
        layout=model.layout,
        **extra,
    )
    if parity:
        metadata = dataclasses.replace(
            metadata, parity=_parity(model, proto, metadata, parity_patches)
        )
    if gate_inference:
        gates = inference_gates(fp32, proto, chosen.precision)
        metadata = dataclasses.replace(metadata, inference_gates=gates)
    path = write_graph(proto, metadata, out)
    quantisation = metadata.quantisation
    if quantisation is not None and quantisation.sensitivity is not None:
        # The graph holds the report too; the file beside it is for people and scripts.
        write_report(SensitivityReport.from_dict(quantisation.sensitivity), path)
    return path


def with_qat_ranges(options: Any, provenance: dict[str, Any], weights: Any) -> Any:
    """INT8 ``options`` with the QAT ranges of a quantisation-aware trained checkpoint
    (its ``meta["qat"]``, in ``provenance``), unless they name some already; other options
    as they are."""
    from hardnet_export.artifacts.quantisation import QatRecord
    from hardnet_export.export.int8 import Int8Options

    record = provenance.get("qat")
    if record is None or not isinstance(options, Int8Options) or options.qat is not None:
        return options
    qat = QatRecord.from_dict(record, source=f"{weights} (its meta['qat'])")
    return dataclasses.replace(options, qat=qat)


def _parity(
    model: HardNet,
    proto: onnx.ModelProto,
    metadata: GraphMetadata,
    parity_patches: np.ndarray | None,
) -> dict[str, Any]:
    """The graph against PyTorch, in the semantics of its gate (a quantised graph's) or of
    this host's kernels."""
    from hardnet_export.runtime.onnxruntime_backend import ort_describe

    patches, source = (
        (parity_patches, "given patches")
        if parity_patches is not None
        else default_parity_patches()
    )
    gate = metadata.quantisation.gate if metadata.quantisation is not None else None
    semantics = gate.semantics if gate is not None else SEMANTICS_HOST
    report = parity_report(
        torch_describe(model), ort_describe(proto, semantics=semantics), patches, source=source
    )
    return {**report, "semantics": semantics, "host": host_record()}


def torch_to_onnx(
    model: HardNet, *, input_dtype: str = "uint8", opset: int = MIN_OPSET
) -> onnx.ModelProto:
    """The FP32 graph of ``model`` from ``torch.onnx.export(dynamo=True)``, batch axis dynamic,
    BatchNorm folded, constants folded, no Dropout."""
    import torch
    from torch.export import Dim

    dtype = torch.uint8 if input_dtype == "uint8" else torch.float32
    example = torch.zeros((2, 1, 32, 32), dtype=dtype)
    with quiet_exporter():
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
