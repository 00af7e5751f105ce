"""COLMAP databases from HardNet features, verified by COLMAP itself (``sfm`` extra).

:func:`build_database` reads every image of a folder, detects keypoints (COLMAP's own SIFT
frames by default, through pycolmap), describes them with HardNet, matches the chosen pairs
(mutual nearest neighbours; a ratio test on request) and writes cameras, images, keypoints
(six-column affine frames) and matches with pycolmap; then COLMAP's own geometric
verification (``pycolmap.verify_matches``) fills the two-view geometries.
``describer=None`` is the reference instead: COLMAP's SIFT extraction and matching
(``extract_features`` + ``match_exhaustive`` / ``match_sequential``) with the same keypoint
budget and pairs. :func:`reconstruct` runs COLMAP's incremental mapper on the result.

The database is built in a temporary file beside the target and renamed onto it only when
everything succeeded, so a failure never leaves a half-written database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.applications.features import describe_images, model_record
from hardnet_export.applications.hloc import import_h5py, runs_of
from hardnet_export.errors import (
    InputError,
    MissingDependencyError,
    MissingFileError,
    OutputError,
    OutputExistsError,
    OutputIsFolderError,
    Remedy,
)
from hardnet_export.runtime.base import Describer

PAIRINGS = ("exhaustive", "sequential")
#: Suffixes of the files taken as images (both OpenCV and COLMAP's reader decode these).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm")
#: Each image is paired with this many following ones by ``sequential`` (COLMAP's default).
SEQUENTIAL_OVERLAP = 10


def import_pycolmap() -> Any:
    try:
        import pycolmap
    except ImportError as exc:
        raise MissingDependencyError(
            "writing COLMAP databases needs pycolmap: pip install 'hardnet-export[sfm]'"
        ) from exc
    return pycolmap


@dataclass(frozen=True)
class PairResult:
    """One image pair: tentative matches and COLMAP's verified inliers."""

    image1: str
    image2: str
    matches: int
    inliers: int
    config: str  # COLMAP's two-view configuration (CALIBRATED, PLANAR, ..., or UNDEFINED)


@dataclass
class DatabaseResult:
    """What :func:`build_database` wrote."""

    database: Path
    descriptor: str
    images: list[str]
    keypoints: dict[str, int]
    pairs: list[PairResult] = field(default_factory=list)

    @property
    def verified_pairs(self) -> int:
        return sum(p.inliers > 0 for p in self.pairs)


@dataclass(frozen=True)
class ReconstructionResult:
    """What :func:`reconstruct` registered; ``models`` empty when nothing could be."""

    out: Path
    images: int
    models: list[tuple[int, int]]  # per model: registered images, 3D points
    reason: str = ""  # why nothing was reconstructed, when ``models`` is empty


def list_images(folder: str | Path) -> list[str]:
    """Names of the image files directly in ``folder``, sorted (sequential pairs follow this).

    Raises:
        FileNotFoundError: no such folder.
        ValueError: not a folder, no image files in it, or a name with whitespace (COLMAP's
            pairs file separates names by spaces).
    """
    folder = Path(folder)
    if not folder.exists():
        raise MissingFileError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"expected a folder of images, got the file {folder}")
    names = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not names:
        raise InputError(
            f"no images in {folder}: expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    spaced = [n for n in names if any(c.isspace() for c in n)]
    if spaced:
        raise InputError(
            f"{folder / spaced[0]}: COLMAP's pairs file cannot name an image with whitespace; "
            "rename it"
        )
    return names


def image_pairs(count: int, pairing: str = "exhaustive") -> list[tuple[int, int]]:
    """Index pairs (i < j) to match: all of them, or each image with the next
    :data:`SEQUENTIAL_OVERLAP` ones (COLMAP's sequential pairing without its quadratic extras).
    """
    from hardnet_export.validate import check_str

    check_str("pairs", pairing, choices=PAIRINGS)
    reach = count if pairing == "exhaustive" else SEQUENTIAL_OVERLAP
    return [(i, j) for i in range(count) for j in range(i + 1, min(count, i + 1 + reach))]


def check_outputs(
    database: str | Path, reconstruct_out: str | Path | None = None, *, overwrite: bool = False
) -> None:
    """Raise now what :func:`build_database` and :func:`reconstruct` would raise at their
    end, so a run that cannot write its outputs fails before any image is described.

    Raises:
        OutputError: ``database`` is a folder, exists (without ``overwrite``) or cannot be
            created; ``reconstruct_out`` is a file, a non-empty folder (without
            ``overwrite``), holds ``database`` (``overwrite`` would delete it) or cannot be
            written.
        MissingFileError: the database's folder does not exist.
    """
    from hardnet_export._io import check_writable

    database = Path(database)
    if database.is_dir():
        raise OutputIsFolderError(f"cannot write {database}: it is a folder; give a .db file name")
    if database.exists() and not overwrite:
        raise OutputExistsError(
            f"{database} exists; {{remedy}} replaces it", remedy=Remedy({"overwrite": True})
        )
    check_writable(database)
    if reconstruct_out is not None:
        _check_reconstruction_folder(Path(reconstruct_out), database, overwrite)


def _check_reconstruction_folder(out: Path, database: Path, overwrite: bool) -> bool:
    """Raise unless :func:`reconstruct` may write into ``out``; return whether it must
    empty it first (``overwrite`` of a non-empty folder)."""
    from hardnet_export._io import check_folder

    if out.exists() and not out.is_dir():
        raise OutputError(
            f"{{remedy}} expects a folder, got the file {out}",
            remedy=Remedy({"reconstruct_out": ...}),
        )
    full = out.is_dir() and any(out.iterdir())
    if full and not overwrite:
        raise OutputExistsError(
            f"{out} is not empty; {{remedy}} replaces it", remedy=Remedy({"overwrite": True})
        )
    if full and out.resolve() in database.resolve().parents:
        raise OutputError(
            f"the database {database} is inside the reconstruction folder {out}, which "
            "{remedy} empties: put them apart",
            remedy=Remedy({"overwrite": True}),
        )
    check_folder(out, "reconstruction folder")
    return full


@contextlib.contextmanager
def _fresh_database(database: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary database path beside ``database``, renamed onto it on success only."""
    from hardnet_export._io import atomic_path

    if database.exists() and not overwrite:
        raise OutputExistsError(
            f"{database} exists; {{remedy}} replaces it", remedy=Remedy({"overwrite": True})
        )
    # atomic_path leaves an empty file there, which sqlite opens as an empty database (and
    # COLMAP's import wants the file to exist).
    with atomic_path(database) as tmp:
        try:
            yield tmp
        finally:
            for extra in ("-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{tmp}{extra}")


@contextlib.contextmanager
def colmap_log(pycolmap: Any, verbose: bool, quiet_level: int = 2) -> Iterator[None]:
    """COLMAP's glog lines (many per image and pair) only when asked for; below
    ``quiet_level`` (2: errors are still shown) otherwise."""
    before = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = before if verbose else max(before, quiet_level)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


def _check_images(folder: Path, names: list[str], max_image_pixels: int | None) -> None:
    """Every image's header checked, then every image decoded, so an unreadable one is named
    before any work is done (one image in memory at a time)."""
    from hardnet_export.applications.images import read_image
    from hardnet_export.imagefile import image_header

    for n in names:
        image_header(folder / n, max_image_pixels=max_image_pixels)
    for n in names:
        read_image(folder / n, max_image_pixels=max_image_pixels)


def build_database(
    image_dir: str | Path,
    database: str | Path,
    describer: Describer | None,
    *,
    detector: str = "colmap-sift",
    max_keypoints: int = 2000,
    pairing: str = "exhaustive",
    ratio: float | str | None = "auto",
    overwrite: bool = False,
    progress: Callable[[Any, int, str], Any] | None = None,
    verbose: bool = False,
    max_image_pixels: int | None = None,
) -> DatabaseResult:
    """Write a verified COLMAP database of the images in ``image_dir``.

    Args:
        image_dir: folder of images (see :func:`list_images`).
        database: the ``.db`` to write; an existing one needs ``overwrite``.
        describer: a loaded HardNet model, or None for COLMAP's own SIFT (the reference).
        detector: keypoint detector for HardNet: ``colmap-sift`` (COLMAP's own SIFT
            frames, those of the reference, so both describe the same keypoints),
            ``sift``, ``orb`` or ``fast`` (OpenCV's).
        max_keypoints: the keypoint budget: COLMAP's ``max_num_features`` for COLMAP's SIFT
            (the reference, and the ``colmap-sift`` detector: locations, each with up to two
            orientations), the most keypoints kept for OpenCV's detectors.
        pairing: ``exhaustive`` or ``sequential``.
        ratio: ratio-test threshold of the matches (COLMAP SIFT's ``max_ratio``); None:
            mutual nearest neighbours only; ``"auto"``: each descriptor's measured rule
            (:func:`~hardnet_export.applications.matching.auto_ratio`: none for HardNet,
            COLMAP's 0.8 for its SIFT).
        overwrite: replace an existing database.
        progress: wraps an iterable as ``progress(items, total, description)`` (a bar).
        verbose: let COLMAP log its progress (otherwise only its errors).
        max_image_pixels: refuse images with more pixels, read from their headers before
            decoding (see :func:`~hardnet_export.applications.images.read_image`).

    Raises:
        FileNotFoundError: no image folder.
        ValueError: no images, an unreadable image or one above the pixel limit, bad
            options.
        OSError: the database exists (without ``overwrite``) or cannot be written.
    """
    from hardnet_export.applications.detection import MAX_KEYPOINTS
    from hardnet_export.applications.matching import auto_ratio, check_ratio
    from hardnet_export.imagefile import image_pixel_limit
    from hardnet_export.validate import check_int, check_str

    check_int("max_keypoints", max_keypoints, low=1, high=MAX_KEYPOINTS)
    check_str("pairs", pairing, choices=PAIRINGS)
    check_ratio(ratio)
    if isinstance(ratio, str):  # AUTO, the only string check_ratio lets through
        ratio = auto_ratio(describer)
    image_pixel_limit(max_image_pixels)
    pycolmap = import_pycolmap()
    folder = Path(image_dir)
    names = list_images(folder)
    database = Path(database)
    check_outputs(database, overwrite=overwrite)
    wrap = progress or (lambda items, _total, _what: items)
    pairs = image_pairs(len(names), pairing)
    _check_images(folder, names, max_image_pixels)
    settings = {"max_keypoints": max_keypoints, "pairs": pairing, "ratio": ratio}
    with _fresh_database(database, overwrite) as tmp, colmap_log(pycolmap, verbose):
        if describer is None:
            _colmap_sift(pycolmap, tmp, folder, names, max_keypoints, pairing, ratio)
            descriptor = "colmap-sift"
            made: dict[str, Any] = {"descriptor": descriptor, **settings}
        else:
            _hardnet(pycolmap, tmp, folder, names, pairs, describer, detector, max_keypoints,
                     ratio, wrap, max_image_pixels)  # fmt: skip
            descriptor = f"hardnet ({describer.backend})"
            made = {"descriptor": "hardnet", "detector": detector, **settings,
                    "model": model_record(describer)}  # fmt: skip
        record_provenance(tmp, made)
        result = _summarise(pycolmap, tmp, names, pairs, descriptor)
    result.database = database
    return result


#: The table this project adds to a COLMAP database: what made its descriptors (COLMAP's own
#: tables have no place for it, and COLMAP leaves tables it does not know alone).
PROVENANCE_TABLE = "hardnet_export_provenance"


def record_provenance(db_path: Path, made: Mapping[str, Any]) -> None:
    """Write ``made`` (descriptor, detector, settings, and for HardNet the
    :func:`~hardnet_export.applications.features.model_record` or the features file's
    ``extract`` runs) as JSON text under the key ``made`` in :data:`PROVENANCE_TABLE`, with
    this package's version; :func:`read_provenance` reads it back."""
    from hardnet_export import __version__

    with contextlib.closing(sqlite3.connect(db_path)) as con, con:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {PROVENANCE_TABLE} "
            "(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
        )
        rows = [("made", json.dumps(dict(made), sort_keys=True)), ("version", __version__)]
        con.executemany(f"INSERT OR REPLACE INTO {PROVENANCE_TABLE} VALUES (?, ?)", rows)


def read_provenance(database: str | Path) -> dict[str, Any] | None:
    """What :func:`record_provenance` wrote into ``database`` (None for a database this
    project did not write).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an SQLite database, or a provenance entry that is not JSON.
    """
    path = Path(database)
    if not path.is_file():
        raise MissingFileError(f"COLMAP database not found: {path}")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
            if PROVENANCE_TABLE not in tables:
                return None
            rows = dict(con.execute(f"SELECT key, value FROM {PROVENANCE_TABLE}").fetchall())
    except sqlite3.DatabaseError as exc:
        raise InputError(
            f"{path} is not an SQLite database (a COLMAP database is): {exc}"
        ) from None
    try:
        made = json.loads(rows.get("made", "{}"))
    except ValueError:
        raise InputError(f"{path}: its {PROVENANCE_TABLE} entry is not JSON") from None
    return {"version": rows.get("version"), **made}


def _import_images(pycolmap: Any, db_path: Path, folder: Path, names: list[str]) -> None:
    # COLMAP's own import makes the cameras, rigs and frames its mapper expects of 4.x
    # databases; writing bare images would leave them out.
    pycolmap.import_images(db_path, folder, pycolmap.CameraMode.AUTO, names)
    _check_imported(pycolmap, db_path, folder, names)


def _check_imported(pycolmap: Any, db_path: Path, folder: Path, names: list[str]) -> None:
    """Raise InputError naming the first image COLMAP did not take into the database."""
    db = pycolmap.Database.open(db_path)
    try:
        found = {image.name for image in db.read_all_images()}
    finally:
        db.close()
    missing = [n for n in names if n not in found]
    if missing:
        raise InputError(f"{folder / missing[0]} is not an image COLMAP's reader can read")


def _hardnet(
    pycolmap: Any,
    db_path: Path,
    folder: Path,
    names: list[str],
    pairs: list[tuple[int, int]],
    describer: Describer,
    detector: str,
    max_keypoints: int,
    ratio: float | None,
    wrap: Callable[[Any, int, str], Any],
    max_image_pixels: int | None,
) -> None:
    _import_images(pycolmap, db_path, folder, names)
    features = list(
        wrap(
            describe_images(
                describer,
                [folder / n for n in names],
                detector=detector,
                max_keypoints=max_keypoints,
                max_image_pixels=max_image_pixels,
            ),
            len(names),
            "describing",
        )
    )
    write_matched_features(
        pycolmap,
        db_path,
        names,
        [kps for kps, _ in features],
        lambda i: features[i][1],
        pairs,
        ratio,
        wrap,
    )


def write_matched_features(
    pycolmap: Any,
    db_path: Path,
    names: list[str],
    keypoints: Sequence[np.ndarray],
    descriptors: Callable[[int], np.ndarray],
    pairs: list[tuple[int, int]],
    ratio: float | None,
    wrap: Callable[[Any, int, str], Any],
) -> None:
    """Write HardNet keypoints and the matches of ``pairs`` into a database whose images
    are imported, then let COLMAP verify them.

    Args:
        keypoints: per image, (K, 4) OpenCV keypoints (x, y, size, angle).
        descriptors: image index -> its (K, 128) descriptors (read when a pair needs them).
        ratio: as :func:`~hardnet_export.applications.matching.match_descriptors`.
    """
    from hardnet_export.applications.detection import keypoints_to_frames
    from hardnet_export.applications.matching import match_descriptors

    db = pycolmap.Database.open(db_path)
    try:
        ids = {image.name: image.image_id for image in db.read_all_images()}
        for name, kps in zip(names, keypoints, strict=True):
            # Six columns, the frame each patch was cut from: some COLMAP tools fail on
            # two (colmap#2967), and COLMAP's pixel centres sit at 0.5 (OpenCV's at 0).
            db.write_keypoints(ids[name], np.ascontiguousarray(keypoints_to_frames(kps)))
        for i, j in wrap(pairs, len(pairs), "matching"):
            matches = match_descriptors(descriptors(i), descriptors(j), ratio=ratio)
            db.write_matches(ids[names[i]], ids[names[j]], matches.astype(np.uint32))
    finally:
        db.close()
    pairs_file = db_path.with_name(db_path.name + ".pairs.txt")
    try:
        pairs_file.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs))
        pycolmap.verify_matches(db_path, pairs_file, pycolmap.TwoViewGeometryOptions())
    finally:
        pairs_file.unlink(missing_ok=True)


def database_from_features(
    features: str | Path,
    image_root: str | Path,
    database: str | Path,
    *,
    names: Sequence[str] | None = None,
    pairing: str | Path = "exhaustive",
    ratio: float | str | None = "auto",
    overwrite: bool = False,
    progress: Callable[[Any, int, str], Any] | None = None,
    verbose: bool = False,
) -> DatabaseResult:
    """A verified COLMAP database from an hloc features file written by ``extract``: its
    images imported by COLMAP from ``image_root`` (the names are relative to it), their
    keypoints as six-column frames, and the matches of the chosen pairs, verified by COLMAP.

    Args:
        features: the ``.h5`` (its groups need the ``frames`` dataset ``extract`` writes).
        image_root: the folder the names are relative to.
        names: the images to take (default: every image in ``features``), sorted.
        pairing: ``exhaustive``, ``sequential``, or an hloc/COLMAP pairs file (two names a
            line) for large sets.
        ratio, overwrite, progress, verbose: as :func:`build_database`.

    Raises:
        FileNotFoundError: no features file, image root or pairs file.
        ValueError: a group without frames, a pairs file naming an image not in
            ``features``, an image COLMAP cannot read.
        OSError: the database exists (without ``overwrite``) or cannot be written.
    """
    from hardnet_export.applications.matching import HARDNET_RATIO, check_ratio

    check_ratio(ratio)
    if isinstance(ratio, str):
        ratio = HARDNET_RATIO  # auto: the rule measured for HardNet
    pycolmap = import_pycolmap()
    h5py = import_h5py()
    features, root, database = Path(features), Path(image_root), Path(database)
    if not features.is_file():
        raise MissingFileError(f"features file not found: {features}")
    if not root.is_dir():
        raise MissingFileError(f"image root not found: {root}")
    check_outputs(database, overwrite=overwrite)
    wrap = progress or (lambda items, _total, _what: items)
    with h5py.File(features, "r") as f:
        found = sorted(names if names is not None else _feature_names(f, h5py))
        missing = [n for n in found if n not in f or "frames" not in f[n]]
        if missing:
            raise InputError(
                f"{features} has no frames for {missing[0]}: a database needs each "
                "keypoint's scale and orientation, which the bulk extractor (extract) keeps"
            )
        keypoints = [np.asarray(f[n]["frames"][()], np.float64) for n in found]
    pairs = _pairs(pairing, found)
    cache: dict[int, np.ndarray] = {}

    def descriptors(i: int) -> np.ndarray:
        if i not in cache:
            if len(cache) > 64:  # an image's descriptors are read again when evicted
                cache.pop(next(iter(cache)))
            with h5py.File(features, "r") as f:
                cache[i] = np.ascontiguousarray(f[found[i]]["descriptors"][()].T)
        return cache[i]

    made = {"descriptor": "hardnet", "features": str(features.resolve()), "pairs": str(pairing),
            "ratio": ratio, "runs": runs_of(features)}  # fmt: skip
    with _fresh_database(database, overwrite) as tmp, colmap_log(pycolmap, verbose):
        _import_images(pycolmap, tmp, root, found)
        write_matched_features(pycolmap, tmp, found, keypoints, descriptors, pairs, ratio, wrap)
        record_provenance(tmp, made)
        result = _summarise(pycolmap, tmp, found, pairs, f"hardnet ({features.name})")
    result.database = database
    return result


def _feature_names(f: Any, h5py: Any) -> list[str]:
    names: list[str] = []
    f.visititems(
        lambda name, item: (
            names.append(name) if isinstance(item, h5py.Group) and "descriptors" in item else None
        )
    )
    return names


def _pairs(pairing: str | Path, names: list[str]) -> list[tuple[int, int]]:
    """Index pairs from a pairing name or a pairs file (two image names a line)."""
    if str(pairing) in PAIRINGS:
        return image_pairs(len(names), str(pairing))
    path = Path(pairing)
    if not path.is_file():
        raise MissingFileError(
            f"pairs must be {' or '.join(PAIRINGS)}, or a pairs file; no such file: {path}"
        )
    index = {name: i for i, name in enumerate(names)}
    pairs: set[tuple[int, int]] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 2:
            raise InputError(f"{path}:{number}: expected two image names, got {line.strip()!r}")
        unknown = [p for p in parts if p not in index]
        if unknown:
            raise InputError(f"{path}:{number}: {unknown[0]} is not an image of the features")
        i, j = sorted((index[parts[0]], index[parts[1]]))
        if i != j:
            pairs.add((i, j))
    if not pairs:
        raise InputError(f"{path} names no pairs of two different images")
    return sorted(pairs)


def _colmap_sift(
    pycolmap: Any,
    db_path: Path,
    folder: Path,
    names: list[str],
    max_keypoints: int,
    pairing: str,
    ratio: float | None,
) -> None:
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = max_keypoints
    pycolmap.extract_features(
        db_path, folder, names, camera_mode=pycolmap.CameraMode.AUTO,
        extraction_options=extraction,
    )  # fmt: skip
    _check_imported(pycolmap, db_path, folder, names)
    matching = pycolmap.FeatureMatchingOptions()
    # COLMAP cannot switch its ratio test off; at 1 it keeps all but exact ties.
    matching.sift.max_ratio = 1.0 if ratio is None else ratio
    if pairing == "exhaustive":
        pycolmap.match_exhaustive(db_path, matching_options=matching)
    else:
        sequential = pycolmap.SequentialPairingOptions()
        # The same pairs as the HardNet run: the next images only, no quadratic extras.
        sequential.overlap = SEQUENTIAL_OVERLAP
        sequential.quadratic_overlap = False
        pycolmap.match_sequential(db_path, matching_options=matching, pairing_options=sequential)


def _summarise(
    pycolmap: Any, db_path: Path, names: list[str], pairs: list[tuple[int, int]], descriptor: str
) -> DatabaseResult:
    db = pycolmap.Database.open(db_path)
    try:
        ids = {image.name: image.image_id for image in db.read_all_images()}
        keypoints = {n: int(db.num_keypoints_for_image(ids[n])) for n in names}
        found = []
        for i, j in pairs:
            a, b = ids[names[i]], ids[names[j]]
            matches = len(db.read_matches(a, b)) if db.exists_matches(a, b) else 0
            inliers, config = 0, "UNDEFINED"
            if db.exists_two_view_geometry(a, b):
                geometry = db.read_two_view_geometry(a, b)
                inliers = len(geometry.inlier_matches)
                config = pycolmap.TwoViewGeometryConfiguration(int(geometry.config)).name
            found.append(PairResult(names[i], names[j], matches, inliers, config))
    finally:
        db.close()
    return DatabaseResult(db_path, descriptor, list(names), keypoints, found)


def reconstruct(
    database: str | Path,
    image_dir: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    verbose: bool = False,
) -> ReconstructionResult:
    """COLMAP's incremental mapping on a verified database; models written to ``out/N``.

    Raises:
        FileNotFoundError: no database or image folder.
        OSError: ``out`` is a file, a non-empty folder without ``overwrite`` (or one holding
            the database), or cannot be written.
    """
    from hardnet_export._io import make_folder

    pycolmap = import_pycolmap()
    database, folder, out = Path(database), Path(image_dir), Path(out)
    if not database.is_file():
        raise MissingFileError(f"COLMAP database not found: {database}")
    if not folder.is_dir():
        raise MissingFileError(f"image folder not found: {folder}")
    if _check_reconstruction_folder(out, database, overwrite):
        shutil.rmtree(out)
    options = pycolmap.IncrementalPipelineOptions()
    db = pycolmap.Database.open(database)
    try:
        images = int(db.num_images())
        verified = int(db.num_verified_image_pairs())
    finally:
        db.close()
    if images < 2 or verified == 0:
        return ReconstructionResult(
            out, images, [], f"too few images to reconstruct: {images} image(s), "
            f"{verified} verified pair(s); at least 2 images and 1 verified pair are needed",
        )  # fmt: skip
    make_folder(out, "reconstruction folder")
    # 3: a failed mapping logs an error line; the result's reason says it in our words.
    with colmap_log(pycolmap, verbose, quiet_level=3):
        models = pycolmap.incremental_mapping(database, folder, out, options)
    found = [
        (int(models[k].num_reg_images()), int(models[k].num_points3D())) for k in sorted(models)
    ]
    reason = "" if found else (
        f"COLMAP registered no images: none of the {verified} verified pair(s) makes an "
        f"initial pair (at least {options.mapper.init_min_num_inliers} inliers and a "
        f"triangulation angle of {options.mapper.init_min_tri_angle:g} degrees, which COLMAP "
        "relaxes when no pair passes): too few "
        "matches, or too little baseline"
    )  # fmt: skip
    return ReconstructionResult(out, images, found, reason)
