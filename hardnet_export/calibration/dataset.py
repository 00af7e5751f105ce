"""Calibration sets: real 32x32 patches, reproducible by seed, identified by content hash.

Sources: the built-in photos (training split, so the gate's held-out pairs stay unseen), a
PhotoTour subset (folder with ``info.txt`` or torchvision's ``.pt`` cache), an HPatches release
folder (the ``ref`` image of every sequence found), or a ``.npy`` of patches. Larger patches
(64x64 PhotoTour, 65x65 HPatches) are area-resized to 32x32. The hash is the sha256 of the
``.npy`` bytes :meth:`CalibrationSet.save` writes, so a saved set and its hash agree and any
cache keyed by it is keyed by content, not by file name.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export._io import atomic_write_bytes, sha256_bytes

PATCH_SIZE = 32
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
            raise ValueError(f"calibration patches must be (N, 32, 32), got {patches.shape}")
        if patches.dtype != np.uint8:
            raise ValueError(f"calibration patches must be uint8, got {patches.dtype}")
        if len(patches) == 0:
            raise ValueError("a calibration set needs at least one patch, got 0")
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
            raise ValueError(f"a calibration set is saved as .npy, got {path}")
        atomic_write_bytes(path, self.npy_bytes())
        return path

    def describe(self) -> dict[str, Any]:
        """JSON-ready provenance: source, size, seed and sha256."""
        return {"source": self.source, "size": len(self), "seed": self.seed, "sha256": self.sha256}

    def batches(self, batch_size: int) -> list[np.ndarray]:
        """The patches as (n, 1, 32, 32) uint8 batches, the graph's input layout."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
        raise ValueError(f"calibration size must be a positive integer, got {size!r}")
    if isinstance(source, str) and source == "builtin":
        from hardnet_export.data.builtin import make_patchset

        patchset = make_patchset(n_points=(size + 1) // 2, views_per_point=2, seed=seed)
        return CalibrationSet(patchset.patches[:size], f"builtin train photos ({size})", seed)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"calibration source not found: {path} (expected 'builtin', a .npy of patches, a "
            "PhotoTour subset folder or .pt cache, or an HPatches folder)"
        )
    patches = _read_source(path, progress)
    rng = np.random.default_rng(seed)
    if len(patches) > size:
        patches = patches[np.sort(rng.choice(len(patches), size, replace=False))]
    return CalibrationSet(to_32x32(patches), f"{path.name} ({len(patches)} patches)", seed)


def load_calibration_set(path: str | Path) -> CalibrationSet:
    """A set saved by :meth:`CalibrationSet.save` (or any (N, 32, 32) uint8 ``.npy``), whole."""
    path = Path(path)
    return CalibrationSet(to_32x32(_read_npy(path)), path.name)


def _read_source(path: Path, progress: bool) -> np.ndarray:
    if path.suffix == ".npy":
        return _read_npy(path)
    if path.suffix == ".pt" or (path.is_dir() and (path / "info.txt").is_file()):
        from hardnet_export.data.phototour import read_phototour

        name = path.stem if path.suffix == ".pt" else path.name
        return read_phototour(path.parent, name, progress=progress).patches
    if path.is_dir():
        sequences = sorted(p for p in path.iterdir() if p.is_dir() and p.name[:2] in ("i_", "v_"))
        if sequences:
            from hardnet_export._progress import track
            from hardnet_export.data.hpatches import read_sequence

            stacks = [
                read_sequence(folder, ("ref",))["ref"]
                for folder in track(sequences, len(sequences), "reading HPatches", "seq", progress)
            ]
            return np.concatenate(stacks)
    raise ValueError(
        f"{path} is not a calibration source: expected a .npy of patches, a PhotoTour subset "
        "folder (with info.txt) or .pt cache, or an HPatches folder (i_*/v_* sequences)"
    )


def _read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"calibration patches not found: {path}")
    try:
        patches = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npy file ({exc})") from exc
    if patches.ndim == 4 and patches.shape[1] == 1:
        patches = patches[:, 0]
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2] or patches.dtype != np.uint8:
        raise ValueError(
            f"{path} must hold (N, S, S) or (N, 1, S, S) uint8 patches, got {patches.shape} "
            f"{patches.dtype}"
        )
    return patches


def to_32x32(patches: np.ndarray) -> np.ndarray:
    """Area-resize square uint8 patches to 32x32 (unchanged when already 32x32).

    Shape:
        - patches: (N, S, S) uint8.
        - Output: (N, 32, 32) uint8.
    """
    if patches.shape[1:] == (PATCH_SIZE, PATCH_SIZE):
        return patches
    import cv2

    return np.stack(
        [cv2.resize(p, (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_AREA) for p in patches]
    )
