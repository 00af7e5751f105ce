"""HPatches (hpatches-release) read from a local folder, with the hpatches-benchmark splits.

The release holds 116 sequence folders (57 ``i_*`` illumination, 59 ``v_*`` viewpoint), each with
16 grayscale PNGs: ``ref``, ``e1..e5``, ``h1..h5``, ``t1..t5``. Every PNG is 65 px wide and 65*N
tall, N patches stacked vertically; row k of every image is the same physical patch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from hardnet_export._progress import track
from hardnet_export.data.types import PatchSet
from hardnet_export.errors import InputError, InputTypeError, MissingFileError
from hardnet_export.imagefile import decode_image, file_header

#: Side of an HPatches patch as stored, in pixels (resized to 32 for the network).
HPATCHES_PATCH_SIZE = 65
IMAGE_NAMES: tuple[str, ...] = ("ref",) + tuple(
    f"{level}{i}" for level in "eht" for i in range(1, 6)
)


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Sequence names of hpatches-benchmark's splits.json (python/utils/splits.json), the a/b/c
# test lists in that file's order. Each a/b/c train set there is exactly every other sequence.
_ILLUM = _names(
    """
    i_ajuntament i_autannes i_bologna i_books i_boutique i_bridger i_brooklyn i_castle
    i_chestnuts i_contruction i_crownday i_crownnight i_dc i_dome i_duda i_fenis i_fog
    i_fruits i_gonnenberg i_greenhouse i_greentea i_indiana i_kions i_ktirio i_kurhaus
    i_leuven i_lionday i_lionnight i_londonbridge i_melon i_miniature i_nescafe i_nijmegen
    i_nuts i_objects i_parking i_partyfood i_pencils i_pinard i_pool i_porta i_resort
    i_salon i_santuario i_school i_ski i_smurf i_steps i_table i_tools i_toy i_troulos
    i_veggies i_village i_whitebuilding i_yellowtent i_zion
    """
)
_VIEW = _names(
    """
    v_abstract v_adam v_apprentices v_artisans v_astronautis v_azzola v_bark v_bees v_beyus
    v_bip v_bird v_birdwoman v_blueprint v_boat v_bricks v_busstop v_calder v_cartooncity
    v_charing v_churchill v_circus v_coffeehouse v_colors v_courses v_dirtywall v_dogman
    v_eastsouth v_feast v_fest v_gardens v_grace v_graffiti v_home v_laptop v_london
    v_machines v_man v_maskedman v_pomegranate v_posters v_samples v_soldiers v_strand
    v_sunseason v_tabletop v_talent v_tempera v_there v_underground v_vitro v_wall v_wapping
    v_war v_weapons v_woman v_wormhole v_wounded v_yard v_yuri
    """
)
_TEST_A = _names(
    """
    i_ajuntament i_resort i_table i_troulos i_bologna i_lionnight i_porta i_zion i_brooklyn
    i_fruits i_books i_bridger i_whitebuilding i_kurhaus i_salon i_autannes i_tools
    i_santuario i_fog i_nijmegen v_courses v_coffeehouse v_abstract v_feast v_woman v_talent
    v_tabletop v_bees v_strand v_fest v_yard v_underground v_azzola v_eastsouth v_yuri
    v_soldiers v_man v_pomegranate v_birdwoman v_busstop
    """
)
_TEST_B = _names(
    """
    i_fruits i_melon i_castle i_resort i_chestnuts i_kions i_kurhaus i_autannes i_duda
    i_partyfood i_ski i_dome i_greenhouse i_pencils i_porta i_lionday i_school i_bridger
    i_village i_fog v_astronautis v_bip v_charing v_woman v_feast v_yard v_churchill
    v_graffiti v_london v_sunseason v_posters v_bees v_apprentices v_birdwoman v_colors
    v_laptop v_there v_adam v_underground v_war
    """
)
_TEST_C = _names(
    """
    i_ski i_table i_troulos i_melon i_tools i_kions i_londonbridge i_nijmegen i_boutique
    i_parking i_steps i_fog i_leuven i_dc i_partyfood i_pool i_castle i_bologna i_smurf
    i_crownnight v_azzola v_tempera v_machines v_coffeehouse v_graffiti v_artisans
    v_maskedman v_talent v_bees v_dirtywall v_blueprint v_war v_adam v_pomegranate v_busstop
    v_weapons v_gardens v_feast v_man v_wounded
    """
)

_FULL = tuple(sorted(_ILLUM + _VIEW))
# illum and view follow the benchmark's table: train on the other kind of sequence.
SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    **{
        name: {"train": tuple(s for s in _FULL if s not in test), "test": tuple(sorted(test))}
        for name, test in (("a", _TEST_A), ("b", _TEST_B), ("c", _TEST_C))
    },
    "illum": {"train": _VIEW, "test": _ILLUM},
    "view": {"train": _ILLUM, "test": _VIEW},
    "full": {"train": (), "test": _FULL},
}


def split_sequences(split: str = "full", subset: str = "test") -> tuple[str, ...]:
    """Names of the sequences in one subset of a standard split, sorted.

    Args:
        split: one of ``a``, ``b``, ``c``, ``illum``, ``view``, ``full``.
        subset: ``train`` or ``test``. ``full`` has an empty train set.
    """
    if split not in SPLITS:
        raise InputError(f"unknown HPatches split {split!r}; expected one of {sorted(SPLITS)}")
    if subset not in ("train", "test"):
        raise InputError(f"subset must be 'train' or 'test', got {subset!r}")
    return SPLITS[split][subset]


def list_sequences(
    root: str | os.PathLike[str], split: str = "full", subset: str = "test"
) -> list[Path]:
    """Folders under ``root`` of the sequences in one subset of a standard split, sorted by name.

    Every sequence the split names must be present: a partial release would silently change
    what the benchmark numbers mean.
    """
    names = split_sequences(split, subset)
    base = Path(root)
    if not base.is_dir():
        raise MissingFileError(f"HPatches root {base} does not exist (expected hpatches-release)")
    folders = [base / name for name in names]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise MissingFileError(
            f"{base} lacks {len(missing)} of the {len(names)} sequences of split {split!r} "
            f"({subset}), e.g. {', '.join(missing[:5])}: point root at hpatches-release"
        )
    return folders


def read_sequence(
    folder: str | os.PathLike[str], images: Sequence[str] = IMAGE_NAMES
) -> dict[str, np.ndarray]:
    """Read the stacked patch images of one HPatches sequence.

    Args:
        folder: the sequence folder, e.g. ``hpatches-release/i_ajuntament``.
        images: which of ``ref``, ``e1..e5``, ``h1..h5``, ``t1..t5`` to read; all by default.

    Returns:
        image name -> patches; row k of every entry shows the same physical patch.

    Shape:
        - each value: (N, 65, 65) uint8, N the same for all images.
    """
    folder = Path(folder)
    _check_image_names(images)
    if not folder.is_dir():
        raise MissingFileError(f"HPatches sequence folder {folder} does not exist")
    out: dict[str, np.ndarray] = {}
    first = ""
    for name in images:
        stack = _read_stack(folder / f"{name}.png")
        if out and len(stack) != len(out[first]):
            raise InputError(
                f"{folder / f'{name}.png'} holds {len(stack)} patches but {first}.png holds "
                f"{len(out[first])}: every image of a sequence stacks the same patches"
            )
        first = first or name
        out[name] = stack
    return out


def hpatches_patchset(
    root: str | os.PathLike[str],
    split: str = "a",
    subset: str = "train",
    images: Sequence[str] = IMAGE_NAMES,
    progress: bool = False,
) -> PatchSet:
    """All patches of one split subset as a PatchSet for training on HPatches.

    Each physical patch (sequence, row) gets its own label; its versions in ``images`` share
    it. Patches stay 65x65: the trainer resizes them. ``progress`` shows a bar over sequences.

    Shape:
        - patches: (sum over sequences of N * len(images), 65, 65) uint8, grouped by sequence,
          then image, then row.
        - labels: (same,) int64; sequence s row k has label offset_s + k.
    """
    _check_image_names(images)
    if not images:
        raise InputError("images must name at least one of " + ", ".join(IMAGE_NAMES))
    folders = list_sequences(root, split, subset)
    if not folders:
        raise InputError(f"split {split!r} has no {subset} sequences")
    patches: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    offset = 0
    description = f"reading HPatches {split}/{subset}"
    for folder in track(folders, len(folders), description, "sequences", progress):
        seq = read_sequence(folder, images)
        n = len(seq[images[0]])
        row_labels = np.arange(offset, offset + n, dtype=np.int64)
        for name in images:
            patches.append(seq[name])
            labels.append(row_labels)
        offset += n
    return PatchSet(
        patches=np.concatenate(patches),
        labels=np.concatenate(labels),
        name=f"hpatches-{split}-{subset}",
    )


def _check_image_names(images: Sequence[str]) -> None:
    if isinstance(images, str):
        raise InputTypeError(f"images must be a sequence of names, got the string {images!r}")
    unknown = [i for i in images if i not in IMAGE_NAMES]
    if unknown:
        raise InputError(f"unknown HPatches image(s) {unknown}; expected names from {IMAGE_NAMES}")
    if len(set(images)) != len(images):
        raise InputError(f"images must not repeat a name, got {list(images)}")


def _read_stack(path: Path) -> np.ndarray:
    """Read one 65-px-wide PNG of vertically stacked patches.

    Shape:
        - output: (N, 65, 65) uint8.
    """
    if not path.is_file():
        raise MissingFileError(f"missing HPatches image {path}")
    # The width is refused from the header, before decoding; the height (the patch count)
    # has only the pixel limit.
    header = file_header(path)
    if header is not None:
        _check_width(path, header.width)
    image = decode_image(path, flags=cv2.IMREAD_UNCHANGED, parameter=None)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        color = image[..., :3]
        if not ((color[..., 0] == color[..., 1]).all() and (color[..., 1] == color[..., 2]).all()):
            raise InputError(f"{path} is a colour image; HPatches patches are 8-bit grayscale")
        image = np.ascontiguousarray(color[..., 0])
    if image.dtype != np.uint8 or image.ndim != 2:
        raise InputError(
            f"{path} must be an 8-bit grayscale image, got dtype {image.dtype} shape {image.shape}"
        )
    height, width = image.shape
    _check_width(path, width)
    if height == 0 or height % HPATCHES_PATCH_SIZE:
        raise InputError(
            f"{path} must be a multiple of {HPATCHES_PATCH_SIZE} px tall (stacked patches), "
            f"got {height}"
        )
    return image.reshape(height // HPATCHES_PATCH_SIZE, HPATCHES_PATCH_SIZE, HPATCHES_PATCH_SIZE)


def _check_width(path: Path, width: int) -> None:
    if width != HPATCHES_PATCH_SIZE:
        raise InputError(f"{path} must be {HPATCHES_PATCH_SIZE} px wide, got {width}")
