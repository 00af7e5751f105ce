from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.evaluation.sift import sift_descriptors


def test_unit_descriptors_that_see_the_whole_patch() -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (5, 32, 32), dtype=np.uint8)
    d = sift_descriptors(patches)
    assert d.shape == (5, 128) and d.dtype == np.float32
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    # A change off the centre changes the descriptor: the window (6 x 4 px) reaches it.
    changed = patches.copy()
    changed[:, 5:11, 5:11] = 255 - changed[:, 5:11, 5:11]
    assert (np.linalg.norm(sift_descriptors(changed) - d, axis=1) > 0.05).all()


def test_rootsift_is_unit_and_non_negative() -> None:
    patches = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    d = sift_descriptors(patches, root=True)
    assert (d >= 0).all() and np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(d, sift_descriptors(patches))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        sift_descriptors(np.zeros((2, 32, 32), np.float32))
    with pytest.raises(ValueError, match="positive"):
        sift_descriptors(np.zeros((2, 32, 32), np.uint8), size=0)
