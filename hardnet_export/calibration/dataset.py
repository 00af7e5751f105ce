"""Calibration sets: real 32x32 patches, reproducible by seed, identified by content hash.

Sources: the built-in photos (training split, so the gate's held-out pairs stay unseen), a
PhotoTour subset (folder with ``info.txt`` or torchvision's ``.pt`` cache), an HPatches release
folder (the ``ref`` image of every sequence found), or a ``.npy`` of patches. Larger patches
(64x64 PhotoTour, 65x65 HPatches) are resized to 32x32 by
:func:`hardnet_export.geometry.resize_patches`, as for training and evaluation. The hash is
the sha256 of the
``.npy`` bytes :meth:`CalibrationSet.save` writes, so a saved set and its hash agree and any
cache keyed by it is keyed by content, not by file name.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export._io import atomic_write_bytes, load_npy, sha256_bytes
from hardnet_export.data.sources import DataSource, parse_source
from hardnet_export.errors import InputError
from hardnet_export.geometry import PATCH_SIZE, is_patch_stack, resize_patches

#: The kinds of :mod:`hardnet_export.data.sources` calibration draws patches from (not the
#: motorcycle pair nor the held-out photos: they judge the result).
CALIBRATION_KINDS = ("builtin", "npy", "phototour", "hpatches")

DEFAULT_SIZE = 1024


@dataclass(frozen=True)
class CalibrationSet:
    """Patches to calibrate INT8 activation ranges on.

    Shape:
        - patches: (N, 32, 32) uint8, N >= 1.
    """

    patches: np.ndarray
    source: str
    seed: int | None = None
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        patches = self.patches
        if patches.ndim != 3 or patches.shape[1:] != (PATCH_SIZE, PATCH_SIZE):
            raise InputError(
                f"calibration patches must be (N, {PATCH_SIZE}, {PATCH_SIZE}), got {patches.shape}"
            )
        if patches.dtype != np.uint8:
            raise InputError(f"calibration patches must be uint8, got {patches.dtype}")
        if len(patches) == 0:
            raise InputError("a calibration set needs at least one patch, got 0")
        object.__setattr__(self, "patches", np.ascontiguousarray(patches))
        object.__setattr__(self, "sha256", sha256_bytes(self.npy_bytes()))

    def __len__(self) -> int:
        return len(self.patches)

    def npy_bytes(self) -> bytes:
        """The exact bytes :meth:`save` writes (``np.save`` format, no pickle)."""
        buffer = io.BytesIO()
        np.save(buffer, self.patches, allow_pickle=False)
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the patches as ``.npy`` atomically; the file's sha256 equals ``self.sha256``."""
        path = Path(path)
        if path.suffix != ".npy":
            raise InputError(f"a calibration set is saved as .npy, got {path}")
        atomic_write_bytes(path, self.npy_bytes())
        return path

    def describe(self) -> dict[str, Any]:
        """JSON-ready provenance: source, size, seed and sha256."""
        return {"source": self.source, "size": len(self), "seed": self.seed, "sha256": self.sha256}

    def batches(self, batch_size: int) -> list[np.ndarray]:
        """The patches as (n, 1, 32, 32) uint8 batches, the graph's input layout."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        patches = self.patches[:, None]
        return [patches[i : i + batch_size] for i in range(0, len(patches), batch_size)]


def make_calibration_set(
    source: str | Path = "builtin",
    *,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    progress: bool = False,
) -> CalibrationSet:
    """Draw ``size`` real patches from ``source`` with ``seed``.

    Args:
        source: ``"builtin"``, a ``.npy`` file, a PhotoTour subset folder (holding
            ``info.txt``) or ``.pt`` cache, or an HPatches release folder.
        size: number of patches; a smaller source is used whole.
        seed: the same source, size and seed give the same set (and hash).
        progress: show a progress bar while reading a dataset folder.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InputError(f"calibration size must be a positive integer, got {size!r}")
    spec = parse_source(str(source), allowed=CALIBRATION_KINDS, purpose="calibration")
    if spec.kind == "builtin":
        if spec.options:
            raise InputError(
                f"calibration {spec.spec!r}: builtin takes no options here (calibration uses "
                "the training photos as they are)"
            )
        from hardnet_export.data.builtin import make_patchset

        patchset = make_patchset(n_points=(size + 1) // 2, views_per_point=2, seed=seed)
        return CalibrationSet(patchset.patches[:size], f"builtin train photos ({size})", seed)
    patches = _read_source(spec, progress)
    rng = np.random.default_rng(seed)
    if len(patches) > size:
        patches = patches[np.sort(rng.choice(len(patches), size, replace=False))]
    assert spec.path is not None
    return CalibrationSet(
        resize_patches(patches), f"{spec.path.name} ({len(patches)} patches)", seed
    )


def load_calibration_set(path: str | Path) -> CalibrationSet:
    """A set saved by :meth:`CalibrationSet.save` (or any (N, 32, 32) uint8 ``.npy``), whole."""
    path = Path(path)
    return CalibrationSet(resize_patches(_read_npy(path)), path.name)


def _read_source(spec: DataSource, progress: bool) -> np.ndarray:
    assert spec.path is not None
    if spec.kind == "npy":
        return _read_npy(spec.path)
    if spec.kind == "phototour":
        from hardnet_export.data.phototour import read_phototour

        return read_phototour(spec.root, spec.name, progress=progress).patches
    from hardnet_export._progress import track
    from hardnet_export.data.hpatches import read_sequence

    folders = sorted(p for p in spec.path.iterdir() if p.is_dir() and p.name[:2] in ("i_", "v_"))
    stacks = [
        read_sequence(folder, ("ref",))["ref"]
        for folder in track(folders, len(folders), "reading HPatches", "seq", progress)
    ]
    return np.concatenate(stacks)


def _read_npy(path: Path) -> np.ndarray:
    patches = load_npy(path, "calibration patches")
    if patches.ndim == 4 and patches.shape[1] == 1:
        patches = patches[:, 0]
    if not is_patch_stack(patches):
        raise InputError(
            f"{path} must hold (N, S, S) or (N, 1, S, S) uint8 patches with S >= 1, got "
            f"{patches.shape} {patches.dtype}"
        )
    return patches
