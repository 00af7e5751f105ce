"""The trainer on tiny PhotoTour fixtures (conftest): learning, exact resume, safe checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_files import structured_patches

from hardnet_export.cli import flag
from hardnet_export.model import read_checkpoint
from hardnet_export.train.config import TrainConfig
from hardnet_export.train.trainer import train


def _config(root: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=[f"phototour:{root}/liberty"], out=str(out), steps=6, batch_size=16, lr=1.0,
        num_workers=0, progress=False, log_every=1, checkpoint_every=2,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _losses(out: Path) -> list[float]:
    with open(out / "log.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).state_dict


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(phototour_root: Path, tmp_path: Path) -> None:
    final = train(_config(phototour_root, tmp_path, steps=24, dropout=0.0))
    losses = _losses(tmp_path)
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.05
    ckpt = read_checkpoint(final)
    assert ckpt.meta["step"] == 24
    assert ckpt.meta["data"] == [f"phototour:{phototour_root}/liberty"]
    assert ckpt.meta["config"]["batch_size"] == 16
    assert "optimizer" not in ckpt.extra  # the final weights carry no optimizer state


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_result(phototour_root: Path, tmp_path: Path) -> None:
    straight = train(_config(phototour_root, tmp_path / "a"))
    # Interrupted after 3 steps (checkpoint at 3), resumed; the resumed half uses a
    # data-loader worker, so worker-made batches must equal in-process ones too.
    partial = train(_config(phototour_root, tmp_path / "b", stop_after=3))
    assert partial.name == "checkpoint.pth" and read_checkpoint(partial).meta["step"] == 3
    resumed = train(_config(phototour_root, tmp_path / "b", resume=True, num_workers=1))
    for key, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[key]), key
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_resume_refuses_a_changed_recipe(phototour_root: Path, tmp_path: Path) -> None:
    train(_config(phototour_root, tmp_path, stop_after=2))
    with pytest.raises(ValueError, match="batch_size"):
        train(_config(phototour_root, tmp_path, resume=True, batch_size=8))
    with pytest.raises(FileExistsError, match="pass resume=True to continue"):
        train(_config(phototour_root, tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_config(phototour_root, tmp_path / "empty", resume=True))
    # Shorter than the run already is: the library names steps, the command line --steps.
    with pytest.raises(ValueError, match=r"at step 2 with steps=1$") as info:
        train(_config(phototour_root, tmp_path, resume=True, steps=1))
    assert info.value.render(flag).endswith("at step 2 with --steps 1")


def test_resume_compares_the_networks_width(phototour_root: Path, tmp_path: Path) -> None:
    train(_config(phototour_root, tmp_path, stop_after=2))  # width unset: 1
    # The recorded setting is None; the message said "width: None -> 0.5".
    with pytest.raises(ValueError, match=r"settings differ \(width: 1 -> 0\.5\)$"):
        train(_config(phototour_root, tmp_path, resume=True, width=0.5))
    # Width 1 is the run's network: it was refused as "width: None -> 1.0".
    final = train(_config(phototour_root, tmp_path, resume=True, width=1.0))
    assert read_checkpoint(final).meta["step"] == 6


def test_interrupted_checkpoint_write_keeps_the_previous_one(
    phototour_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(_config(phototour_root, tmp_path, stop_after=2))
    ckpt = tmp_path / "checkpoint.pth"
    before = ckpt.read_bytes()

    def save_half_then_fail(obj: object, f: object, *args: object, **kw: object) -> None:
        Path(str(f)).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        train(_config(phototour_root, tmp_path, resume=True))
    monkeypatch.undo()
    assert ckpt.read_bytes() == before
    assert read_checkpoint(ckpt).meta["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth", "log.csv"]
    final = train(_config(phototour_root, tmp_path, resume=True))
    assert read_checkpoint(final).meta["step"] == 6


def test_hpatches_and_combined_sources(tmp_path: Path) -> None:
    from fixture_files import write_hpatches_sequence

    from hardnet_export.data.hpatches import split_sequences
    from hardnet_export.train.sources import build_source

    patches = structured_patches(10, 16, 65, seed=1).reshape(10, 16, 65, 65)
    names = ("ref",) + tuple(f"{lv}{i}" for lv in "eht" for i in range(1, 6))
    for seq in split_sequences("a", "train"):
        write_hpatches_sequence(tmp_path / seq, {n: patches[:, i] for i, n in enumerate(names)})
    source = build_source([f"hpatches:{tmp_path}:a,builtin"])
    a, p = source.batch(0, 8)  # batch 0 comes from HPatches, resized 65 -> 32
    assert a.shape == p.shape == (8, 32, 32) and a.dtype == np.uint8


def test_bad_configs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="unknown training data 'imagenet'"):
        train(TrainConfig(data=["imagenet"], out=str(tmp_path), progress=False))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(TrainConfig(data=[f"phototour:{tmp_path}/no/liberty"], out=str(tmp_path)))
    with pytest.raises(ValueError, match="batch_reduce"):
        TrainConfig(batch_reduce="max")


def test_a_diverged_loss_names_the_learning_rate() -> None:
    from hardnet_export.train.trainer import TrainingDivergedError, _State

    state = _State(
        model=None,  # type: ignore[arg-type]
        optimizer=None,  # type: ignore[arg-type]
        anchor=(0, 0.0),
        step=7,
        saved=None,
        loss_sum=torch.tensor(float("nan")),
        distill_sum=torch.tensor(0.0),
        loss_count=1,
    )
    with pytest.raises(RuntimeError, match=r"diverged at step 7 \(loss nan\); lower lr$") as info:
        state.take_means(distill=False)
    assert isinstance(info.value, TrainingDivergedError)
    assert info.value.render(flag).endswith("; lower --lr")


def test_resume_with_new_length_decays_from_the_current_rate(
    phototour_root: Path, tmp_path: Path
) -> None:
    train(_config(phototour_root, tmp_path, steps=10, stop_after=4))
    final = train(_config(phototour_root, tmp_path, steps=6, resume=True))
    assert read_checkpoint(final).meta["step"] == 6
    with open(tmp_path / "log.csv") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    # 1.0 * (1 - k/10) for k < 4, then from 0.6 at step 4 down to 0 at step 6.
    assert lrs == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6, 0.3])


def test_builtin_view_change_options_and_init(phototour_root: Path, tmp_path: Path) -> None:
    from hardnet_export.train.sources import build_source

    source = build_source("builtin:rotation_deg=2:tilt=1.1")
    assert source.augment == {"rotation_deg": 2.0, "tilt": 1.1}  # type: ignore[attr-defined]
    dense = build_source("builtin:photos_per_draw=3:noise=2")
    assert dense.photos_per_draw == 3 and dense.augment == {"noise": 2.0}  # type: ignore[attr-defined]
    for bad, message in [("spin=3", "KEY one of"), ("photos_per_draw=1.5", "whole number"),
                         ("photos_per_draw=40", "photos_per_draw must be in")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            build_source(f"builtin:{bad}")
    with pytest.raises(ValueError, match="ratio"):
        build_source("builtin:tilt=0.5")
    # Fine-tuning starts from the given weights and records where they came from.
    first = train(_config(phototour_root, tmp_path / "a", steps=2))
    tuned = train(_config(phototour_root, tmp_path / "b", steps=1, lr=1e-9, init=str(first)))
    before, after = _weights(first), _weights(tuned)
    assert torch.allclose(before["features.0.weight"], after["features.0.weight"], atol=1e-6)
    config = read_checkpoint(tuned).meta["config"]
    assert config["init"] == str(first)
    assert config["init_meta"]["step"] == 2  # the lineage travels with the weights
