"""The one data-source grammar: every form, and the errors that list the forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixture_files import write_hpatches_sequence, write_phototour

from hardnet_export.data.sources import KINDS, parse_source, parse_sources, split_specs
from hardnet_export.errors import InputError, MissingFileError


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    write_phototour(
        root, "liberty", rng.integers(0, 256, (8, 64, 64), np.uint8), np.repeat([0, 1, 2, 3], 2)
    )
    stack = {"ref": rng.integers(0, 256, (65 * 3, 65), np.uint8)}
    write_hpatches_sequence(root / "hpatches" / "v_boat", stack)
    np.save(root / "patches.npy", rng.integers(0, 256, (4, 32, 32), np.uint8))
    return root


def test_every_form(datasets: Path) -> None:
    assert parse_source("builtin").kind == "builtin"
    spec = parse_source("builtin:rotation_deg=5:tilt=1.2")
    assert spec.options == (("rotation_deg", "5"), ("tilt", "1.2"))
    assert (
        parse_source("stereo").kind == "stereo"
        and parse_source("stereo-hard").kind == "stereo-hard"
    )
    tour = parse_source(f"phototour:{datasets}/liberty")
    assert (tour.kind, tour.root, tour.name, tour.pairs_file) == (
        "phototour",
        datasets,
        "liberty",
        None,
    )
    tour = parse_source(f"phototour:{datasets}/liberty:m50_100000_100000_0.txt")
    assert tour.pairs_file == "m50_100000_100000_0.txt" and tour.name == "liberty"
    hp = parse_source(f"hpatches:{datasets}/hpatches")
    assert (hp.kind, hp.path, hp.split) == ("hpatches", datasets / "hpatches", "a")
    assert parse_source(f"hpatches:{datasets}/hpatches:view").split == "view"
    # Plain paths are recognised by what they hold.
    assert parse_source(str(datasets / "patches.npy")).kind == "npy"
    assert parse_source(str(datasets / "liberty")).kind == "phototour"
    assert parse_source(str(datasets / "hpatches")).kind == "hpatches"
    assert split_specs(["builtin,stereo", " stereo-hard "]) == ["builtin", "stereo", "stereo-hard"]
    assert [s.kind for s in parse_sources("builtin, stereo")] == ["builtin", "stereo"]


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (
            "imagenet",
            InputError,
            r"unknown data 'imagenet': expected builtin\[:KEY=VALUE\.\.\.\], stereo",
        ),
        ("builtin:tilt", InputError, r"expected builtin\[:KEY=VALUE\.\.\.\], got 'tilt'"),
        (
            "phototour:/no/such/root/liberty",
            MissingFileError,
            "folder /no/such/root does not exist",
        ),
        (
            "hpatches:/no/such/hpatches:a",
            MissingFileError,
            "HPatches folder /no/such/hpatches does not exist",
        ),
        ("/no/such/patches.npy", MissingFileError, "file not found"),
        ("/no/such/folder/", MissingFileError, "no such file or folder"),
    ],
)
def test_errors_name_the_spec(spec: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        parse_source(spec)


def test_a_stage_lists_only_the_forms_it_takes(datasets: Path, tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"training data 'stereo' is stereo data.*expected builtin"
    ):
        parse_source(
            "stereo", allowed=("builtin", "phototour", "hpatches"), purpose="training data"
        )
    with pytest.raises(InputError) as info:
        parse_source("mnist", allowed=("builtin", "npy"), purpose="calibration")
    assert "PATCHES.npy" in str(info.value) and "stereo" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither PhotoTour .* nor HPatches"):
        parse_source(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="no data given"):
        parse_sources(" , ")
    assert set(KINDS) == {"builtin", "stereo", "stereo-hard", "phototour", "hpatches", "npy"}


def test_train_eval_and_calibration_share_the_grammar(datasets: Path) -> None:
    from hardnet_export.calibration.dataset import make_calibration_set
    from hardnet_export.evaluation.suite import run_evaluation
    from hardnet_export.train.sources import parse_source as training_source

    assert training_source(str(datasets / "liberty")).spec == str(datasets / "liberty")
    calibration = make_calibration_set(f"phototour:{datasets}/liberty", size=4)
    assert calibration.patches.shape == (4, 32, 32)
    for run, args in (
        (training_source, ("stereo",)),
        (make_calibration_set, ("stereo-hard",)),
        (run_evaluation, (lambda b: b, [str(datasets / "patches.npy")])),
    ):
        with pytest.raises(InputError, match="which this stage cannot use"):
            run(*args)
