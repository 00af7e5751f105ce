"""Distillation: the term by hand, a student of another width trained with a teacher, and the
teacher recorded in the checkpoints, the log, the export, and kept on resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from hardnet_export._io import sha256_file
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.model import HardNet, load_model, read_checkpoint, save_checkpoint
from hardnet_export.shipped import SHIPPED_WEIGHTS
from hardnet_export.train.config import TrainConfig
from hardnet_export.train.losses import distillation_loss, hardnet_loss
from hardnet_export.train.trainer import train

STUDENT_A = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
STUDENT_P = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_descriptor_term_by_hand() -> None:
    teacher_a = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    teacher_p = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    # Squared distances per patch: 0.4^2 + 0.8^2 = 0.8, 0, 0, 2^2 = 4; their mean is 1.2.
    got = distillation_loss(STUDENT_A, STUDENT_P, teacher_a, teacher_p, kind="descriptors")
    assert float(got) == pytest.approx(1.2, abs=1e-6)


def test_distance_term_by_hand() -> None:
    # The teacher pairs each anchor with the other positive: its distance matrix is the
    # student's with the columns swapped.
    teacher_a = STUDENT_A.clone()
    teacher_p = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    near = math.sqrt(0.0 + 1e-6) + 1e-8  # distance_matrix's epsilons
    far = math.sqrt(2.0 + 1e-6) + 1e-8
    want = (4 * (far - near) ** 2) / 4
    got = distillation_loss(STUDENT_A, STUDENT_P, teacher_a, teacher_p, kind="distances")
    assert float(got) == pytest.approx(want, rel=1e-5)
    same = distillation_loss(STUDENT_A, STUDENT_P, STUDENT_A, STUDENT_P, kind="distances")
    assert float(same) == 0.0


def test_the_term_adds_to_the_hardnet_loss_with_its_weight() -> None:
    teacher_a = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    teacher_p = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    base = hardnet_loss(STUDENT_A, STUDENT_P)
    total = base + 0.5 * distillation_loss(STUDENT_A, STUDENT_P, teacher_a, teacher_p)
    assert float(total) == pytest.approx(float(base) + 0.6, abs=1e-6)


def test_bad_kinds_and_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="distill kind must be one of"):
        distillation_loss(STUDENT_A, STUDENT_P, STUDENT_A, STUDENT_P, kind="kl")
    with pytest.raises(ValueError, match=r"same \(N, D\).*\(2, 2\), \(2, 2\), \(2, 3\)"):
        distillation_loss(STUDENT_A, STUDENT_P, STUDENT_A, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="distill_kind must be one of"):
        TrainConfig(distill_kind="kl")
    with pytest.raises(ValueError, match="width must be > 0"):
        TrainConfig(width=0.0)
    # Without a teacher there is no distillation term: setting it up was silently ignored.
    with pytest.raises(ValueError, match="distill_weight 2.0 sets up a distillation term, wh"):
        TrainConfig(distill_weight=2.0)
    with pytest.raises(ValueError, match="give teacher too, or leave distill_kind at 'desc"):
        TrainConfig(distill_kind="distances")
    assert TrainConfig(teacher="hardnet", distill_weight=2.0).distill_weight == 2.0


def _config(out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=["builtin"], out=str(out), steps=3, batch_size=16, lr=1.0, num_workers=0,
        progress=False, log_every=1, checkpoint_every=1, width=0.5, teacher="hardnet",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind", ["descriptors", "distances"])
def test_a_student_trained_with_a_teacher_records_it(tmp_path: Path, kind: str) -> None:
    final = train(_config(tmp_path / "run", distill_kind=kind))
    ckpt = read_checkpoint(final)
    assert ckpt.meta["width"] == 0.5 and load_model(final).width == 0.5
    config = ckpt.meta["config"]
    assert (config["teacher"], config["distill_kind"], config["distill_weight"]) == (
        "hardnet", kind, 1.0,
    )  # fmt: skip
    teacher = config["teacher_provenance"]
    assert teacher["name"] == "hardnet" and teacher["width"] == 1.0
    assert teacher["sha256"] == sha256_file(SHIPPED_WEIGHTS)
    # No install folder in the record: the file name and hash identify a registered teacher.
    assert teacher["file"] == SHIPPED_WEIGHTS.name
    rows = _log(tmp_path / "run")
    assert len(rows) == 3 and all(float(row["distill"]) > 0 for row in rows)
    assert all(float(row["loss"]) > float(row["distill"]) for row in rows)  # weight 1 + triplet
    if kind == "distances":
        return
    # The export carries the teacher in its provenance.
    from hardnet_export.export.onnx import export_onnx

    meta = read_metadata(export_onnx(final, tmp_path / "s.onnx", parity=False))
    assert meta.width == 0.5 and meta.model_name is None
    assert meta.teacher is not None and meta.teacher["sha256"] == teacher["sha256"]


def test_resume_keeps_the_teacher(tmp_path: Path) -> None:
    # A teacher given by path (a width-0.25 random network) to a width-0.5 student.
    torch.manual_seed(1)
    teacher = save_checkpoint(tmp_path / "teacher.pth", HardNet(width=0.25).eval())
    straight = train(_config(tmp_path / "a", steps=4, teacher=str(teacher)))
    partial = train(_config(tmp_path / "b", steps=4, teacher=str(teacher), stop_after=2))
    record = read_checkpoint(partial).meta["config"]["teacher_provenance"]
    assert record["width"] == 0.25 and record["file"] == str(teacher) and record["name"] is None
    with pytest.raises(ValueError, match="teacher"):
        train(_config(tmp_path / "b", steps=4, teacher=None, resume=True))
    resumed = train(_config(tmp_path / "b", steps=4, teacher=str(teacher), resume=True))
    meta = read_checkpoint(resumed).meta
    assert meta["config"]["teacher_provenance"]["sha256"] == sha256_file(teacher)
    assert _log(tmp_path / "a") == [
        {**row, "pairs_per_s": a["pairs_per_s"], "elapsed_s": a["elapsed_s"]}
        for row, a in zip(_log(tmp_path / "b"), _log(tmp_path / "a"), strict=True)
    ]
    for key, value in read_checkpoint(straight).state_dict.items():
        assert torch.equal(value, read_checkpoint(resumed).state_dict[key]), key
    # Another file under the teacher's path: the run would no longer be the one it was.
    partial = train(_config(tmp_path / "c", steps=4, teacher=str(teacher), stop_after=2))
    save_checkpoint(teacher, HardNet(width=0.25).eval())
    with pytest.raises(ValueError, match="is another file now"):
        train(_config(tmp_path / "c", steps=4, teacher=str(teacher), resume=True))


def test_width_follows_init_and_must_agree(tmp_path: Path) -> None:
    torch.manual_seed(2)
    half = save_checkpoint(tmp_path / "half.pth", HardNet(width=0.5).eval())
    tuned = train(_config(tmp_path / "t", steps=1, width=None, teacher=None, init=str(half)))
    assert read_checkpoint(tuned).meta["width"] == 0.5
    with pytest.raises(ValueError, match=r"width 0.5 network, but width 1 was asked for") as info:
        train(_config(tmp_path / "u", steps=1, width=1.0, teacher=None, init=str(half)))
    assert str(info.value).startswith(f"init={str(half)!r} is a width 0.5 network")
    assert str(info.value).endswith("pass width=0.5 or drop it")
    from hardnet_export.cli import flag

    assert info.value.render(flag).startswith(f"--init {half} is a width 0.5 network")
    assert info.value.render(flag).endswith("pass --width 0.5 or drop it")
    assert not (tmp_path / "u").exists()
    # A registered name is an --init too, and its lineage is recorded.
    named = train(_config(tmp_path / "v", steps=1, width=None, teacher=None, init="hardnet"))
    config = read_checkpoint(named).meta["config"]
    shipped_step = read_checkpoint(SHIPPED_WEIGHTS).meta["step"]
    assert read_checkpoint(named).meta["width"] == 1.0
    assert config["init_meta"]["step"] == shipped_step


def test_layout_follows_init_and_must_agree(tmp_path: Path) -> None:
    torch.manual_seed(3)
    run = train(_config(tmp_path / "s", steps=1, width=None, teacher=None, layout="strided"))
    assert read_checkpoint(run).meta["layout"] == "strided"
    assert load_model(run).layout == "strided"
    tuned = train(_config(tmp_path / "t", steps=1, width=None, teacher=None, init=str(run)))
    assert read_checkpoint(tuned).meta["layout"] == "strided"
    with pytest.raises(ValueError, match=r"is a strided network, but layout l2net was") as info:
        train(_config(tmp_path / "u", steps=1, width=None, teacher=None, init=str(run),
                      layout="l2net"))  # fmt: skip
    assert str(info.value).endswith("pass layout='strided' or drop it")
    assert not (tmp_path / "u").exists()
    # Resuming asks for the run's own layout.
    with pytest.raises(ValueError, match=r"the run's settings differ \(.*layout: strided -> l2net"):
        train(_config(tmp_path / "s", steps=2, width=None, teacher=None, resume=True))
    with pytest.raises(ValueError, match="layout must be one of l2net, strided"):
        TrainConfig(layout="wide")
    # The export records it, and runs it as torch does.
    from hardnet_export.export.onnx import export_onnx

    graph = export_onnx(run, tmp_path / "s.onnx")
    assert read_metadata(graph).layout == "strided"
