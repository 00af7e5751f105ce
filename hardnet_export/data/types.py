"""The two shapes patch data takes between stages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardnet_export.errors import InputError
from hardnet_export.shipped import PATCH_SIZE


@dataclass(frozen=True)
class PatchSet:
    """Patches tagged with the 3D point they show; equal labels correspond.

    Shape:
        - patches: (N, S, S) uint8, S = 64 for Brown/PhotoTour, 65 for HPatches, 32 built-in.
        - labels: (N,) int64 3D-point ids.
    """

    patches: np.ndarray
    labels: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        if self.patches.ndim != 3 or self.patches.dtype != np.uint8:
            raise InputError(
                f"PatchSet.patches must be (N, S, S) uint8, got {self.patches.shape} "
                f"{self.patches.dtype}"
            )
        if self.labels.shape != (len(self.patches),):
            raise InputError(
                f"PatchSet.labels must be ({len(self.patches)},), got {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.patches)


@dataclass(frozen=True)
class MatchedPairs:
    """Evaluation pairs: ``anchors[i]`` and ``positives[i]`` show the same 3D point,
    and no two indices show the same point, so any ``(i, j != i)`` is a non-match.

    Shape:
        - anchors, positives: (N, 32, 32) uint8.
    """

    anchors: np.ndarray
    positives: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        for field, value in (("anchors", self.anchors), ("positives", self.positives)):
            square = value.shape[1:] == (PATCH_SIZE, PATCH_SIZE)
            if value.ndim != 3 or not square or value.dtype != np.uint8:
                raise InputError(
                    f"MatchedPairs.{field} must be (N, {PATCH_SIZE}, {PATCH_SIZE}) uint8, got "
                    f"{value.shape} {value.dtype}"
                )
        if len(self.anchors) != len(self.positives):
            raise InputError(
                f"MatchedPairs needs as many anchors as positives, got {len(self.anchors)} "
                f"and {len(self.positives)}"
            )

    def __len__(self) -> int:
        return len(self.anchors)
