"""Brown / PhotoTour FPR95 on a test pair list (``m50_100000_100000_0.txt`` by default)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from hardnet_export.artifacts.describe import DescribeFn, describe_in_batches
from hardnet_export.data.phototour import STANDARD_MATCHES, read_matches, read_phototour
from hardnet_export.evaluation.metrics import fpr95
from hardnet_export.geometry import resize_patches


def evaluate_phototour(
    describe: DescribeFn,
    root: str | os.PathLike[str],
    name: str,
    pairs_file: str = STANDARD_MATCHES,
    progress: Callable[[int], object] | None = None,
) -> dict[str, float]:
    """FPR95 (fraction) of ``describe`` on the pair list of subset ``name``; patches are
    resized 64 -> 32 bilinearly, as for training. Only patches the list names are described."""
    matches = read_matches(root, name, pairs_file)
    patchset = read_phototour(root, name)
    used, inverse = np.unique(matches[:, :2], return_inverse=True)
    desc = describe_in_batches(describe, resize_patches(patchset.patches[used]), progress=progress)
    idx = inverse.reshape(-1, 2)
    distances = np.linalg.norm(desc[idx[:, 0]] - desc[idx[:, 1]], axis=1)
    return {"fpr95": fpr95(distances, matches[:, 2]), "pairs": len(matches)}
