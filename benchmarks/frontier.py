"""The cost/accuracy frontier of the registered models: time per frame against NN accuracy.

Per registered model (``hardnet_export.models()``, or ``--model`` checkpoints) and precision
(FP32 on ONNX Runtime, and the INT8 CPU flavour made for this CPU on the faster of ONNX Runtime
and OpenVINO), in one run on this machine:

- **time per frame**: ``Describer.compute`` (extraction + inference) of the 2000 strongest SIFT
  keypoints of the benchmark frame (``builtin:frame``, 800x640), timed with the per-frame
  benchmark's rules (``hardnet-export bench --image``), beside OpenCV SIFT ``compute()`` on the
  same keypoints (the reference row of the same run; ratios are what to read on shared CPUs);
- **accuracy**: NN accuracy (and FPR95) on the held-out built-in photos and on the Middlebury
  motorcycle stereo pair (plain and with rotation/zoom jitter), 2000 pairs each, seed 0, as
  ``hardnet-export eval`` computes them, with OpenCV SIFT on the same patches.

Usage (about 10 minutes for three models on 2 CPU cores; INT8 exports are cached)::

    python benchmarks/frontier.py
    python benchmarks/frontier.py --model runs/q/final.pth --model runs/h/final.pth

Writes benchmarks/results/frontier-<machine>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from hardnet_export._io import atomic_path, atomic_write_text
from hardnet_export.artifacts.models import models, multiply_adds, parameter_count
from hardnet_export.benchmark.frame import bench_photo, run_frame_benchmark
from hardnet_export.benchmark.machine import cpu_slug, machine_info
from hardnet_export.evaluation.suite import run_evaluation
from hardnet_export.host import int8_isa

RESULTS = Path(__file__).resolve().parent / "results"
DATA = ("builtin", "stereo", "stereo-hard")
KEYPOINTS = 2000


def candidates(paths: list[Path]) -> list[tuple[str, Path, float]]:
    """(name, checkpoint, width) of every registered model, or of the given checkpoints."""
    from hardnet_export.model import load_model

    if paths:
        return [(p.parent.name or p.stem, p, load_model(p).width) for p in paths]
    return [(m.name, m.file("weights"), m.width) for m in models()]


def exports(name: str, weights: Path, folder: Path) -> list[tuple[str, Path, str]]:
    """(precision label, graph, backend): FP32 on ONNX Runtime, INT8 CPU flavour on the
    backend ``runtime.load(device="cpu")`` picks for it."""
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.runtime.registry import cpu_backend_for

    fp32 = export_onnx(weights, folder / f"{name}.fp32.onnx")
    # Timed and scored even if it misses the export gate (the gate stays in its metadata).
    int8 = export_onnx(
        weights,
        folder / f"{name}.int8-cpu.onnx",
        variant="int8-cpu",
        int8=Int8Options(force=True),
    )
    return [("fp32", fp32, "onnxruntime"), ("int8-cpu", int8, cpu_backend_for(int8).name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from hardnet_export import runtime

    frame = bench_photo()
    rows: list[dict[str, Any]] = []
    sift_accuracy: dict[str, dict[str, float]] = {}
    describers = []
    with tempfile.TemporaryDirectory(prefix="hardnet-frontier-") as tmp:
        for name, weights, width in candidates(args.model):
            tables = run_evaluation(weights, DATA, n_pairs=args.pairs, device="cpu", progress=False)
            accuracy = {t.dataset: t.results[next(iter(t.results))] for t in tables}
            sift_accuracy = {t.dataset: t.results["SIFT"] for t in tables}
            for precision, graph, backend in exports(name, weights, Path(tmp)):
                if precision != "fp32":
                    int8_tables = run_evaluation(
                        graph, DATA, n_pairs=args.pairs, device="cpu", progress=False
                    )
                    scores = {t.dataset: t.results[next(iter(t.results))] for t in int8_tables}
                else:
                    scores = accuracy
                label = f"{name} {precision} ({backend})"
                describers.append(
                    (label, runtime.load(graph, backend=backend, device="cpu", max_batch=KEYPOINTS))
                )
                rows.append(
                    {
                        "label": label,
                        "model": name,
                        "width": width,
                        "precision": precision,
                        "backend": backend,
                        "parameters": parameter_count(width),
                        "multiply_adds": multiply_adds(width),
                        "accuracy": scores,
                    }
                )
        timing = run_frame_benchmark(
            frame,
            describers,
            keypoints=[KEYPOINTS],
            image_name="builtin:frame",
            duration_s=args.duration_s,
            command=" ".join(["python", "benchmarks/frontier.py", *(argv or sys.argv[1:])]),
        )
    reference = timing.references[0]
    for row, target in zip(rows, timing.targets, strict=True):
        case = target.cases[0]
        row["frame_ms_p50"] = case.stages["total"].p50
        row["frame_ms_p99"] = case.stages["total"].p99
        row["vs_sift"] = case.vs_sift
    machine = machine_info()
    result = {
        "format": "hardnet-export-frontier/1",
        "command": timing.command,
        "created": timing.created,
        "machine": machine,
        "int8_isa": int8_isa(),
        "keypoints": reference.keypoints,
        "pairs": args.pairs,
        "sift": {
            "frame_ms_p50": reference.sift.p50,
            "frame_ms_p99": reference.sift.p99,
            "accuracy": sift_accuracy,
        },
        "rows": rows,
    }
    stem = args.out / f"frontier-{cpu_slug(machine['cpu'])}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown(result))
    plot(result, stem.with_suffix(".png"))
    print(markdown(result))
    print(f"wrote {stem}.{{json,md,png}}")
    return 0


def _pct(scores: dict[str, dict[str, float]], data: str, metric: str = "nn_accuracy") -> str:
    value = scores.get(data, {}).get(metric)
    return "-" if value is None else f"{100 * value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]
    sift = result["sift"]
    lines = [
        "# Frontier: time per frame against NN accuracy",
        "",
        f"- command: `{result['command']}`",
        f"- created: {result['created']}",
        f"- machine: {cpu['model']}, {cpu['usable_cpus']} CPUs, int8 ISA {result['int8_isa']}",
        f"- frame: builtin:frame (800x640), {result['keypoints']} SIFT keypoints; time = "
        "Describer.compute (extraction + inference) p50, beside OpenCV SIFT compute() on the "
        "same keypoints in the same run",
        f"- accuracy: NN accuracy % ({result['pairs']} pairs, seed 0): held-out built-in "
        "photos, motorcycle stereo pair, and the pair with rotation/zoom jitter; SIFT on the "
        "same patches",
        "",
        "| model | width | precision (backend) | M mult-adds / patch | frame ms p50 | x SIFT "
        "| held-out NN % | stereo NN % | stereo-hard NN % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        f"| OpenCV SIFT | - | - | - | {sift['frame_ms_p50']:.1f} | 1.00x | "
        f"{_pct(sift['accuracy'], 'builtin')} | {_pct(sift['accuracy'], 'stereo')} | "
        f"{_pct(sift['accuracy'], 'stereo-hard')} |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['model']} | {row['width']:g} | {row['precision']} ({row['backend']}) | "
            f"{row['multiply_adds'] / 1e6:.1f} | {row['frame_ms_p50']:.1f} | "
            f"{row['vs_sift']:.2f}x | {_pct(row['accuracy'], 'builtin')} | "
            f"{_pct(row['accuracy'], 'stereo')} | {_pct(row['accuracy'], 'stereo-hard')} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    sift = result["sift"]
    for ax, data, title in zip(
        axes,
        ("stereo", "builtin"),
        ("motorcycle stereo pair", "held-out built-in photos"),
        strict=True,
    ):
        ax.scatter(
            [sift["frame_ms_p50"]],
            [100 * sift["accuracy"][data]["nn_accuracy"]],
            marker="s",
            s=80,
            color="black",
            label="OpenCV SIFT compute()",
        )
        for precision, marker in (("fp32", "o"), ("int8-cpu", "^")):
            chosen = [r for r in result["rows"] if r["precision"] == precision]
            if not chosen:
                continue
            x = [r["frame_ms_p50"] for r in chosen]
            y = [100 * r["accuracy"][data]["nn_accuracy"] for r in chosen]
            ax.plot(x, y, marker=marker, markersize=8, label=f"HardNet {precision}")
            for r, xi, yi in zip(chosen, x, y, strict=True):
                ax.annotate(r["model"], (xi, yi), textcoords="offset points", xytext=(6, 4))
        ax.set_xscale("log")
        ax.set_xlabel(f"time per frame, {result['keypoints']} keypoints, p50 ms (log)")
        ax.set_ylabel("NN accuracy %")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    cpu = result["machine"]["cpu"]
    figure.suptitle(
        f"{cpu['model']}, {cpu['usable_cpus']} CPUs, int8 ISA {result['int8_isa']}; "
        "builtin:frame 800x640",
        fontsize="small",
    )
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main())
