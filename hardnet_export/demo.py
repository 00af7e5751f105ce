"""The main job in one command: model -> ONNX FP32/FP16/INT8 -> TensorRT where present ->
accuracy against OpenCV SIFT -> speed -> the motorcycle stereo pair matched -> a report.

Every stage after the model and the FP32 graph is optional: when one fails (no GPU, no
TensorRT) the failure is recorded in the report and the rest goes on.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export import __version__
from hardnet_export._io import atomic_write_text, check_folder, make_folder
from hardnet_export.artifacts.variants import VARIANTS
from hardnet_export.errors import (
    HardnetError,
    InputError,
    MissingDependencyError,
    MissingFileError,
    Placeholder,
    Remedy,
)
from hardnet_export.host import BUILTIN_PHOTO_PACKAGES, require
from hardnet_export.shipped import SHIPPED_WEIGHTS, require_shipped
from hardnet_export.validate import check_float, check_int

MATCH_TOLERANCE_PX = 3.0


@dataclass
class DemoConfig:
    """What the demo runs.

    Args:
        out: folder for every artifact and report (created).
        train_steps: 0 uses ``model``; N > 0 trains one for N steps first.
        model: the registered model (``hardnet``, ...) or checkpoint the demo runs when it
            trains none; default the shipped model.
        device: ``auto``, ``cpu`` or ``cuda`` for training and benchmarking.
        pairs: evaluation pairs per set (built-in validation, motorcycle stereo).
        batch_sizes: benchmark batch sizes.
        bench_duration_s: timed seconds per artifact and batch size.
        progress: show progress.
    """

    out: Path = Path("demo-out")
    train_steps: int = 0
    model: str | None = None
    device: str = "auto"
    pairs: int = 1000
    batch_sizes: tuple[int, ...] = (1, 32, 256)
    bench_duration_s: float = 1.0
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_int("train_steps", self.train_steps, low=0, high=10_000_000)
        if self.model is not None:
            self.model = str(self.model)
            if self.train_steps:
                raise InputError(
                    "model is what the demo runs when it trains none: pass model or "
                    f"train_steps, not both (got model {self.model!r}, train_steps "
                    f"{self.train_steps})"
                )
        check_float("bench_duration_s", self.bench_duration_s, low=0.0, low_open=True, high=3600.0)
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {self.device!r}")
        check_int("pairs", self.pairs, low=10, high=1_000_000)
        if not self.batch_sizes:
            raise InputError("batch sizes must not be empty")
        for size in self.batch_sizes:
            check_int("batch size", size, low=1, high=1 << 20)


@dataclass
class StageResult:
    name: str
    status: str  # ok | skipped | failed
    seconds: float
    detail: str = ""


@dataclass
class DemoReport:
    config: dict[str, Any]
    version: str = __version__
    stages: list[StageResult] = field(default_factory=list)
    weights: str = ""
    #: variant name -> path, for every ONNX graph and TensorRT engine written.
    onnx: dict[str, str] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    speed: list[dict[str, Any]] = field(default_factory=list)
    #: Per-image timing (bench --image): one keypoint count, against SIFT compute().
    frame_speed: list[dict[str, Any]] = field(default_factory=list)
    matching: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def artifacts(self) -> dict[str, str]:
        """Display label -> path of the weights and every artifact, in pipeline order."""
        labels = {"pytorch": self.weights} if self.weights else {}
        labels.update({f"onnx {name}": path for name, path in self.onnx.items()})
        labels.update({f"tensorrt {name}": path for name, path in self.engines.items()})
        return labels


class _Stages:
    """Runs stages in order, timing each; optional ones may fail without ending the demo."""

    def __init__(self, report: DemoReport, console: Any, total: int) -> None:
        self.report = report
        self.console = console
        self.total = total

    def run(self, name: str, fn: Callable[[], str | None], *, optional: bool = True) -> bool:
        from rich.text import Text

        index = len(self.report.stages) + 1
        self.console.rule(Text(f"[{index}/{self.total}] {name}", style="bold"))
        start = time.perf_counter()
        try:
            detail = fn() or ""
            status = "ok"
        except MissingDependencyError as exc:
            status, detail = "skipped", str(exc)
        except Exception as exc:
            if not optional:
                raise
            status, detail = "failed", f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, (HardnetError, OSError)):
                # A bug: where it happened helps. The project's own errors say it in their
                # message, which the status line prints.
                self.console.print(traceback.format_exc(limit=3), style="dim")
        seconds = time.perf_counter() - start
        self.report.stages.append(StageResult(name, status, round(seconds, 2), detail))
        style = {"ok": "green", "skipped": "yellow", "failed": "red"}[status]
        # The detail may hold "pip install 'hardnet-export[trt]'": text, not markup.
        line = Text.assemble((status, style), f" in {seconds:.1f} s")
        if detail:
            line.append(f": {detail}")
        self.console.print(line)
        return status == "ok"


def run_demo(config: DemoConfig) -> DemoReport:
    """Run the whole pipeline on built-in data and write ``report.md`` and ``report.json``."""
    from hardnet_export._progress import plain_console

    # Its core stages: training or the shipped checkpoint, the export, the built-in photos.
    # OpenVINO, TensorRT and pycolmap are optional: their stages say why they were skipped.
    require("the demo", "torch", "onnx", "onnxscript", "onnxruntime", *BUILTIN_PHOTO_PACKAGES)
    console = plain_console(stderr=True, quiet=not config.progress)
    out = config.out
    check_folder(out, "demo output folder")  # a file there, or no way to write, fails now
    created = not out.exists()
    report = DemoReport(config={**asdict(config), "out": str(out)})
    stages = _Stages(report, console, total=7)
    weights: dict[str, Path] = {}

    def model_stage() -> str:
        weights["path"] = _model(config, out)
        report.weights = str(weights["path"])
        return str(weights["path"])

    try:
        stages.run("Model", model_stage, optional=False)
    except BaseException:
        if created:
            # Training made it and left nothing in it: a failed start leaves nothing behind.
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    make_folder(out, "demo output folder")
    names = ", ".join(v.name for v in VARIANTS)
    stages.run(f"ONNX export ({names})", lambda: _export(report, weights["path"], out))
    stages.run("TensorRT engines", lambda: _engines(report, out))
    stages.run("Accuracy vs OpenCV SIFT", lambda: _accuracy(report, config))
    stages.run("Speed", lambda: _speed(report, config, out))
    stages.run("Matching the motorcycle stereo pair", lambda: _matching(report, out))
    stages.run("Report", lambda: _write_report(report, out), optional=False)
    if config.progress:
        summary = plain_console()  # progress went to stderr; the results go to stdout
        for table in summary_tables(report):
            summary.print(table)
    return report


def _model(config: DemoConfig, out: Path) -> Path:
    """The checkpoint every later stage reads, loaded once here: a file that is no HardNet
    checkpoint, or holds NaN weights, fails this stage rather than each stage after it."""
    from hardnet_export.model import load_model

    if config.train_steps == 0 and config.model is not None:
        from hardnet_export.artifacts.models import resolve_model

        path = resolve_model(config.model, "weights")
        if not path.is_file():
            raise MissingFileError(f"model not found: {path}")
        load_model(path)
        return path
    if config.train_steps == 0:
        return require_shipped(
            SHIPPED_WEIGHTS,
            "run the demo with {train_steps} to train one",
            {"train_steps": Remedy({"train_steps": Placeholder("N")})},
        )
    from hardnet_export.train.config import TrainConfig
    from hardnet_export.train.trainer import train

    run = TrainConfig(
        data=["builtin"],
        out=str(out / "train"),
        steps=config.train_steps,
        batch_size=128,
        lr=5.0,
        device=config.device,
        checkpoint_every=max(1, config.train_steps),
        progress=config.progress,
    )
    return train(run)


def _export(report: DemoReport, weights: Path, out: Path) -> str:
    from hardnet_export.export.onnx import export_onnx

    for variant in VARIANTS:
        path = out / variant.file_name()
        # The demo shows every variant: a gate failure is in the metadata, not fatal here.
        export_onnx(weights, path, variant=variant, options=variant.default_options(force=True))
        report.onnx[variant.name] = str(path)
    return ", ".join(Path(path).name for path in report.onnx.values())


def _engines(report: DemoReport, out: Path) -> str:
    from hardnet_export._cuda import require_tensorrt
    from hardnet_export.export.tensorrt import build_engine

    require_tensorrt(purpose="building TensorRT engines")
    for variant in VARIANTS:
        if variant.demo_engine and variant.name in report.onnx:
            engine = out / variant.file_name(suffix=".engine")
            build_engine(report.onnx[variant.name], engine)
            report.engines[variant.name] = str(engine)
    return ", ".join(Path(path).name for path in report.engines.values())


def _accuracy(report: DemoReport, config: DemoConfig) -> str:
    from hardnet_export import runtime
    from hardnet_export.data.builtin import validation_pairs
    from hardnet_export.data.stereo import stereo_pairs
    from hardnet_export.evaluation.pairs import evaluate_matched_pairs
    from hardnet_export.evaluation.sift import sift_describer

    datasets = {
        "built-in validation": validation_pairs(config.pairs, seed=0),
        "motorcycle stereo": stereo_pairs(config.pairs, seed=0),
    }
    describers: dict[str, Any] = {"OpenCV SIFT": sift_describer()}
    for name, path in report.artifacts().items():
        describers[name] = runtime.load(path).describe
    for data, pairs in datasets.items():
        for name, describe in describers.items():
            metrics = evaluate_matched_pairs(describe, pairs)
            report.accuracy.append(
                {
                    "data": data,
                    "descriptor": name,
                    "pairs": len(pairs),
                    "fpr95_pct": round(100 * metrics["fpr95"], 3),
                    "nn_accuracy_pct": round(100 * metrics["nn_accuracy"], 3),
                }
            )
    best = {row["data"]: row for row in report.accuracy if row["descriptor"] == "pytorch"}
    # The headline compares the PyTorch model; every artifact's row is in the report.
    sift = {row["data"]: row for row in report.accuracy if row["descriptor"] == "OpenCV SIFT"}
    return "; ".join(
        f"{data}: HardNet FPR95 {best[data]['fpr95_pct']:.2f}% vs SIFT "
        f"{sift[data]['fpr95_pct']:.2f}%, NN {best[data]['nn_accuracy_pct']:.1f}% vs "
        f"{sift[data]['nn_accuracy_pct']:.1f}%"
        for data in best
    )


def _speed(report: DemoReport, config: DemoConfig, out: Path) -> str:
    from hardnet_export.benchmark.report import write_json, write_markdown, write_plot
    from hardnet_export.benchmark.run import run_benchmark

    device = "cpu" if config.device == "auto" and not _has_cuda() else config.device
    device = "cuda" if device == "auto" else device
    artifacts = [*report.onnx.values(), *report.engines.values()]
    result = run_benchmark(
        artifacts,
        batch_sizes=config.batch_sizes,
        device=device,
        duration_s=config.bench_duration_s,
        accuracy_pairs=0,  # the accuracy stage already measured every artifact
        weights=report.weights,
        command="hardnet-export demo",
        progress=config.progress,
    )
    write_json(result, out / "bench.json")
    write_markdown(result, out / "bench.md")
    write_plot(result, out / "bench.png")
    report.files.update(bench_json="bench.json", bench_md="bench.md", bench_png="bench.png")
    for target in result.targets:
        for case in target.cases:
            report.speed.append(
                {
                    "artifact": target.label,
                    "backend": target.backend,
                    "device": target.device,
                    "batch": case.batch_size,
                    "p50_ms": round(case.latency.p50, 4),
                    "patches_per_s": round(case.throughput, 1),
                    "vs_pytorch": None if case.vs_baseline is None else round(case.vs_baseline, 2),
                }
            )
    fastest = max(report.speed, key=lambda row: row["patches_per_s"])
    frame = _frame_speed(report, config, out, device)
    return f"fastest: {fastest['artifact']} at batch {fastest['batch']}, " + (
        f"{fastest['patches_per_s']:.0f} patches/s; {frame}"
    )


#: The demo's per-image benchmark: one keypoint count, the FP32 graph, short stages (a few
#: seconds on a shared 2-core CPU, where one inference of 500 patches takes about 0.3 s).
DEMO_FRAME_KEYPOINTS = 500
DEMO_FRAME_DURATION_S = 0.3
DEMO_FRAME_ITERATIONS = 3


def _frame_speed(report: DemoReport, config: DemoConfig, out: Path, device: str) -> str:
    """Image in, descriptors out: the benchmark photo at one keypoint count, FP32 graph,
    against OpenCV SIFT compute() on the same keypoints (``hardnet-export bench --image``)."""
    import cv2

    from hardnet_export.benchmark.frame import bench_photo, run_image_benchmark
    from hardnet_export.benchmark.report import write_frame_plot, write_json, write_markdown

    if not report.onnx:
        return "no ONNX graph to time per frame"
    photo = bench_photo()
    cv2.imwrite(str(out / "frame.png"), photo)
    artifact = report.onnx.get("fp32") or next(iter(report.onnx.values()))
    result = run_image_benchmark(
        photo,
        [artifact],
        keypoints=[DEMO_FRAME_KEYPOINTS],
        image_name="frame.png (bench_photo)",
        device=device,
        duration_s=min(DEMO_FRAME_DURATION_S, config.bench_duration_s),
        min_iterations=DEMO_FRAME_ITERATIONS,
        command="hardnet-export demo",
    )
    write_json(result, out / "bench-frame.json")
    write_markdown(result, out / "bench-frame.md")
    write_frame_plot(result, out / "bench-frame.png")
    report.files.update(
        bench_frame_json="bench-frame.json",
        bench_frame_md="bench-frame.md",
        bench_frame_png="bench-frame.png",
    )
    ref = result.references[0]
    case = result.targets[0].cases[0]
    report.frame_speed.append(
        {
            "artifact": result.targets[0].label,
            "keypoints": case.keypoints,
            "detect_p50_ms": round(ref.detect.p50, 2),
            "extract_p50_ms": round(case.stages["extract"].p50, 2),
            "infer_p50_ms": round(case.stages["infer"].p50, 2),
            "total_p50_ms": round(case.stages["total"].p50, 2),
            "sift_compute_p50_ms": round(ref.sift.p50, 2),
            "vs_sift": round(case.vs_sift, 2),
        }
    )
    return f"per frame ({case.keypoints} keypoints) {case.vs_sift:.2f}x SIFT compute()"


def _has_cuda() -> bool:
    from hardnet_export._cuda import cuda_device_count

    return cuda_device_count() > 0


def _matching(report: DemoReport, out: Path) -> str:
    import cv2

    from hardnet_export import runtime
    from hardnet_export.applications.matching import OpenCVSift, draw_matches, match_images
    from hardnet_export.data.stereo import load_motorcycle

    left, right, disparity = load_motorcycle()
    describer = runtime.load(report.onnx.get("fp32") or report.weights)
    lines = []
    for name, descriptor in (("hardnet", describer), ("sift", OpenCVSift())):
        result = match_images(left, right, descriptor, geometry="fundamental")
        truth = stereo_correct_mask(result, disparity)
        correct = int((truth & result.inliers).sum())
        png = out / f"matches_{name}.png"
        title = "HardNet" if name == "hardnet" else "OpenCV SIFT"
        picture = draw_matches(left, right, result, correct=truth, title=title)
        if not cv2.imwrite(str(png), picture):
            raise OSError(f"could not write {png}")
        report.files[f"matches_{name}"] = png.name
        row = {
            "descriptor": name,
            "keypoints": [len(result.keypoints1), len(result.keypoints2)],
            "tentative": len(result.matches),
            "inliers": result.n_inliers,
            "inlier_ratio": round(result.inlier_ratio, 4),
            "correct_inliers": correct,
            "correct_ratio": round(correct / max(1, result.n_inliers), 4),
        }
        report.matching.append(row)
        lines.append(f"{name}: {result.n_inliers} inliers, {correct} correct")
    return "; ".join(lines)


def stereo_correct(result: Any, disparity: np.ndarray, tol: float = MATCH_TOLERANCE_PX) -> int:
    """Inlier matches that agree with the ground-truth disparity (x_R = x_L - d) within ``tol``.

    Shape:
        - disparity: (H, W) float, invalid pixels non-finite.
    """
    return int((stereo_correct_mask(result, disparity, tol) & result.inliers).sum())


def stereo_correct_mask(
    result: Any, disparity: np.ndarray, tol: float = MATCH_TOLERANCE_PX
) -> np.ndarray:
    """Which matches (inliers or not) agree with the ground-truth disparity within ``tol``.

    Shape:
        - disparity: (H, W) float, invalid pixels non-finite.
        - Output: (M,) bool.
    """
    mask = np.zeros(len(result.matches), bool)
    for k, (i, j) in enumerate(result.matches):
        x1, y1 = result.keypoints1[i].pt
        x2, y2 = result.keypoints2[j].pt
        d = disparity[int(round(y1)), int(round(x1))]
        mask[k] = bool(np.isfinite(d) and abs(x2 - (x1 - d)) <= tol and abs(y2 - y1) <= tol)
    return mask


def _write_report(report: DemoReport, out: Path) -> str:
    report.files["report_json"] = "report.json"
    report.files["report_md"] = "report.md"
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write_text(out / "report.md", render_markdown(report))
    return f"{out / 'report.md'}, {out / 'report.json'}"


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def render_markdown(report: DemoReport) -> str:
    parts = [
        f"# hardnet-export {report.version} demo report\n",
        f"Weights: `{report.weights}`\n",
        "## Stages\n",
        _md_table([asdict(s) for s in report.stages]),
        "## Artifacts\n",
        _md_table([{"artifact": k, "path": v} for k, v in report.artifacts().items()]),
        "## Accuracy (FPR95 and nearest-neighbour accuracy, %)\n",
        _md_table(report.accuracy),
        "## Speed\n",
        _md_table(report.speed),
    ]
    if "bench_png" in report.files:
        parts.append(f"![throughput and latency]({report.files['bench_png']})\n")
    if report.frame_speed:
        parts += [
            "## Per frame: image in, descriptors out (ms, against OpenCV SIFT compute())\n",
            _md_table(report.frame_speed),
        ]
    parts += ["## Motorcycle stereo matching\n", _md_table(report.matching)]
    for name in ("hardnet", "sift"):
        if f"matches_{name}" in report.files:
            parts.append(f"![{name} matches]({report.files[f'matches_{name}']})\n")
    return "\n".join(parts)


def summary_tables(report: DemoReport) -> list[Any]:
    """Rich tables for the terminal: stages, accuracy against SIFT, speed, matching."""
    from rich.table import Table

    tables = []
    stages = Table(title="stages")
    for column in ("stage", "status", "seconds", "detail"):
        stages.add_column(column)
    for stage in report.stages:
        stages.add_row(stage.name, stage.status, f"{stage.seconds:.1f}", stage.detail[:100])
    tables.append(stages)
    ends = (1, max(report.config["batch_sizes"]))
    for title, rows in (
        ("accuracy (%)", report.accuracy),
        ("speed", [r for r in report.speed if r["batch"] in ends]),
        ("motorcycle stereo matching", report.matching),
    ):
        if not rows:
            continue
        table = Table(title=title)
        for key in rows[0]:
            table.add_column(key, justify="left" if key in ("data", "descriptor") else "right")
        for row in rows:
            table.add_row(*(_cell(row[key]) for key in rows[0]))
        tables.append(table)
    return tables
