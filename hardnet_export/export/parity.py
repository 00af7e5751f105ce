"""Numerical parity between two descriptor functions (PyTorch vs ONNX, FP32 vs INT8, ...).

Each batch size runs the whole patch set through both functions in chunks of that size, so
the report also checks the dynamic batch axis (odd sizes, a short last chunk).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from hardnet_export.artifacts.describe import DescribeFn, describe_in_batches
from hardnet_export.errors import InputError
from hardnet_export.evaluation.metrics import compare_descriptors
from hardnet_export.shipped import PATCH_SIZE

DEFAULT_BATCH_SIZES = (1, 7, 300)


def parity_report(
    reference: DescribeFn,
    candidate: DescribeFn,
    patches: np.ndarray,
    *,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    source: str = "",
) -> dict[str, Any]:
    """Compare ``candidate`` to ``reference`` on the same patches at several batch sizes.

    Returns a JSON-ready dict: ``{"patches": N, "source": ..., "batches": {"1": {...}, ...},
    "worst": {...}}`` where each entry holds the figures of :func:`compare_descriptors` and
    ``worst`` takes the worst of each figure over the batch sizes.

    Shape:
        - patches: (N, 32, 32) or (N, 1, 32, 32) uint8, N >= 2.
    """
    patches = np.asarray(patches)
    if patches.ndim == 3:
        patches = patches[:, None]
    if patches.ndim != 4 or patches.shape[1:] != (1, PATCH_SIZE, PATCH_SIZE) or len(patches) < 2:
        raise InputError(
            f"parity needs (N, 1, {PATCH_SIZE}, {PATCH_SIZE}) patches with N >= 2, got "
            f"{patches.shape}"
        )
    patches = np.ascontiguousarray(patches)
    reference_descriptors = describe_in_batches(reference, patches, len(patches))
    if not np.isfinite(reference_descriptors).all():
        raise InputError("the reference model gives NaN or inf descriptors: its weights are broken")
    batches = {}
    for size in batch_sizes:
        candidate_descriptors = describe_in_batches(candidate, patches, size)
        if not np.isfinite(candidate_descriptors).all():
            # NaN compares unequal to everything: the figures below would look perfect.
            raise InputError(f"the graph gives NaN or inf descriptors at batch {size}")
        batches[str(size)] = compare_descriptors(reference_descriptors, candidate_descriptors)
    worst = {
        "max_abs_error": max(b["max_abs_error"] for b in batches.values()),
        "min_cosine": min(b["min_cosine"] for b in batches.values()),
        "mean_cosine": min(b["mean_cosine"] for b in batches.values()),
        "nn_agreement": min(b["nn_agreement"] for b in batches.values()),
    }
    return {"patches": len(patches), "source": source, "batches": batches, "worst": worst}


def format_parity(report: dict[str, Any], title: str = "parity") -> str:
    """A small fixed-width table of a :func:`parity_report` for printing."""
    source = f" from {report['source']}" if report["source"] else ""
    semantics = f" ({report['semantics']})" if report.get("semantics") else ""
    lines = [
        f"{title}{semantics} on {report['patches']} patches{source}",
        f"{'batch':>6} {'max |err|':>10} {'min cos':>9} {'mean cos':>9} {'NN agree':>9}",
    ]
    for size, row in report["batches"].items():
        lines.append(
            f"{size:>6} {row['max_abs_error']:>10.2e} {row['min_cosine']:>9.6f} "
            f"{row['mean_cosine']:>9.6f} {row['nn_agreement']:>9.4f}"
        )
    return "\n".join(lines)
