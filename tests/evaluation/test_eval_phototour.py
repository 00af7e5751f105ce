"""PhotoTour FPR95 on a subset folder written here in the exact on-disk layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixture_files import structured_patches, write_phototour

from hardnet_export.evaluation.phototour import evaluate_phototour
from hardnet_export.evaluation.sift import sift_describer


def test_fpr95_on_a_pair_list(tmp_path: Path) -> None:
    n_points = 20
    patches = structured_patches(n_points, 2, 64, seed=2)
    labels = np.repeat(np.arange(n_points), 2)
    matching = [(2 * i, 2 * i + 1) for i in range(n_points)]
    non_matching = [(2 * i, 2 * ((i + 1) % n_points) + 1) for i in range(n_points)]
    write_phototour(tmp_path, "yosemite", patches, labels, m50=np.array(matching + non_matching))
    result = evaluate_phototour(sift_describer(), tmp_path, "yosemite")
    assert result["pairs"] == 2 * n_points
    assert result["fpr95"] < 0.2
    with pytest.raises(FileNotFoundError, match="missing pair list"):
        evaluate_phototour(sift_describer(), tmp_path, "yosemite", "m50_1000_1000_0.txt")
