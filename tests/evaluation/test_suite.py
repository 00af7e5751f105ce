"""``hardnet-export eval`` end to end: a real checkpoint and SIFT on dataset fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_files import run_cli, structured_patches, write_phototour
from test_eval_hpatches import write_split

from hardnet_export.model import HardNet, save_checkpoint


def _random_model_and_phototour(folder: Path, name: str) -> Path:
    """A random HardNet checkpoint and a 12-point PhotoTour set ``folder/name``."""
    torch.manual_seed(0)
    model = save_checkpoint(folder / "random.pth", HardNet())
    n = 12
    patches = structured_patches(n, 2, 64, seed=5)
    pairs = [(2 * i, 2 * i + 1) for i in range(n)] + [(2 * i, 2 * i + 3) for i in range(n - 1)]
    write_phototour(folder, name, patches, np.repeat(np.arange(n), 2), np.array(pairs))
    return model


@pytest.mark.slow
def test_eval_reports_model_beside_sift(tmp_path: Path) -> None:
    model = _random_model_and_phototour(tmp_path, "notredame")
    write_split(tmp_path / "hpatches", rows=2)
    out = tmp_path / "result.json"
    result = run_cli(
        "eval", "--model", str(model), "--no-progress", "--json", str(out), "--rootsift",
        "--data", f"phototour:{tmp_path}/notredame,hpatches:{tmp_path}/hpatches:a",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "SIFT" in result.stdout and "random.pth" in result.stdout
    report = json.loads(out.read_text())
    assert [d["data"] for d in report["datasets"]] == [
        f"phototour:{tmp_path}/notredame",
        f"hpatches:{tmp_path}/hpatches:a",
    ]
    for dataset in report["datasets"]:
        assert set(dataset["results"]) == {"random.pth", "SIFT", "RootSIFT"}
    hp = report["datasets"][1]["results"]["SIFT"]
    assert 0.0 <= hp["verification_map"] <= 1.0 and 0.0 <= hp["matching_map"] <= 1.0


@pytest.mark.slow
def test_eval_bad_arguments_give_one_sentence(tmp_path: Path) -> None:
    for args, message in [
        (["--data", "imagenet"], "unknown evaluation data 'imagenet'"),
        (["--model", str(tmp_path / "none.pth")], "does not exist"),
        (["--data", f"hpatches:{tmp_path}/nowhere"], "does not exist"),
    ]:
        result = run_cli("eval", "--no-progress", *args)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_without_sift_only_the_model_is_scored_and_its_figures_do_not_change(
    tmp_path: Path,
) -> None:
    from hardnet_export.evaluation.suite import run_evaluation

    model = _random_model_and_phototour(tmp_path, "liberty")
    data = [f"phototour:{tmp_path}/liberty"]
    both = run_evaluation(model, data, device="cpu", progress=False)
    alone = run_evaluation(model, data, device="cpu", progress=False, sift=False)
    assert list(both[0].results) == ["random.pth", "SIFT"]
    assert list(alone[0].results) == ["random.pth"]
    assert alone[0].results["random.pth"] == both[0].results["random.pth"]
