"""HPatches evaluation on sequence folders written here in the release's exact format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixture_files import write_hpatches_sequence

from hardnet_export.data.hpatches import IMAGE_NAMES, split_sequences
from hardnet_export.evaluation.hpatches import evaluate_hpatches, verification_pairs


def pixels(patches: np.ndarray) -> np.ndarray:
    """The simplest describer: standardised pixels."""
    x = patches.reshape(len(patches), -1).astype(np.float32)
    x -= x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def write_split(root: Path, rows: int, shuffle_targets: bool = False) -> None:
    rng = np.random.default_rng(0)
    for seq in split_sequences("a", "test"):
        ref = rng.integers(0, 256, (rows, 65, 65), dtype=np.uint8)
        stacks = {}
        for name in IMAGE_NAMES:
            noisy = np.clip(ref + rng.normal(0, 10, ref.shape), 0, 255).astype(np.uint8)
            stacks[name] = (
                noisy[rng.permutation(rows)] if shuffle_targets and name != "ref" else noisy
            )
        write_hpatches_sequence(root / seq, stacks)


def test_matching_and_verification_map(tmp_path: Path) -> None:
    write_split(tmp_path / "good", rows=3)
    good = evaluate_hpatches(pixels, tmp_path / "good", "a", n_pairs=2000)
    assert good["sequences"] == 40
    assert good["matching_map"] == pytest.approx(1.0)
    assert good["verification_map"] > 0.95
    # Target rows shuffled: row k no longer shows patch k, so matching AP collapses.
    write_split(tmp_path / "bad", rows=3, shuffle_targets=True)
    bad = evaluate_hpatches(pixels, tmp_path / "bad", "a", n_pairs=2000)
    assert bad["matching_map"] < 0.6 and bad["verification_map"] < good["verification_map"]


def test_verification_pairs_follow_the_protocol() -> None:
    pairs = verification_pairs({"s0": 5, "s1": 7, "s2": 4}, n_pairs=300, seed=1)
    pos, intra, inter = pairs["pos"], pairs["neg_intra"], pairs["neg_inter"]
    assert (pos[:, 0] == pos[:, 3]).all() and (pos[:, 2] == pos[:, 5]).all()
    assert (pos[:, 1] != pos[:, 4]).all() and pos[:, [1, 4]].max() <= 4
    assert (intra[:, 0] == intra[:, 3]).all() and (intra[:, 2] != intra[:, 5]).all()
    assert (inter[:, 0] != inter[:, 3]).all()
    lengths = np.array([5, 7, 4])
    assert (inter[:, 5] < lengths[inter[:, 3]]).all() and (intra[:, 5] < lengths[intra[:, 0]]).all()


def test_missing_sequences_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sequences"):
        evaluate_hpatches(pixels, tmp_path, "a")
