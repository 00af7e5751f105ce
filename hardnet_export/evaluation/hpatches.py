"""HPatches verification and matching mAP on a split's test sequences, as hpatches-benchmark
computes them.

- AP is hpatches-benchmark's: rank by descending score (= -distance), precision and recall
  with a leading (recall 0, precision 1) point, area by the trapezoidal rule.
- Matching: for every test sequence, noise level (e, h, t) and target image 1..5, each
  ``ref`` patch's nearest neighbour among the target image's patches; a match is correct when
  it is the same row; AP of the matches ranked by distance, with every ref patch counted as a
  positive (``numpos = N``). mAP = mean over sequences and images, per noise level.
- Verification: pairs generated like the benchmark's ``gen_verif``: a random sequence and two
  distinct rows ``k != l``, two distinct image slots of ``ref, 1..4``; positives ``(k, k)``
  across the two slots, intra-sequence negatives ``(k, l)``, inter-sequence negatives against
  a random row of another sequence. Per noise level the slots map to ``ref``/``e1..e4``,
  ``ref``/``h1..h4``, ``ref``/``t1..t4``. AP on the imbalanced protocol (all negatives and
  the first 20 % as many positives), averaged over intra/inter.

Simplifications, stated honestly: the benchmark reads pre-generated pair lists (1M pairs
from ``np.random.seed(42)``) that are not shipped here; this module generates its own
(``n_pairs``, default 100,000, seeded), so verification figures are comparable in protocol
but not pair for pair; inter-sequence negatives never come from the anchor's own sequence
(the benchmark allows it by chance). Retrieval is not computed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hardnet_export.artifacts.describe import DescribeFn, describe_in_batches
from hardnet_export.data.hpatches import list_sequences, read_sequence
from hardnet_export.errors import InputError
from hardnet_export.evaluation.metrics import average_precision
from hardnet_export.geometry import resize_patches

NOISE = ("e", "h", "t")


def _slot_image(slot: int, noise: str) -> str:
    return "ref" if slot == 0 else f"{noise}{slot}"


def _describe_sequences(
    describe: DescribeFn, folders: list[Path], progress: Callable[[int], object] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for folder in folders:
        seq = read_sequence(folder)
        names = list(seq)
        stacked = resize_patches(np.concatenate([seq[n] for n in names]))
        desc = describe_in_batches(describe, stacked, progress=progress)
        n = len(seq[names[0]])
        out[folder.name] = {name: desc[i * n : (i + 1) * n] for i, name in enumerate(names)}
    return out


def matching_map(descs: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Matching mAP per noise level and overall (fractions)."""
    aps: dict[str, list[float]] = {t: [] for t in NOISE}
    for seq in descs.values():
        ref = seq["ref"].astype(np.float64)
        rows = np.arange(len(ref))
        for t in NOISE:
            for i in range(1, 6):
                tgt = seq[f"{t}{i}"].astype(np.float64)
                d2 = (ref * ref).sum(1)[:, None] + (tgt * tgt).sum(1)[None] - 2.0 * ref @ tgt.T
                dist = np.sqrt(np.maximum(d2, 0.0))
                nn = dist.argmin(1)
                aps[t].append(average_precision(-dist[rows, nn], nn == rows, numpos=len(rows)))
    result = {f"matching_map_{t}": float(np.mean(v)) for t, v in aps.items()}
    result["matching_map"] = float(np.mean(list(result.values())))
    return result


def verification_pairs(
    lengths: dict[str, int], n_pairs: int, seed: int = 42
) -> dict[str, np.ndarray]:
    """Verification pair lists over sequences of the given lengths (see the module doc).

    Shape:
        - each output: (n_pairs, 6) int64 rows ``(seq1, slot1, row1, seq2, slot2, row2)``,
          sequences as indices into ``list(lengths)``.
    """
    names = list(lengths)
    if len(names) < 2:
        raise InputError("HPatches verification needs at least two sequences")
    n_rows = np.array([lengths[s] for s in names])
    if (n_rows < 2).any():
        raise InputError("every HPatches sequence needs at least two patches")
    rng = np.random.default_rng(seed)
    s = rng.integers(0, len(names), n_pairs)
    k = rng.integers(0, n_rows[s])
    l_ = (k + rng.integers(1, n_rows[s])) % n_rows[s]
    slots = np.argsort(rng.random((n_pairs, 5)), axis=1)[:, :2]
    s_other = (s + rng.integers(1, len(names), n_pairs)) % len(names)
    r_other = rng.integers(0, n_rows[s_other])
    t1, t2 = slots[:, 0], slots[:, 1]
    return {
        "pos": np.stack([s, t1, k, s, t2, k], 1),
        "neg_intra": np.stack([s, t1, k, s, t2, l_], 1),
        "neg_inter": np.stack([s, t1, k, s_other, t2, r_other], 1),
    }


def verification_map(
    descs: dict[str, dict[str, np.ndarray]], n_pairs: int = 100_000, seed: int = 42
) -> dict[str, float]:
    """Verification mAP (imbalanced protocol) per noise level and overall (fractions)."""
    names = list(descs)
    pairs = verification_pairs({s: len(descs[s]["ref"]) for s in names}, n_pairs, seed)
    n_imb = n_pairs + int(0.2 * n_pairs)
    result = {}
    for t in NOISE:

        def dists(rows: np.ndarray, t: str = t) -> np.ndarray:
            out = np.empty(len(rows))
            for i, (s1, a1, r1, s2, a2, r2) in enumerate(rows.tolist()):
                d1 = descs[names[s1]][_slot_image(a1, t)][r1]
                d2 = descs[names[s2]][_slot_image(a2, t)][r2]
                out[i] = np.linalg.norm(d1 - d2)
            return out

        d_pos = dists(pairs["pos"])
        labels = np.concatenate([np.zeros(n_pairs), np.ones(n_pairs)])[:n_imb]
        aps = []
        for kind in ("neg_intra", "neg_inter"):
            d = np.concatenate([dists(pairs[kind]), d_pos])[:n_imb]
            aps.append(average_precision(-d, labels))
        result[f"verification_map_{t}"] = float(np.mean(aps))
    result["verification_map"] = float(np.mean(list(result.values())))
    return result


def evaluate_hpatches(
    describe: DescribeFn,
    root: str | os.PathLike[str],
    split: str = "a",
    n_pairs: int = 100_000,
    progress: Callable[[int], object] | None = None,
) -> dict[str, float]:
    """Verification and matching mAP (fractions) on the test sequences of ``split``."""
    folders = list_sequences(root, split, "test")
    if not folders:
        raise InputError(f"HPatches split {split!r} has no test sequences")
    descs = _describe_sequences(describe, folders, progress)
    return {
        **verification_map(descs, n_pairs),
        **matching_map(descs),
        "sequences": len(folders),
    }
