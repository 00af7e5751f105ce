"""Features in hloc's ``features.h5`` layout, so hloc's matchers and COLMAP import read them.

One HDF5 group per image name holding ``keypoints`` (N, 2) float32 (x, y in OpenCV's
convention: the first pixel's centre is (0, 0); hloc adds COLMAP's 0.5 when it imports),
``descriptors`` (128, N) float32 (hloc stores descriptors column-wise), ``scores`` (N,)
float32 (the detector's response; 1 for given keypoints) and ``image_size`` (2,) as [W, H].
A name with ``/`` becomes nested groups, as in hloc. Files are appended to: an image whose
group is complete is skipped (a run can be resumed), and a group that a killed run left
incomplete is written again. h5py comes with the ``sfm`` extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.applications.features import (
    ImageFeatures,
    extract_features,
    model_record,
)
from hardnet_export.errors import InputError, MissingDependencyError, OutputIsFolderError
from hardnet_export.runtime.base import Describer

DATASETS = ("keypoints", "descriptors", "scores", "image_size")


def import_h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError(
            "writing hloc's features.h5 needs h5py: pip install 'hardnet-export[sfm]'"
        ) from exc
    return h5py


def image_key(path: str | Path, root: str | Path | None = None) -> str:
    """The group name of an image: its path relative to ``root`` (hloc names images by
    their path relative to the image folder), or as given without ``root``; ``/``
    separators, no leading ``/``.

    Raises:
        ValueError: an empty name, or an image outside ``root``.
    """
    if root is not None:
        try:
            path = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
        except ValueError:
            raise InputError(f"{path} is not inside the image root {root}") from None
    key = Path(path).as_posix().lstrip("/")
    if not key or key == ".":
        raise InputError(f"cannot name an HDF5 group after the image path {str(path)!r}")
    return key


def complete_images(path: str | Path) -> set[str]:
    """Names of the images whose four datasets are all in ``path`` (empty when no file).

    Raises:
        OutputIsFolderError: ``path`` is a folder.
        InputError: ``path`` is a file but not one h5py reads (or may append to).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputIsFolderError(f"cannot write {path}: it is a folder; give an .h5 file name")
    if not path.exists():
        return set()
    h5py = import_h5py()
    found: set[str] = set()
    try:
        # A file that can be read but not appended to fails here, before any image is
        # described (opened for writing, as the appends will, but without touching it).
        with open(path, "r+b"):
            pass
        with h5py.File(path, "r") as f:

            def visit(name: str, item: Any) -> None:
                if isinstance(item, h5py.Group) and all(d in item for d in DATASETS):
                    found.add(name)

            f.visititems(visit)
    except OSError as exc:
        raise InputError(
            f"{path} is not an HDF5 file h5py can append to ({_reason(exc)})"
        ) from None
    return found


def _reason(exc: OSError) -> str:
    """h5py's reason in one line: the system's words where it has an errno (its own text
    then spans lines and repeats the path, a timestamp and a buffer address)."""
    if exc.errno:
        return os.strerror(exc.errno)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def write_image_features(
    path: str | Path,
    name: str,
    keypoints: np.ndarray,
    descriptors: np.ndarray,
    scores: np.ndarray,
    image_size: tuple[int, int],
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Add (or replace) one image's group in hloc's layout, with ``attrs`` on the group,
    and flush it to disk.

    Raises:
        ValueError: keypoints, descriptors and scores disagree in N, or are not 2-D / 1-D.

    Shape:
        - keypoints: (N, 2+) float (only x, y are kept); descriptors: (N, D); scores: (N,).
        - image_size: (W, H).
    """
    kps = np.asarray(keypoints, np.float32)
    desc = np.asarray(descriptors, np.float32)
    score = np.asarray(scores, np.float32)
    if kps.ndim != 2 or kps.shape[1] < 2 or desc.ndim != 2 or len(desc) != len(kps):
        raise InputError(
            f"features of {name}: expected (N, 2) keypoints and (N, D) descriptors, got "
            f"{kps.shape} and {desc.shape}"
        )
    if score.shape != (len(kps),):
        raise InputError(f"features of {name}: expected ({len(kps)},) scores, got {score.shape}")
    h5py = import_h5py()
    with h5py.File(path, "a") as f:
        write_group(f, name, kps, desc, score, image_size, attrs)
        f.flush()


def write_group(
    f: Any,
    name: str,
    keypoints: np.ndarray,
    descriptors: np.ndarray,
    scores: np.ndarray,
    image_size: tuple[int, int],
    attrs: Mapping[str, Any] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Add (or replace) one image's group in an open ``h5py.File``, in hloc's layout, with
    ``attrs`` on the group and ``extra`` datasets beside hloc's (hloc reads the datasets it
    knows and passes the others on untouched). The caller checked the shapes
    (:func:`write_image_features` does)."""
    if name in f:
        del f[name]  # an incomplete group from a killed run, or a changed image
    group = f.create_group(name)
    group.create_dataset("keypoints", data=np.ascontiguousarray(keypoints[:, :2], np.float32))
    group.create_dataset("descriptors", data=np.ascontiguousarray(descriptors.T, np.float32))
    group.create_dataset("scores", data=np.asarray(scores, np.float32))
    group.create_dataset("image_size", data=np.array(image_size, np.int64))
    for key, data in (extra or {}).items():
        group.create_dataset(key, data=data)
    for key, value in (attrs or {}).items():
        group.attrs[key] = value


#: The root attribute of a features file ``extract`` wrote that records every run (settings,
#: model, counts), as JSON.
RUNS_ATTR = "hardnet_export_runs"


def runs_of(path: Path) -> list[dict[str, Any]]:
    """The run record of a features file written by ``extract`` (empty for others)."""
    h5py = import_h5py()
    with h5py.File(path, "r") as f:
        return list(json.loads(f.attrs.get(RUNS_ATTR, "[]")))


def pending_images(
    path: str | Path, images: Sequence[str | Path], root: str | Path | None = None
) -> list[str | Path]:
    """The ``images`` whose groups are not complete in ``path`` yet (a resumed run skips the
    rest), in their order; names as :func:`image_key` with ``root``.

    Raises:
        OutputIsFolderError, InputError: as :func:`complete_images` and :func:`image_key`.
    """
    done = complete_images(path)
    return [image for image in images if image_key(image, root) not in done]


def write_features(
    path: str | Path,
    describer: Describer,
    images: Sequence[str | Path],
    root: str | Path | None = None,
    **options: Any,
) -> Iterator[tuple[str | Path, ImageFeatures]]:
    """Describe ``images`` and add each one's group to hloc's ``features.h5`` at ``path`` as
    soon as it is described (a killed run keeps what it finished), yielding what was written.
    Each group's ``model`` attribute holds the :func:`model_record` of ``describer`` (JSON
    text): a resumed run may have used another model, or another path of the same one.

    The images are read, detected and cut in a helper thread while the previous one is
    inferred (:func:`~hardnet_export.applications.features.extract_features`, which takes
    ``options``: detector, max_keypoints, keypoints, out_of_bounds, pipeline, ...). Groups
    are named by :func:`image_key` with ``root``.

    Raises:
        MissingDependencyError: no h5py.
        ValueError, FileNotFoundError: as ``extract_features``.
    """
    import_h5py()
    names = [image_key(image, root) for image in images]  # a bad name fails before any work
    found = extract_features(describer, images, **options)
    attrs = {"model": json.dumps(model_record(describer), sort_keys=True)}
    for image, name, features in zip(images, names, found, strict=True):
        write_image_features(
            path,
            name,
            features.keypoints,
            features.descriptors,
            features.scores,
            features.image_size,
            attrs,
        )
        yield image, features
