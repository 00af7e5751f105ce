"""The training tests' data: a tiny PhotoTour subset written in the real on-disk format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_files import structured_patches, write_phototour

N_POINTS = 48


@pytest.fixture(scope="module")
def phototour_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("brown")
    patches = structured_patches(N_POINTS, 2, 64, seed=3)
    write_phototour(root, "liberty", patches, np.repeat(np.arange(N_POINTS), 2))
    return root


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)
