"""`colmap`: a real COLMAP database from HardNet matches, verified by COLMAP itself.

A built-in photo and a copy warped by a known homography are the two images: the matches
COLMAP keeps as inliers must land where the true homography sends them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from hardnet_export import runtime
from hardnet_export._io import sha256_file
from hardnet_export.applications.colmap import build_database, image_pairs, read_provenance
from hardnet_export.applications.detection import (
    detect_colmap_frames,
    detect_keypoints,
    keypoints_to_frames,
)
from hardnet_export.applications.features import describe_images
from hardnet_export.applications.images import read_image
from hardnet_export.applications.matching import (
    AUTO,
    OpenCVSift,
    auto_ratio,
    match_descriptors,
    match_images,
    parse_ratio,
)
from hardnet_export.cli import app, default
from hardnet_export.errors import InputError, MissingFileError, OutputError
from hardnet_export.shipped import SHIPPED_ONNX

pycolmap = pytest.importorskip("pycolmap")
pytest.importorskip("skimage")

H_TRUE = np.array([[0.92, 0.08, 18.0], [-0.06, 0.95, 26.0], [1e-4, 5e-5, 1.0]])


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hardnet_export.data.builtin import load_photo

    folder = tmp_path_factory.mktemp("colmap-images")
    photo = load_photo("astronaut")
    warped = cv2.warpPerspective(photo, H_TRUE, (photo.shape[1], photo.shape[0]))
    assert cv2.imwrite(str(folder / "a.png"), photo)
    assert cv2.imwrite(str(folder / "b.png"), warped)
    return folder


def test_verified_inliers_follow_the_true_homography(pair_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "hardnet.db"
    describer = runtime.load(SHIPPED_ONNX, device="cpu")
    result = build_database(pair_dir, db_path, describer, max_keypoints=600)
    assert result.images == ["a.png", "b.png"]
    (pair,) = result.pairs
    assert pair.inliers >= 100 and pair.inliers <= pair.matches
    assert sorted(tmp_path.iterdir()) == [db_path]  # no temporary or pairs file left

    db = pycolmap.Database.open(db_path)
    try:
        images = {image.name: image.image_id for image in db.read_all_images()}
        assert db.num_images() == 2 and db.num_cameras() >= 1
        a, b = images["a.png"], images["b.png"]
        assert db.num_keypoints() == sum(result.keypoints.values())
        # colmap-sift, the default: 600 locations, some with a second orientation.
        assert 600 <= db.num_keypoints_for_image(a) <= 1200
        assert len(db.read_matches(a, b)) == pair.matches
        assert db.num_verified_image_pairs() == 1
        inliers = db.read_two_view_geometry(a, b).inlier_matches
        kps_a = db.read_keypoints(a)[:, :2] - 0.5  # back to OpenCV's pixel centres
        kps_b = db.read_keypoints(b)[:, :2] - 0.5
    finally:
        db.close()
    assert len(inliers) == pair.inliers
    # The database says what made its descriptors; COLMAP read it above regardless.
    made = read_provenance(db_path)
    assert made is not None and made["descriptor"] == "hardnet"
    assert made["detector"] == "colmap-sift" and made["max_keypoints"] == 600
    assert made["model"]["sha256"] == sha256_file(SHIPPED_ONNX)
    assert made["model"]["choice"] == describer.choice.summary()
    mapped = cv2.perspectiveTransform(
        kps_a[inliers[:, 0]].astype(np.float64).reshape(-1, 1, 2), H_TRUE
    ).reshape(-1, 2)
    error = np.linalg.norm(mapped - kps_b[inliers[:, 1]], axis=1)
    assert (error < 3.0).mean() > 0.9, np.percentile(error, [50, 90])

    # An existing database is refused, and left as it was.
    before = db_path.read_bytes()
    with pytest.raises(OutputError, match="exists; overwrite=True replaces it"):
        build_database(pair_dir, db_path, describer, max_keypoints=600)
    assert db_path.read_bytes() == before


def test_bad_image_folders_give_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="image folder not found: .*nowhere"):
        build_database(tmp_path / "nowhere", tmp_path / "x.db", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no images in .*empty: expected files ending in \.jpg"):
        build_database(tmp_path / "empty", tmp_path / "x.db", None)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png is not an image OpenCV can read"):
        build_database(bad, tmp_path / "x.db", None)
    assert not (tmp_path / "x.db").exists()

    cli = CliRunner().invoke(app, ["colmap", str(bad), "--database", str(tmp_path / "y.db")])
    assert cli.exit_code != 0 and not (tmp_path / "y.db").exists()


def test_every_output_is_checked_before_any_work(pair_dir: Path, tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "old.txt").write_text("an earlier reconstruction")
    db = tmp_path / "hardnet.db"
    common = [str(pair_dir), "--max-keypoints", "200", "--device", "cpu"]
    refusals = [
        # All the work was done and the database written before "is not empty"; the rerun
        # was then refused because the database existed.
        (["--database", str(db), "--reconstruct", str(sparse)], f"{sparse} is not empty"),
        (["--database", str(db), "--reconstruct", "/proc/sparse"], "nothing can be created in"),
        (["--database", str(sparse / "h.db"), "--reconstruct", str(sparse), "--overwrite"],
         "is inside the reconstruction folder"),
        (["--database", str(tmp_path), "--reconstruct", str(tmp_path / "new")], "it is a folder"),
    ]  # fmt: skip
    for args, message in refusals:
        cli = CliRunner().invoke(app, ["colmap", *common, *args])
        assert isinstance(cli.exception, OutputError) and message in str(cli.exception), cli.output
        assert not db.exists() and not (sparse / "h.db").exists()
        assert [p.name for p in sparse.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparse"]


def test_keypoints_read_back_as_six_column_frames(pair_dir: Path, tmp_path: Path) -> None:
    describer = runtime.load(SHIPPED_ONNX, device="cpu")
    for detector in ("colmap-sift", "sift"):
        db_path = tmp_path / f"{detector}.db"
        build_database(pair_dir, db_path, describer, detector=detector, max_keypoints=300)
        db = pycolmap.Database.open(db_path)
        try:
            written = {i.name: db.read_keypoints(i.image_id) for i in db.read_all_images()}
        finally:
            db.close()
        for name, frames in written.items():
            image = read_image(pair_dir / name)
            assert frames.shape[1] == 6, (detector, frames.shape)
            if detector == "colmap-sift":
                want = detect_colmap_frames(image, max_keypoints=300)
            else:
                found = detect_keypoints(image, detector="sift", max_keypoints=300)
                want = keypoints_to_frames(np.array([[*k.pt, k.size, k.angle] for k in found]))
                # A rotation times OpenCV's size / 2: no shear, no reflection.
                np.testing.assert_allclose(frames[:, 2], frames[:, 5], atol=1e-4)
                np.testing.assert_allclose(frames[:, 3], -frames[:, 4], atol=1e-4)
            np.testing.assert_allclose(frames, want, atol=1e-3)


def test_defaults_are_the_measured_rule(pair_dir: Path, tmp_path: Path) -> None:
    describer = runtime.load(SHIPPED_ONNX, device="cpu")
    assert default(build_database, "detector") == "colmap-sift"
    assert default(build_database, "ratio") == AUTO == default(match_images, "ratio")
    # HardNet: mutual nearest neighbours only; SIFT (OpenCV's, or COLMAP's: None): Lowe's.
    assert auto_ratio(describer) is None
    assert auto_ratio(OpenCVSift()) == 0.8 and auto_ratio(None) == 0.8
    # --ratio as the command line writes it.
    assert parse_ratio("auto") == AUTO and parse_ratio("None") is None
    assert parse_ratio("0.9") == 0.9
    for bad, message in (
        ("abc", r"number in \(0, 1\], none or auto, got 'abc'"),
        ("1.5", "ratio must be <= 1.0"),
        ("0", "ratio must be > 0.0"),
    ):
        with pytest.raises(InputError, match=message):
            parse_ratio(bad)

    db_path = tmp_path / "hardnet.db"
    build_database(pair_dir, db_path, describer, max_keypoints=300)
    a, b = (
        descriptors
        for _kps, descriptors in describe_images(
            describer, [pair_dir / "a.png", pair_dir / "b.png"], detector="colmap-sift",
            max_keypoints=300,
        )
    )  # fmt: skip
    db = pycolmap.Database.open(db_path)
    try:
        ids = {i.name: i.image_id for i in db.read_all_images()}
        written = db.read_matches(ids["a.png"], ids["b.png"])
    finally:
        db.close()
    np.testing.assert_array_equal(written, match_descriptors(a, b, ratio=None))
    assert len(written) > len(match_descriptors(a, b, ratio=0.8))  # the old default


def test_pairings() -> None:
    assert image_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    assert image_pairs(13, "sequential")[:2] == [(0, 1), (0, 2)]
    assert (0, 11) not in image_pairs(13, "sequential") and (0, 10) in image_pairs(13, "sequential")
    with pytest.raises(InputError, match="pairs"):
        image_pairs(3, "vocab")


def test_extract_database_matches_the_colmap_command(pair_dir: Path, tmp_path: Path) -> None:
    from hardnet_export.applications.colmap import database_from_features
    from hardnet_export.applications.extract import extract

    eighth = runtime.load("hardnet-eighth", backend="onnxruntime")
    options = {"model": "hardnet-eighth", "backend": "onnxruntime", "max_keypoints": 400}
    features = tmp_path / "f.h5"
    extract(pair_dir, features, detector="colmap-sift", **options)
    from hardnet_export.applications.extract import runs_of

    assert runs_of(features)[-1]["patch_support"] == {"per_size": 6.0, "min_px": 24.0}
    from_features = database_from_features(features, pair_dir, tmp_path / "x.db")
    built = build_database(pair_dir, tmp_path / "c.db", eighth, max_keypoints=400)
    # The same frames, descriptors and rule: the same matches, verified alike.
    assert from_features.keypoints == built.keypoints
    assert [(p.matches, p.inliers) for p in from_features.pairs] == [
        (p.matches, p.inliers) for p in built.pairs
    ]
    db = pycolmap.Database.open(tmp_path / "x.db")
    try:
        assert {db.read_keypoints(i.image_id).shape[1] for i in db.read_all_images()} == {6}
    finally:
        db.close()
    made = read_provenance(tmp_path / "x.db")
    assert made is not None and made["features"] == str(features.resolve())
    assert made["runs"] == runs_of(features) and made["runs"][-1]["model"]["backend"]
    assert read_provenance(tmp_path / "c.db")["model"]["backend"] == "onnxruntime"  # type: ignore[index]

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a.png b.png\nb.png a.png\n")
    listed = database_from_features(features, pair_dir, tmp_path / "y.db", pairing=pairs)
    assert [(p.image1, p.image2, p.matches) for p in listed.pairs] == [
        (p.image1, p.image2, p.matches) for p in from_features.pairs
    ]
    pairs.write_text("a.png c.png\n")
    with pytest.raises(InputError, match=r"pairs.txt:1: c.png is not an image of the features"):
        database_from_features(features, pair_dir, tmp_path / "z.db", pairing=pairs)
    assert not (tmp_path / "z.db").exists()


def test_a_colmap_sift_database_says_so_and_a_foreign_one_says_nothing(
    pair_dir: Path, tmp_path: Path
) -> None:
    import sqlite3

    build_database(pair_dir, tmp_path / "sift.db", None, max_keypoints=200)
    made = read_provenance(tmp_path / "sift.db")
    assert made is not None and made["descriptor"] == "colmap-sift" and "model" not in made
    assert made["max_keypoints"] == 200 and made["version"]
    sqlite3.connect(tmp_path / "foreign.db").close()
    assert read_provenance(tmp_path / "foreign.db") is None
    (tmp_path / "junk.db").write_bytes(b"not a database, but long enough to be read" * 4)
    with pytest.raises(InputError, match=r"junk\.db is not an SQLite database"):
        read_provenance(tmp_path / "junk.db")
    with pytest.raises(FileNotFoundError, match="COLMAP database not found: .*none.db"):
        read_provenance(tmp_path / "none.db")
