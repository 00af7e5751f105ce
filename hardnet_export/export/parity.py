"""Numerical parity between two descriptor functions (PyTorch vs ONNX, FP32 vs INT8, ...).

Each batch size runs the whole patch set through both functions in chunks of that size, so
the report also checks the dynamic batch axis (odd sizes, a short last chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

DescribeFn = Callable[[np.ndarray], np.ndarray]
DEFAULT_BATCH_SIZES = (1, 7, 300)


def compare_descriptors(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs error, min/mean cosine and nearest-neighbour agreement of two descriptor sets.

    Nearest-neighbour agreement is the fraction of descriptors whose nearest other descriptor
    (by L2 distance) is the same index under both sets; it needs at least 2 descriptors.

    Shape:
        - reference: (N, D) float.
        - candidate: (N, D) float.
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.ndim != 2 or reference.shape != candidate.shape or len(reference) < 2:
        raise ValueError(
            "compare_descriptors needs two (N, D) arrays of equal shape with N >= 2, got "
            f"{reference.shape} and {candidate.shape}"
        )
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = (reference * candidate).sum(axis=1) / np.maximum(norms, 1e-12)
    return {
        "max_abs_error": float(np.abs(reference - candidate).max()),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
        "nn_agreement": float(np.mean(_nearest_other(reference) == _nearest_other(candidate))),
    }


def _nearest_other(descriptors: np.ndarray) -> np.ndarray:
    squared = (descriptors * descriptors).sum(axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * descriptors @ descriptors.T
    np.fill_diagonal(distances, np.inf)
    return distances.argmin(axis=1)


def describe_in_batches(describe: DescribeFn, patches: np.ndarray, batch_size: int) -> np.ndarray:
    """Run ``describe`` over ``patches`` in chunks of ``batch_size`` and concatenate.

    Shape:
        - patches: (N, 1, 32, 32).
        - Output: (N, 128).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [describe(patches[i : i + batch_size]) for i in range(0, len(patches), batch_size)]
    return np.concatenate(chunks).astype(np.float32, copy=False)


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
    if patches.ndim != 4 or patches.shape[1:] != (1, 32, 32) or len(patches) < 2:
        raise ValueError(f"parity needs (N, 1, 32, 32) patches with N >= 2, got {patches.shape}")
    patches = np.ascontiguousarray(patches)
    reference_descriptors = describe_in_batches(reference, patches, len(patches))
    batches = {}
    for size in batch_sizes:
        candidate_descriptors = describe_in_batches(candidate, patches, size)
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
