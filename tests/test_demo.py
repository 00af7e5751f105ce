from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hardnet_export.demo import DemoConfig


@pytest.mark.slow
def test_demo_end_to_end_on_cpu(tmp_path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--train-steps", "2", "--pairs", "60"]
    args += ["--batch-sizes", "1,4", "--duration-s", "0.02", "--device", "cpu"]
    result = subprocess.run(
        [sys.executable, "-m", "hardnet_export", *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())

    status = {stage["name"]: stage["status"] for stage in report["stages"]}
    assert status.pop("TensorRT engines") in ("ok", "skipped")
    assert set(status.values()) == {"ok"}, status
    for name in ("fp32", "fp16", "int8-tensorrt", "int8-cpu"):
        assert (out / f"model.{name}.onnx").is_file()

    rows = {(r["data"], r["descriptor"]): r for r in report["accuracy"]}
    for data in ("built-in validation", "motorcycle stereo"):
        for descriptor in ("OpenCV SIFT", "pytorch", "onnx fp32", "onnx int8-cpu"):
            row = rows[(data, descriptor)]
            assert 0 <= row["fpr95_pct"] <= 100 and 0 <= row["nn_accuracy_pct"] <= 100
        # Export changes nothing a descriptor comparison can see.
        assert (
            rows[(data, "onnx fp32")]["nn_accuracy_pct"]
            == rows[(data, "pytorch")]["nn_accuracy_pct"]
        )

    speed = {(r["artifact"], r["batch"]) for r in report["speed"]}
    assert {batch for _, batch in speed} == {1, 4}
    assert all(r["patches_per_s"] > 0 for r in report["speed"])
    (frame,) = report["frame_speed"]
    assert frame["artifact"] == "model.fp32.onnx" and 0 < frame["keypoints"] <= 500
    assert frame["total_p50_ms"] > 0 and frame["vs_sift"] > 0
    assert json.loads((out / "bench-frame.json").read_text())["format"].endswith("frame/1")
    assert {m["descriptor"] for m in report["matching"]} == {"hardnet", "sift"}
    for name in ("report.md", "bench.json", "bench.png", "matches_hardnet.png", "matches_sift.png"):
        assert (out / name).stat().st_size > 0
    for png in ("bench.png", "bench-frame.png", "matches_hardnet.png", "matches_sift.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "OpenCV SIFT" in markdown and "![hardnet matches](matches_hardnet.png)" in markdown
    assert "OpenCV SIFT" in result.stdout  # the summary tables are printed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_steps": -1}, "train_steps"),
        ({"device": "tpu"}, "device"),
        ({"pairs": 3}, "pairs"),
        ({"batch_sizes": ()}, "batch sizes"),
    ],
)
def test_bad_config(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DemoConfig(**kwargs)


@pytest.mark.slow
def test_bad_cli_argument_is_one_sentence(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hardnet_export", "demo", "--out", str(tmp_path), "--device", "tpu"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "device must be auto, cpu or cuda" in result.stderr
    assert "Traceback" not in result.stderr


class _RunsCode:
    """Unpickling this calls os.getcwd: harmless, but code the file names all the same."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.getcwd, ())


@pytest.mark.slow
def test_a_bad_model_fails_the_model_stage_in_one_line_and_leaves_nothing(tmp_path) -> None:
    import torch

    from hardnet_export.demo import run_demo
    from hardnet_export.model import HardNet, save_checkpoint

    torch.save({"state_dict": {}, "payload": _RunsCode()}, tmp_path / "evil.pth")
    # The Model stage said "ok"; each later stage then failed with a traceback (91 lines).
    result = subprocess.run(
        [sys.executable, "-m", "hardnet_export", "demo", "--model", str(tmp_path / "evil.pth"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "[1/7] Model" in lines[0], result.stderr
    assert lines[1].startswith(f"error: {tmp_path / 'evil.pth'} is not a safe checkpoint")
    assert not (tmp_path / "out").exists()

    model = HardNet()
    with torch.no_grad():
        model.features[0].weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pth", model)
    (tmp_path / "file").write_text("x")
    cases = [
        ("nan.pth", "out", "nan.pth holds NaN or inf"),
        ("missing.pth", "out", "model not found"),  # left an empty out folder
        ("nan.pth", "file", "cannot use .*file as the demo output folder: it is a file"),
    ]
    for model_file, out, message in cases:
        config = DemoConfig(out=tmp_path / out, model=str(tmp_path / model_file), progress=False)
        with pytest.raises((OSError, ValueError), match=message):
            run_demo(config)
        assert not (tmp_path / "out").exists()


def test_without_the_shipped_model_the_demo_says_to_train_one(tmp_path, monkeypatch) -> None:
    import hardnet_export.demo as demo
    from hardnet_export.cli import flag

    monkeypatch.setattr(demo, "SHIPPED_WEIGHTS", tmp_path / "absent.pth")
    with pytest.raises(FileNotFoundError) as info:
        demo._model(DemoConfig(), tmp_path)
    assert str(info.value).endswith("; run the demo with train_steps=N to train one")
    assert info.value.render(flag).endswith("; run the demo with --train-steps N to train one")
