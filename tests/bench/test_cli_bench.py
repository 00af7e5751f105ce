"""The ``bench`` command end to end on the CPU: a tiny real run, and the errors users hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_files import run_cli

from hardnet_export.benchmark.results import BenchmarkResult

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real FP32 export of a randomly initialised HardNet."""
    import torch

    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.model import HardNet

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("bench") / "tiny.fp32.onnx"
    return export_onnx(HardNet().eval(), out, variant="fp32", parity=False)


def test_short_real_run_writes_json_markdown_and_png(onnx_artifact: Path, tmp_path: Path) -> None:
    json_path, md_path, png_path = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    result = run_cli(
        "bench", str(onnx_artifact), "--batch-sizes", "1,4", "--duration-s", "0.05",
        "--warmup-s", "0.01", "--threads", "1", "--accuracy-pairs", "64", "--no-baseline",
        "--json", str(json_path), "--markdown", str(md_path), "--plot", str(png_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "tiny.fp32.onnx" in result.stdout

    data = json.loads(json_path.read_text())
    assert data["format"] == "hardnet-export-bench/1"
    assert data["settings"]["batch_sizes"] == [1, 4]
    assert data["settings"]["threads"] == 1
    machine = data["machine"]
    assert machine["cpu"]["model"] and machine["cpu"]["usable_cpus"] >= 1
    assert machine["cpu"]["logical_cpus"] >= machine["cpu"]["usable_cpus"]
    assert set(machine) >= {"os", "python", "gpus", "memory_gb", "load_average_start"}
    for lib in ("numpy", "onnxruntime", "torch", "tensorrt", "opencv"):
        assert lib in machine["libraries"]
    assert machine["libraries"]["onnxruntime"]
    (target,) = data["targets"]
    assert target["backend"] == "onnxruntime" and target["precision"] == "fp32"
    assert target["device"] == "cpu"
    assert 0 <= target["accuracy"]["fpr95"] <= 1 and 0 <= target["accuracy"]["nn_accuracy"] <= 1
    assert target["accuracy"]["n_pairs"] == 64
    assert [c["batch_size"] for c in target["cases"]] == [1, 4]
    for case in target["cases"]:
        lat = case["latency"]
        assert case["iterations"] >= 10 and lat["n"] == case["iterations"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"]
        assert case["compute"] is None  # no device clock on the CPU
        assert case["throughput"] == pytest.approx(case["batch_size"] * 1e3 / lat["mean"])
        assert case["per_patch_ms"] == pytest.approx(1e3 / case["throughput"])
        assert case["patches_per_ms"] == pytest.approx(case["throughput"] / 1e3)
        assert case["variation"] >= 0 and case["unstable"] == (case["variation"] > 0.025)
        assert case["vs_baseline"] is None
    # The file reads back into the same result.
    assert BenchmarkResult.load(json_path).to_dict() == data

    assert png_path.read_bytes()[:8] == PNG_SIGNATURE
    assert "| tiny.fp32.onnx | 1 |" in md_path.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-sizes", "0"], "batch sizes must be positive integers, got 0"),
        (["--batch-sizes", "1,x"], "comma-separated positive integers"),
        (["--device", "tpu"], "device must be one of cpu, cuda, got 'tpu'"),
        (["--threads", "0"], "threads must be >= 1, got 0"),
    ],
)
def test_bad_arguments_give_one_clear_sentence(
    onnx_artifact: Path, args: list[str], message: str
) -> None:
    result = run_cli("bench", str(onnx_artifact), *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_artifact(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    result = run_cli("bench", str(missing), "--no-baseline")
    assert result.returncode != 0
    assert f"artifact not found: {missing}" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.gpu
def test_cuda_run_reports_device_compute_time(tmp_path: Path) -> None:
    import torch

    from hardnet_export.model import HardNet, save_checkpoint

    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "random.pth", HardNet().eval())
    json_path = tmp_path / "gpu.json"
    result = run_cli(
        "bench", str(weights), "--device", "cuda", "--batch-sizes", "1,64",
        "--duration-s", "0.05", "--accuracy-pairs", "64", "--weights", str(weights),
        "--json", str(json_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(json_path.read_text())
    assert data["machine"]["gpus"] and data["machine"]["gpus"][0]["name"]
    baseline, target = data["targets"]
    assert baseline["is_baseline"] and target["device"].startswith("cuda")
    for case in target["cases"]:
        # Device time excludes the copies and the host: never more than end to end.
        assert case["compute"] is not None
        assert 0 < case["compute"]["p50"] <= case["latency"]["p50"]
        assert case["vs_baseline"] is not None and case["vs_baseline"] > 0


def test_per_image_run_writes_json_markdown_and_png(onnx_artifact: Path, tmp_path: Path) -> None:
    import cv2
    import skimage.data

    photo = tmp_path / "tiny.png"
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(photo), cv2.resize(gray, (128, 96), interpolation=cv2.INTER_AREA))
    json_path, md_path, png_path = tmp_path / "f.json", tmp_path / "f.md", tmp_path / "f.png"
    result = run_cli(
        "bench", str(onnx_artifact), "--image", str(photo), "--keypoints", "20",
        "--duration-s", "0.02", "--warmup-s", "0.01", "--threads", "1",
        "--json", str(json_path), "--markdown", str(md_path), "--plot", str(png_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hardnet-export bench --image" in result.stdout

    data = json.loads(json_path.read_text())
    assert data["format"] == "hardnet-export-bench-frame/1"
    assert data["image"] == str(photo) and data["image_shape"] == [96, 128]
    assert data["settings"]["keypoints"] == [20] and data["settings"]["threads"] == 1
    assert data["machine"]["cpu"]["model"]
    (reference,) = data["references"]
    assert reference["requested"] == 20 and 0 < reference["keypoints"] <= 20
    stat = {"n", "min", "mean", "p50", "p90", "p95", "p99", "max"}
    assert set(reference["detect"]) == stat and set(reference["sift"]) == stat
    (target,) = data["targets"]
    assert target["label"] == "tiny.fp32.onnx" and target["backend"] == "onnxruntime"
    (case,) = target["cases"]
    assert set(case["stages"]) == {"extract", "infer", "total"}
    assert all(set(s) == stat for s in case["stages"].values())
    assert case["keypoints"] == reference["keypoints"]
    assert case["vs_sift"] == case["stages"]["total"]["p50"] / reference["sift"]["p50"]
    markdown = md_path.read_text()
    assert "| x SIFT |" in markdown and "| opencv sift compute() (reference) | " in markdown
    assert png_path.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("bad", ["0", "a,b", "", "-5"])
def test_per_image_bad_keypoint_counts_are_one_error_line(tmp_path: Path, bad: str) -> None:
    photo = tmp_path / "x.png"
    photo.write_bytes(b"")  # never read: the counts are checked first
    result = run_cli("bench", "--image", str(photo), "--keypoints", bad)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ") and "keypoint count" in result.stderr


def test_per_image_run_times_an_image_graph_as_one_call(tmp_path: Path) -> None:
    """An image graph cuts its own patches: one total per frame, extraction and inference
    shown as in the graph, beside the SIFT reference."""
    import cv2
    import skimage.data

    from hardnet_export.export.image_graph import export_image_graph

    graph = export_image_graph(None, tmp_path / "m.image.onnx", pyramid_levels=3)
    photo = tmp_path / "tiny.png"
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(photo), cv2.resize(gray, (128, 96), interpolation=cv2.INTER_AREA))
    json_path, md_path = tmp_path / "f.json", tmp_path / "f.md"
    result = run_cli(
        "bench", str(graph), "--image", str(photo), "--keypoints", "20",
        "--duration-s", "0.02", "--warmup-s", "0.01", "--threads", "1",
        "--json", str(json_path), "--markdown", str(md_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (target,) = json.loads(json_path.read_text())["targets"]
    (case,) = target["cases"]
    assert set(case["stages"]) == {"total"} and case["stages"]["total"]["p50"] > 0
    lines = md_path.read_text().splitlines()
    row = next(line for line in lines if line.startswith(f"| {target['label']} |"))
    assert row.count("in graph") == 4
