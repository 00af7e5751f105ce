"""Fuzzing the command line's numeric options with values outside their documented ranges.

Each command gets one bad value for one option (NaN, inf, a negative, zero where zero is not
allowed, a huge number, text, a float for an integer): the command must refuse it before any
work, as one ``error:`` line (exit 1) or click's usage error (exit 2, "Invalid value"), never
as an internal error or a traceback, and within the hang guard (a NaN duration once made
``bench`` time forever; a NaN weight decay trained a NaN model with exit 0).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixture_files import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

HANG_GUARD_S = 20.0

# option -> (integer?, low, high): the documented ranges; a float low of 1e-9 stands for
# "greater than 0" (the value itself and anything down to 0 are valid too).
OPTIONS: dict[str, dict[str, tuple[bool, float, float]]] = {
    "eval": {"--pairs": (True, 2, 1e6), "--sift-size": (False, 1e-9, 1000),
             "--seed": (True, 0, 2**63 - 1)},
    "bench": {"--threads": (True, 1, 4096), "--warmup-s": (False, 0, 3600),
              "--duration-s": (False, 1e-9, 3600), "--accuracy-pairs": (True, 0, 1e6),
              "--max-image-pixels": (True, 1, 2**63 - 1)},
    "describe": {"--max-keypoints": (True, 1, 1e6), "--max-image-pixels": (True, 1, 2**63 - 1)},
    "match": {"--max-keypoints": (True, 1, 1e6), "--ratio": (False, 1e-9, 1),
              "--threshold": (False, 1e-9, 1000), "--max-image-pixels": (True, 1, 2**63 - 1)},
    "check": {"--pairs": (True, 2, 1e6), "--seed": (True, 0, 2**63 - 1)},
    "demo": {"--train-steps": (True, 0, 1e7), "--pairs": (True, 10, 1e6),
             "--duration-s": (False, 1e-9, 3600)},
    "trt": {"--min-batch": (True, 1, 1 << 20), "--max-batch": (True, 1, 1 << 20),
            "--workspace-mib": (True, 1, 1 << 24), "--dla-core": (True, 0, 15),
            "--device": (True, 0, 1023), "--opt-keypoints": (True, 1, 1 << 20),
            "--max-keypoints": (True, 1, 1 << 20)},
    "onnx": {"--calibration-size": (True, 1, 1e7), "--calibration-seed": (True, 0, 2**63 - 1),
             "--float-budget": (False, 0, 1), "--max-fpr95-loss": (False, 0, 100),
             "--max-nn-loss": (False, 0, 100), "--min-cosine": (False, -1, 1),
             "--gate-pairs": (True, 2, 1e7), "--opset": (True, 18, 28)},
    "train": {"--steps": (True, 1, 1e8), "--batch-size": (True, 2, 1 << 20),
              "--lr": (False, 1e-9, 1e6), "--momentum": (False, 0, 1),
              "--dampening": (False, 0, 1), "--weight-decay": (False, 0, 1),
              "--margin": (False, 0, 1000), "--dropout": (False, 0, 1),
              "--seed": (True, 0, 2**63 - 1), "--num-workers": (True, -1, 256),
              "--checkpoint-every": (True, 1, 1e8), "--log-every": (True, 1, 1e8),
              "--stop-after": (True, 1, 1e8), "--threads": (True, 0, 4096)},
}  # fmt: skip
CASES = [(command, option) for command, options in OPTIONS.items() for option in options]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-fuzz")
    image = (np.random.default_rng(0).random((96, 128)) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "img.png"), image)
    from hardnet_export.shipped import SHIPPED_ONNX

    (folder / "m.onnx").write_bytes(SHIPPED_ONNX.read_bytes())
    return folder


def base_arguments(command: str, folder: Path) -> list[str]:
    """Arguments that make each command valid apart from the fuzzed option."""
    return {
        "eval": ["eval", "--no-progress"],
        "bench": ["bench", str(folder / "m.onnx"), "--batch-sizes", "1"],
        "describe": ["describe", str(folder / "img.png"), "-o", str(folder / "o.npz")],
        "match": ["match", str(folder / "img.png"), str(folder / "img.png"),
                  "-o", str(folder / "m.png")],
        "check": ["check", str(folder / "m.onnx")],
        "demo": ["demo", "--out", str(folder / "demo")],
        "trt": ["trt", str(folder / "m.onnx"), "-o", str(folder / "m.engine")],
        "onnx": ["onnx", "-o", str(folder / "x.onnx"), "--precision", "int8"],
        "train": ["train", "--out", str(folder / "run"), "--steps", "1", "--no-progress"],
    }[command]  # fmt: skip


@st.composite
def bad_values(draw: st.DrawFn, integer: bool, low: float, high: float) -> str:
    kind = draw(st.sampled_from(["special", "below", "above", "text", "fraction"]))
    if kind == "special":
        return draw(st.sampled_from(["nan", "inf", "-inf", "NaN", "1e400", "-1e400"]))
    if kind == "below":
        open_low = not integer and low == 1e-9
        value = draw(st.floats(max_value=0.0 if open_low else low, exclude_max=not open_low,
                               allow_nan=False, allow_infinity=False))  # fmt: skip
        return str(math.floor(value)) if integer and value > -1e18 else str(value)
    if kind == "above":
        value = draw(st.floats(min_value=float(high), exclude_min=True, allow_nan=False,
                               allow_infinity=False))  # fmt: skip
        return str(math.ceil(value)) if integer and value < 1e18 else str(value)
    if kind == "text":
        return draw(st.sampled_from(["true", "false", "yes", "", "1,2", "0x10", "ten"]))
    return "1.5" if integer else draw(st.sampled_from(["nan", "inf"]))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, str]:
    command, option = draw(st.sampled_from(CASES))
    integer, low, high = OPTIONS[command][option]
    value = draw(bad_values(integer, low, high))
    if integer and value.lstrip("-").isdigit():
        assert not low <= int(value) <= high, (option, value)
    return command, option, value


def run_in_process(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run_main(arguments, capsys)
    return code, out + err


@settings(
    max_examples=80,
    deadline=None,  # the hang guard below times the command, not hypothesis' bookkeeping
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_bad_numeric_options_are_refused_before_work(
    inputs: Path, capsys: pytest.CaptureFixture[str], case: tuple[str, str, str]
) -> None:
    command, option, value = case
    arguments = [*base_arguments(command, inputs), f"{option}={value}"]
    started = time.perf_counter()
    code, output = run_in_process(arguments, capsys)
    elapsed = time.perf_counter() - started
    assert elapsed < HANG_GUARD_S, f"{arguments} ran {elapsed:.0f} s"
    assert "internal error" not in output and "Traceback" not in output, output
    if code == 2:
        assert "Invalid value" in output or "Usage" in output, output
    else:
        assert code == 1, f"{arguments} exited {code}: {output}"
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output
    assert not (inputs / "run").exists() and not (inputs / "demo").exists()
