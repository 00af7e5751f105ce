from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.calibration.gate import Int8GateError, evaluate_gate
from hardnet_export.data.types import MatchedPairs


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pairs(n: int = 60) -> MatchedPairs:
    rng = np.random.default_rng(0)
    anchors = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    noise = rng.integers(-20, 21, anchors.shape)
    positives = np.clip(anchors.astype(int) + noise, 0, 255).astype(np.uint8)
    return MatchedPairs(anchors, positives, name="synthetic")


def _describe(batch: np.ndarray) -> np.ndarray:
    flat = batch.reshape(len(batch), -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    return _unit(flat).astype(np.float32)


def test_identical_candidate_passes() -> None:
    result = evaluate_gate(_describe, _describe, _pairs())
    assert result.passed and result.fpr95_loss_pp == 0 and result.pairs == 60
    assert result.min_cosine == pytest.approx(1.0)


def test_broken_candidate_is_refused_unless_forced() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        return _describe(batch[::-1].copy())[::-1] * 0 + 1 / np.sqrt(1024)

    with pytest.raises(Int8GateError, match="refused by the accuracy gate") as info:
        evaluate_gate(_describe, broken, _pairs(), max_fpr95_loss=1.0)
    # The advice names Int8Options' fields in Python, the onnx command's flags on its line.
    assert (
        "Keep more layers float (keep_float=('conv0', 'conv1') or float_budget=0.5; see "
        "sensitivity=True)" in str(info.value)
    )
    assert "(max_fpr95_loss, max_nn_accuracy_loss, min_cosine)" in str(info.value)
    assert str(info.value).endswith("write it anyway with force=True.")
    from hardnet_export.cli import flag

    cli = info.value.render(flag)
    assert "(--keep-float conv0,conv1 or --float-budget 0.5; see --sensitivity)" in cli
    assert "(--max-fpr95-loss, --max-nn-loss, --min-cosine)" in cli
    assert cli.endswith("write it anyway with --force.")
    result = evaluate_gate(_describe, broken, _pairs(), force=True)
    assert not result.passed and result.forced
    # Collapsed descriptors tie everywhere: NN accuracy, not FPR95, shows the damage.
    assert result.nn_accuracy_loss_pp > 2.0


def test_noisy_candidate_loses_fpr95() -> None:
    rng = np.random.default_rng(1)

    def noisy(batch: np.ndarray) -> np.ndarray:
        d = _describe(batch)
        return _unit(d + rng.normal(scale=0.15, size=d.shape)).astype(np.float32)

    result = evaluate_gate(_describe, noisy, _pairs(200), force=True)
    assert result.fpr95_loss_pp > 1.0 and not result.passed


def test_flat_patches_do_not_decide_the_worst_cosine_but_are_recorded() -> None:
    from hardnet_export.calibration.gate import FLAT_PATCH_STD, textured

    pairs = _pairs()
    anchors = pairs.anchors.copy()
    anchors[3] = 117  # constant: no texture at all
    anchors[5] = 60
    anchors[5, 0, :2] = 61  # two pixels one grey level up: std far below one grey level
    pairs = MatchedPairs(anchors, pairs.positives, name="synthetic")
    patches = np.concatenate([pairs.anchors, pairs.positives])
    assert np.flatnonzero(~textured(patches)).tolist() == [3, 5]
    # A diagonal line 8 grey levels deep has std 1.4: near-flat; 32 deep, std 5.6: texture.
    line = np.eye(32, dtype=np.uint8)
    assert not textured(np.full((1, 32, 32), 255, np.uint8) - line * 8)[0]
    assert textured(np.full((1, 32, 32), 255, np.uint8) - line * 32)[0]
    assert FLAT_PATCH_STD == 3.5

    offset = np.random.default_rng(1).normal(size=1024) * 1e-3

    def reference(batch: np.ndarray) -> np.ndarray:
        # Like a network's biases, a fixed offset gives flat patches a finite descriptor.
        flat = batch.reshape(len(batch), -1).astype(np.float64)
        return _unit(flat - flat.mean(axis=1, keepdims=True) + offset).astype(np.float32)

    def ruin(rows: list[int]):  # type: ignore[no-untyped-def]
        def describe(batch: np.ndarray) -> np.ndarray:
            out = reference(batch)
            for row in rows:
                if row < len(out):
                    out[row] = -out[row]
            return out

        return describe

    # Batches of the gate are at most 256 patches and there are 120: row 3 is anchor 3.
    flat_only = evaluate_gate(reference, ruin([3, 5]), pairs, min_cosine=0.98)
    assert flat_only.passed and flat_only.min_cosine == pytest.approx(1.0)
    assert flat_only.flat_patches == 2 and flat_only.min_cosine_all < -0.99
    with pytest.raises(Int8GateError, match="worst patch's cosine"):
        evaluate_gate(reference, ruin([3, 7]), pairs, min_cosine=0.98)


@pytest.mark.slow
def test_no_patch_at_a_sift_keypoint_counts_as_flat() -> None:
    # The flat threshold leaves out only patches no detector describes: every patch at an
    # OpenCV SIFT keypoint of the 20 built-in photos has texture.
    import cv2

    from hardnet_export.calibration.gate import textured
    from hardnet_export.data.builtin import PHOTO_NAMES, load_photo
    from hardnet_export.geometry import extract_patches

    counted = flat = 0
    for name in PHOTO_NAMES:
        photo = load_photo(name)
        gray = photo if photo.ndim == 2 else cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
        keypoints = cv2.SIFT_create(nfeatures=2000).detect(gray)
        patches = extract_patches(gray, keypoints)
        flat += int((~textured(patches)).sum())
        counted += len(patches)
    assert counted > 15_000
    # The least textured (3.51 on the moon, measured on an AVX-512 EPYC) sits just above the
    # threshold: another CPU's SIMD rounding may move a keypoint by a hair, never many.
    assert flat <= 2, flat
