"""The one grammar for data sources: ``train --data``, ``eval --data`` and ``--calibration``.

Forms (each stage accepts the kinds it can use and lists them when it gets another):

- ``builtin[:KEY=VALUE...]``: the photos that ship inside packages (training photos for
  training and calibration, held-out photos for evaluation); ``KEY=VALUE`` overrides of the
  view change, for training.
- ``stereo`` / ``stereo-hard``: the Middlebury motorcycle pair (plain, or with rotation and
  zoom); evaluation only.
- ``phototour:ROOT/NAME[:PAIRS.txt]``: a Brown/PhotoTour subset folder (or torchvision's
  ``ROOT/NAME.pt`` cache); evaluation takes the pairs file (default the 100k standard one).
- ``hpatches:ROOT[:SPLIT]``: an HPatches release folder and split (``a`` by default).
- a plain path: a ``.npy`` of patches, a PhotoTour subset folder (holding ``info.txt``) or
  ``.pt`` cache, or an HPatches release folder (holding ``i_*``/``v_*`` sequences).

Several specs combine where a stage takes several (repeated or comma-separated). Parsing
checks that paths exist, so a typo fails before any work starts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.host import BUILTIN_PHOTO_PACKAGES

KINDS = ("builtin", "stereo", "stereo-hard", "phototour", "hpatches", "npy")
#: The form of each kind, as the error message lists them.
FORMS = {
    "builtin": "builtin[:KEY=VALUE...]",
    "stereo": "stereo",
    "stereo-hard": "stereo-hard",
    "phototour": "phototour:ROOT/NAME[:PAIRS.txt] (or a PhotoTour folder / .pt cache)",
    "hpatches": "hpatches:ROOT[:SPLIT] (or an HPatches folder)",
    "npy": "PATCHES.npy",
}
HPATCHES_DEFAULT_SPLIT = "a"


@dataclass(frozen=True)
class DataSource:
    """One parsed spec.

    Attributes:
        spec: the text as given.
        kind: one of :data:`KINDS`.
        options: ``builtin`` only: ``(KEY, VALUE)`` overrides, as strings.
        path: ``phototour``: the subset folder (or ``.pt`` cache); ``hpatches``: the release
            folder; ``npy``: the file.
        pairs_file: ``phototour``: the pairs file named in the spec, if any.
        split: ``hpatches``: the split (``a`` unless given).
    """

    spec: str
    kind: str
    options: tuple[tuple[str, str], ...] = ()
    path: Path | None = None
    pairs_file: str | None = None
    split: str | None = None

    @property
    def root(self) -> Path:
        """``phototour``: the folder that holds the subset (``ROOT`` of ``ROOT/NAME``)."""
        assert self.path is not None
        return self.path.parent

    @property
    def name(self) -> str:
        """``phototour``: the subset's name (``NAME`` of ``ROOT/NAME``)."""
        assert self.path is not None
        return self.path.stem if self.path.suffix == ".pt" else self.path.name


def _forms(allowed: Collection[str]) -> str:
    return ", ".join(FORMS[kind] for kind in KINDS if kind in allowed)


def _split_suffix(rest: str, is_suffix: object) -> tuple[str, str | None]:
    """``ROOT:SUFFIX`` -> (ROOT, SUFFIX) when the last ``:`` part looks like a suffix
    (``is_suffix(text)``) and the whole text is not itself an existing path; else (rest,
    None). Drive letters and paths with colons stay whole."""
    head, sep, tail = rest.rpartition(":")
    if sep and head and not Path(rest).exists() and callable(is_suffix) and is_suffix(tail):
        return head, tail
    return rest, None


def _is_split_name(text: str) -> bool:
    return bool(text) and "/" not in text and "\\" not in text


def parse_source(
    spec: str, *, allowed: Collection[str] = KINDS, purpose: str = "data"
) -> DataSource:
    """Parse one spec of the grammar (module docstring) and check its paths exist.

    Args:
        spec: the text.
        allowed: the kinds the caller can use.
        purpose: what the spec is for, for messages (``training data``, ``calibration``, ...).

    Raises:
        InputError: not a spec of an allowed kind; the message lists the allowed forms.
        MissingFileError: a named folder or file that does not exist.
    """
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    source: DataSource
    if kind == "builtin":
        options = []
        for item in filter(None, rest.split(":")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise InputError(
                    f"{purpose} {text!r}: expected builtin[:KEY=VALUE...], got {item!r}"
                )
            options.append((key, value))
        source = DataSource(text, "builtin", options=tuple(options))
    elif kind in ("stereo", "stereo-hard") and not sep:
        source = DataSource(text, kind)
    elif kind == "phototour" and rest:
        location, pairs = _split_suffix(rest, lambda tail: tail.endswith(".txt"))
        path = Path(location)
        if not path.name:
            raise InputError(f"{purpose} {text!r}: expected phototour:ROOT/NAME")
        if not path.parent.is_dir():
            raise MissingFileError(f"{purpose} {text!r}: folder {path.parent} does not exist")
        source = DataSource(text, "phototour", path=path, pairs_file=pairs)
    elif kind == "hpatches" and rest:
        location, split = _split_suffix(rest, _is_split_name)
        if not Path(location).is_dir():
            raise MissingFileError(f"{purpose} {text!r}: HPatches folder {location} does not exist")
        source = DataSource(
            text, "hpatches", path=Path(location), split=split or HPATCHES_DEFAULT_SPLIT
        )
    else:
        source = _plain_path(text, allowed, purpose)
    if source.kind not in allowed:
        raise InputError(
            f"{purpose} {text!r} is {source.kind} data, which this stage cannot use; "
            f"expected {_forms(allowed)}"
        )
    return source


def _plain_path(text: str, allowed: Collection[str], purpose: str) -> DataSource:
    path = Path(text)
    if text and path.suffix == ".npy":
        if not path.is_file():
            raise MissingFileError(f"{purpose} {text!r}: file not found")
        return DataSource(text, "npy", path=path)
    if text and path.suffix == ".pt":
        if not path.is_file():
            raise MissingFileError(f"{purpose} {text!r}: file not found")
        return DataSource(text, "phototour", path=path)
    if text and path.is_dir():
        if (path / "info.txt").is_file():
            return DataSource(text, "phototour", path=path)
        if any(p.is_dir() and p.name[:2] in ("i_", "v_") for p in path.iterdir()):
            return DataSource(text, "hpatches", path=path, split=HPATCHES_DEFAULT_SPLIT)
        raise InputError(
            f"{purpose} {text!r} is a folder with neither PhotoTour (info.txt) nor HPatches "
            f"(i_*/v_* sequences) data; expected {_forms(allowed)}"
        )
    if text and ("/" in text or "\\" in text or path.suffix) and not path.exists():
        raise MissingFileError(f"{purpose} {text!r}: no such file or folder")
    raise InputError(f"unknown {purpose} {text!r}: expected {_forms(allowed)}")


def split_specs(specs: str | Iterable[str]) -> list[str]:
    """Flatten repeated and comma-separated values into single specs (empty ones dropped)."""
    items = [specs] if isinstance(specs, str) else list(specs)
    return [s.strip() for item in items for s in item.split(",") if s.strip()]


def packages(specs: str | Iterable[str]) -> tuple[str, ...]:
    """The optional packages (import names) that reading ``specs`` needs: those the built-in
    photos ship inside, where a spec is ``builtin``."""
    builtin = any(spec.partition(":")[0] == "builtin" for spec in split_specs(specs))
    return BUILTIN_PHOTO_PACKAGES if builtin else ()


def parse_sources(
    specs: str | Iterable[str], *, allowed: Collection[str] = KINDS, purpose: str = "data"
) -> list[DataSource]:
    """:func:`parse_source` for every spec of :func:`split_specs`.

    Raises:
        InputError: no spec at all, or a bad one.
    """
    found = split_specs(specs)
    if not found:
        raise InputError(f"no {purpose} given: expected {_forms(allowed)}")
    return [parse_source(spec, allowed=allowed, purpose=purpose) for spec in found]
