from __future__ import annotations

import subprocess
import sys

import pytest
from fixture_files import run_cli

from hardnet_export import __version__

STAGES = [
    "models", "train", "eval", "onnx", "trt", "bench", "describe", "extract", "match", "colmap",
    "check",
    "demo",
]  # fmt: skip


def test_help_lists_every_stage() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for stage in STAGES:
        assert stage in result.stdout


@pytest.mark.slow
def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hardnet-export {__version__}"


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_every_command_has_help_with_example(stage: str) -> None:
    result = run_cli(stage, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout and "hardnet-export" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "imagenet"], "unknown training data 'imagenet'"),
        (["--data", "phototour:/no/such/folder/liberty"], "does not exist"),
        (["--batch-size", "1"], "batch_size must be at least 2"),
        (["--batch-reduce", "max"], "batch_reduce must be one of"),
        (["--width", "0"], "width must be > 0"),
        (["--distill-kind", "kl"], "distill_kind must be one of"),
        (["--teacher", "hardnet-tiny"], "registered models are hardnet"),
        # Without a teacher, a distillation weight was silently ignored.
        (["--distill-weight", "2"], "distill_weight 2.0 sets up a distillation term"),
        (["--out", "/proc/run"], "cannot create the run folder /proc/run: nothing can be"),
    ],
)
def test_train_bad_arguments_give_one_sentence(args: list[str], message: str, tmp_path) -> None:
    result = run_cli("train", "--out", str(tmp_path / "run"), "--no-progress", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # a refused start makes no run folder


def _cli_defaults(command: str) -> dict[str, object]:
    import typer.main

    from hardnet_export.cli import app

    group = typer.main.get_command(app)
    return {p.name: p.default for p in group.commands[command].params}  # type: ignore[attr-defined]


@pytest.mark.slow
def test_help_defaults_are_the_library_defaults() -> None:
    import dataclasses

    from hardnet_export.applications.matching import match_images
    from hardnet_export.benchmark.run import run_benchmark
    from hardnet_export.check import check_artifact
    from hardnet_export.cli import default
    from hardnet_export.demo import DemoConfig
    from hardnet_export.evaluation.suite import run_evaluation
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.export.tensorrt import BuildOptions
    from hardnet_export.train.config import TrainConfig
    from hardnet_export.tune import tune_artifact

    train = _cli_defaults("train")
    for field in dataclasses.fields(TrainConfig):
        assert train[field.name] == default(TrainConfig, field.name), field.name
    assert set(train) == {f.name for f in dataclasses.fields(TrainConfig)}
    expected = {
        "eval": {"sift_size": (run_evaluation, "sift_size"), "pairs": (run_evaluation, "n_pairs")},
        "onnx": {
            "opset": (export_onnx, "opset"),
            **{
                field.name: (Int8Options, field.name)
                for field in dataclasses.fields(Int8Options)
                # qat comes from a QAT checkpoint itself, not from a flag.
                if field.name not in ("gate_pairs", "progress", "calibration", "qat")
            },
        },
        "trt": {name: (BuildOptions, name) for name in ("opt_batch", "max_batch", "workspace_mib")},
        "bench": {
            "duration_s": (run_benchmark, "duration_s"),
            "warmup_s": (run_benchmark, "warmup_s"),
        },
        "match": {"ratio": (match_images, "ratio"), "threshold": (match_images, "threshold")},
        "check": {"pairs": (check_artifact, "pairs")},
        "tune": {
            "pairs": (tune_artifact, "pairs"),
            "duration_s": (tune_artifact, "duration_s"),
            "write": (tune_artifact, "write"),
        },
        "demo": {
            "pairs": (DemoConfig, "pairs"),
            "bench_duration_s": (DemoConfig, "bench_duration_s"),
        },
    }
    for command, options in expected.items():
        shown = _cli_defaults(command)
        for option, (owner, name) in options.items():
            assert shown[option] == default(owner, name), (command, option)
    assert _cli_defaults("demo")["batch_sizes"] == ",".join(map(str, DemoConfig().batch_sizes))
    result = run_cli("train", "--help")
    assert f"[default: {TrainConfig().steps}]" in result.stdout


BUGGY_COMMAND = """
import sys
from hardnet_export import cli

@cli.app.command("boom")
def boom() -> None:
    {}["gpu_name"]  # a bug: a KeyError the code did not mean to raise

cli.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_only_the_projects_errors_are_user_errors(tmp_path) -> None:
    # A user error: one line, exit 1. A bug: "internal error", exit 70; --debug shows it. A
    # usage error: click's usage text, exit 2.
    missing = run_cli("check", str(tmp_path / "none.onnx"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: artifact not found")
    for extra, code, text in (
        ([], 70, "internal error, please report"),
        (["--debug"], 1, "KeyError"),
    ):
        result = subprocess.run(
            [sys.executable, "-c", BUGGY_COMMAND, *extra, "boom"], capture_output=True, text=True
        )
        assert result.returncode == code and text in result.stderr, result.stderr
        assert "error: 'gpu_name'" not in result.stderr
    usage = run_cli("check", str(tmp_path / "none.onnx"), "--no-such-option")
    assert usage.returncode == 2 and "No such option: --no-such-option" in usage.stderr


@pytest.mark.slow
def test_model_arguments_and_outputs_are_one_line_each(tmp_path) -> None:
    import cv2
    import numpy as np

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (96, 128), np.uint8))
    (tmp_path / "x.h5").mkdir()
    (tmp_path / "file").write_text("x")
    out = str(tmp_path / "d.npz")
    cases = [
        # typer made "" the folder "." and "./hardnet-half" the registered name.
        (["describe", str(image), "-o", out, "--model", ""], "error: the model is empty: give"),
        (["describe", str(image), "-o", out, "--model", "./hardnet-half"], "model not found: "),
        (["describe", str(image), "-o", str(tmp_path / "x.h5")], "x.h5: it is a folder; give"),
        (["demo", "--out", str(tmp_path / "file")], "file as the demo output folder: it is a fi"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Errno" not in result.stderr
    assert not (tmp_path / "d.npz").exists()
