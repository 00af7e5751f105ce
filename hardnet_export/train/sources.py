"""Training pair sources: ``--data`` specs turned into deterministic batches of 32x32 pairs.

A source answers ``batch(k, batch_size, rank, world)`` with the share of global batch ``k``
that DDP rank ``rank`` of ``world`` trains on, as a function of ``(seed, k, rank, world)``
only. That is what makes ``--resume`` exact and lets data-loader workers draw any batch.

Specs (the grammar of :mod:`hardnet_export.data.sources`; training takes these kinds):
    - ``builtin[:KEY=VALUE...]``: pairs cut from the photos that ship in packages (training
      photos only); KEY=VALUE overrides the view-change ranges of
      :class:`hardnet_export.data.builtin.Augment`, e.g. ``builtin:rotation_deg=5:tilt=1.2``,
      and ``photos_per_draw=N`` draws each batch from N photos only (neighbouring points
      become the hard negatives; see :class:`hardnet_export.data.builtin.BuiltinPairs`).
    - ``phototour:ROOT/NAME`` (or the folder itself): a Brown/PhotoTour subset (64x64
      patches, resized to 32).
    - ``hpatches:ROOT[:SPLIT]`` (or the folder itself): the train sequences of an HPatches
      split (default ``a``; 65x65 patches, resized to 32).
Several specs combine: batch ``k`` comes from source ``k mod n`` (each batch from one source,
so every batch still holds distinct 3D points).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields

import numpy as np

from hardnet_export.data.sources import DataSource, split_specs
from hardnet_export.data.sources import parse_source as parse_data_source
from hardnet_export.data.types import PatchSet
from hardnet_export.errors import InputError, Remedy
from hardnet_export.geometry import resize_patches


class PairSource(abc.ABC):
    """Deterministic batches of matching pairs; picklable so data-loader workers can use it."""

    spec: str

    @abc.abstractmethod
    def batch(
        self, k: int, batch_size: int, rank: int = 0, world: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """This rank's share of global batch ``k``: ``batch_size // world`` pairs.

        Shape:
            - output: anchors (B / world, 32, 32) uint8, positives (B / world, 32, 32) uint8.
        """

    def check_batch_size(self, batch_size: int) -> None:  # noqa: B027 - optional hook
        """Raise ValueError if this source cannot fill a batch of ``batch_size`` pairs."""


@dataclass
class BuiltinSource(PairSource):
    """Pairs rendered from the built-in training photos (held-out photos never appear).

    ``augment`` overrides fields of :class:`hardnet_export.data.builtin.Augment` (the ranges
    of change between the two views), e.g. ``{"rotation_deg": 5.0}``; ``photos_per_draw``
    is :class:`hardnet_export.data.builtin.BuiltinPairs`'s.
    """

    seed: int = 0
    spec: str = "builtin"
    augment: dict[str, float] = field(default_factory=dict)
    photos_per_draw: int | None = None

    def batch(
        self, k: int, batch_size: int, rank: int = 0, world: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        from hardnet_export.data.builtin import Augment, BuiltinPairs

        # Every rank renders only its own share: batch k of rank r is stream batch k*W + r.
        pairs = BuiltinPairs(
            "train",
            self.seed,
            augment=Augment(**self.augment),
            photos_per_draw=self.photos_per_draw,
        )
        anchors, positives, _ = pairs.batch(k * world + rank, batch_size // world)
        return anchors, positives


@dataclass
class PatchSetSource(PairSource):
    """Pairs drawn with HardNet's sampler from a labelled patch collection (resized to 32)."""

    patches: np.ndarray
    labels: np.ndarray
    seed: int = 0
    spec: str = ""
    _samplers: dict[int, object] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_samplers"] = {}
        return state

    def _sampler(self, batch_size: int):  # type: ignore[no-untyped-def]
        from hardnet_export.data.sampler import PairSampler

        if batch_size not in self._samplers:
            self._samplers[batch_size] = PairSampler(self.labels, batch_size, self.seed)
        return self._samplers[batch_size]

    def check_batch_size(self, batch_size: int) -> None:
        try:
            self._sampler(batch_size)
        except ValueError as exc:
            raise InputError(f"data {self.spec!r}: {exc}") from exc

    def batch(
        self, k: int, batch_size: int, rank: int = 0, world: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        # Index sampling is cheap: every rank draws the global batch and keeps its rows, so
        # the ranks' shares hold distinct points, as global hardest mining needs.
        a, p = self._sampler(batch_size).batch(k)
        share = batch_size // world
        a, p = a[rank * share : (rank + 1) * share], p[rank * share : (rank + 1) * share]
        return self.patches[a], self.patches[p]


def patchset_source(patchset: PatchSet, seed: int = 0, spec: str = "") -> PatchSetSource:
    """A source over an in-memory PatchSet; patches are resized to 32x32 once here."""
    return PatchSetSource(
        resize_patches(patchset.patches), np.asarray(patchset.labels), seed, spec or patchset.name
    )


def _builtin_source(source: DataSource, seed: int) -> BuiltinSource:
    """``builtin[:KEY=VALUE...]`` -> Augment overrides and ``photos_per_draw`` (numbers;
    validated now, not in a data-loader worker)."""
    from hardnet_export.data.builtin import Augment, BuiltinPairs

    spec = source.spec
    fields = {f.name for f in dataclass_fields(Augment) if f.name != "scale_range"}
    keys = fields | {"photos_per_draw"}
    options: dict[str, float] = {}
    for key, value in source.options:
        if key not in keys:
            raise InputError(
                f"training data {spec!r}: expected builtin[:KEY=VALUE...] with KEY one of "
                f"{sorted(keys)}, got {key!r}"
            )
        try:
            options[key] = float(value)
        except ValueError:
            raise InputError(
                f"training data {spec!r}: {key} must be a number, got {value!r}"
            ) from None
    per_draw = options.pop("photos_per_draw", None)
    if per_draw is not None and per_draw != int(per_draw):
        raise InputError(
            f"training data {spec!r}: photos_per_draw must be a whole number, got {per_draw}"
        )
    photos = None if per_draw is None else int(per_draw)
    try:
        BuiltinPairs("train", seed, Augment(**options), photos_per_draw=photos)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(f"training data {spec!r}: {exc}") from None
    return BuiltinSource(seed, spec, options, photos)


#: The kinds of :mod:`hardnet_export.data.sources` training can draw pairs from.
TRAINING_KINDS = ("builtin", "phototour", "hpatches")


def parse_source(spec: str, seed: int = 0) -> PairSource:
    """One ``--data`` spec -> a source (reads the dataset now, so bad paths fail early)."""
    source = parse_data_source(spec, allowed=TRAINING_KINDS, purpose="training data")
    if source.kind == "builtin":
        return _builtin_source(source, seed)
    if source.kind == "phototour":
        from hardnet_export.data.phototour import read_phototour

        return patchset_source(read_phototour(source.root, source.name), seed, source.spec)
    from hardnet_export.data.hpatches import hpatches_patchset

    assert source.path is not None and source.split is not None
    return patchset_source(hpatches_patchset(source.path, source.split, "train"), seed, source.spec)


@dataclass
class CombinedSource(PairSource):
    """Several sources in turn: global batch ``k`` comes from source ``k mod n``."""

    sources: list[PairSource]
    spec: str = ""

    def __post_init__(self) -> None:
        if not self.sources:
            raise InputError("CombinedSource needs at least one source")
        self.spec = ",".join(s.spec for s in self.sources)

    def check_batch_size(self, batch_size: int) -> None:
        for s in self.sources:
            s.check_batch_size(batch_size)

    def batch(
        self, k: int, batch_size: int, rank: int = 0, world: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.sources)
        return self.sources[k % n].batch(k // n, batch_size, rank, world)


def build_source(specs: str | list[str] | tuple[str, ...], seed: int = 0) -> PairSource:
    """Parse every spec; one source is returned as is, several are combined."""
    found = split_specs(specs)
    if not found:
        raise InputError(
            "no training data given: pass {remedy} (or a dataset spec)",
            remedy=Remedy({"data": "builtin"}),
        )
    sources = [parse_source(s, seed) for s in found]
    return sources[0] if len(sources) == 1 else CombinedSource(sources)


def flip_transpose(
    anchors: np.ndarray, positives: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's augmentation: per pair, a random transpose and a random horizontal flip,
    the same for both patches of the pair (so they still match).

    Shape:
        - anchors, positives: (B, S, S) uint8.
        - output: same.
    """
    n = len(anchors)
    transpose = rng.random(n) < 0.5
    flip = rng.random(n) < 0.5
    out = []
    for x in (anchors, positives):
        x = x.copy()
        x[transpose] = x[transpose].transpose(0, 2, 1)
        x[flip] = x[flip][:, :, ::-1]
        out.append(x)
    return out[0], out[1]
