"""The cost/accuracy frontier of the registered models: time per frame against NN accuracy.

Per registered model (``hardnet_export.models()``, or ``--model`` checkpoints), precision and
CPU backend (FP32 on ONNX Runtime and on OpenVINO, OpenVINO's bf16 inference where the CPU has
native bf16, the same with the narrow convs packed where ``tune`` offers it
(:mod:`hardnet_export.runtime.packing`), and the INT8 CPU flavour made for this CPU on the
backend ``runtime.load`` picks for it), in one run on this machine:

- **time per frame**: ``Describer.compute`` (extraction + inference) of the 2000 strongest SIFT
  keypoints of the benchmark frame (``builtin:frame``, 800x640), beside OpenCV SIFT
  ``compute()`` on the same keypoints, each row against SIFT in interleaved rounds (each
  round runs SIFT and the row once; ``x SIFT`` is the median over rounds of the row's time
  over SIFT's in the same round, so a slow spell of a shared CPU falls on both; SIFT's time
  is the median over all rounds); the per-stage split (extraction,
  inference) comes from the per-frame benchmark's rules (``hardnet-export bench --image``);
- **accuracy**: NN accuracy (and FPR95) on the held-out built-in photos and on the Middlebury
  motorcycle stereo pair (plain and with rotation/zoom jitter), 2000 pairs each, seed 0, as
  ``hardnet-export eval`` computes them, with OpenCV SIFT on the same patches; and NN accuracy
  at the 2000 SIFT keypoints of each motorcycle view, every descriptor by its own ``compute``
  and SIFT by its own descriptor (:mod:`hardnet_export.evaluation.stereo_frame`).

- **ours against the peers**, per model: ``runtime.load`` by default (no backend, no options)
  of its FP32 and INT8 CPU graphs (the shipped all-int8 one where it ships one) against
  PyTorch eager at its best chunk, ``torch.compile``, ONNX Runtime with a default session on
  the FP32 graph and OpenVINO with its default
  settings on it (:mod:`hardnet_export.benchmark.peers`), ``compute`` of the same keypoints
  with OpenCV SIFT ``compute()`` in interleaved rounds: ours over the best peer and x SIFT
  (the goal: <= 0.5x SIFT).

Usage (about 5 minutes for four models on 2 CPU cores, plus about 2 per model for the peers;
``--no-peers`` leaves them out)::

    python benchmarks/frontier.py
    python benchmarks/frontier.py --model runs/q/final.pth --model runs/h/final.pth

Writes benchmarks/results/frontier-<machine>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export._io import atomic_path, atomic_write_text
from hardnet_export.artifacts.models import (
    get_model,
    model_names,
    models,
    multiply_adds,
    parameter_count,
)
from hardnet_export.benchmark.frame import (
    bench_photo,
    interleaved_compute_times,
    run_frame_benchmark,
)
from hardnet_export.benchmark.machine import cpu_slug, machine_info
from hardnet_export.benchmark.report import isa_text
from hardnet_export.evaluation.stereo_frame import score_describer, sift_scores, stereo_frame
from hardnet_export.evaluation.suite import run_evaluation
from hardnet_export.host import int8_isa

RESULTS = Path(__file__).resolve().parent / "results"
DATA = ("builtin", "stereo", "stereo-hard")
KEYPOINTS = 2000
#: Patches per inference call: on 2 Xeon cores (AMX) chunks of 256 ran hardnet-quarter FP32
#: on ONNX Runtime 95 -> 76 ms per 2000 patches and the eighth's INT8 graph 65 -> 48 ms;
#: OpenVINO within noise of one call.
MAX_BATCH = 256


def candidates(paths: list[Path]) -> list[tuple[str, Path, float, str]]:
    """(name, checkpoint, width, layout) of every registered model, or of the given
    checkpoints."""
    from hardnet_export.model import load_model

    if paths:
        loaded = [(p, load_model(p)) for p in paths]
        return [(p.parent.name or p.stem, p, m.width, m.layout) for p, m in loaded]
    return [(m.name, m.file("weights"), m.width, m.layout) for m in models()]


@dataclass(frozen=True)
class Row:
    """One (model, precision, backend) point of the frontier."""

    precision: str
    graph: Path
    backend: str
    options: dict[str, Any]


def exports(name: str, weights: Path, folder: Path) -> list[Row]:
    """The frontier's points of one model, every CPU backend that runs it: the FP32 graph on
    ONNX Runtime and on OpenVINO, OpenVINO in bf16 where the CPU has native bf16, and the
    INT8 CPU flavour made for this CPU as ``runtime.load(device="cpu")`` runs it (backend, options),
    and the QAT graph where the model ships one (``ShippedModel.graphs``)."""
    from hardnet_export.artifacts.metadata import read_metadata
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.host import has_bf16, installed
    from hardnet_export.runtime.packing import PACK_CHANNELS, packing_candidates

    fp32 = export_onnx(weights, folder / f"{name}.fp32.onnx")
    # Timed and scored even if it misses the export gate (the verdict is in the row).
    int8 = export_onnx(
        weights,
        folder / f"{name}.int8-cpu.onnx",
        variant="int8-cpu",
        options=Int8Options(force=True),
    )
    rows = [Row("fp32", fp32, "onnxruntime", {})]
    if installed("openvino"):
        rows.append(Row("fp32", fp32, "openvino", {}))
        if has_bf16():
            rows.append(Row("bf16", fp32, "openvino", {"inference_precision": "bf16"}))
    # Narrow convs packed (the same descriptors) where tune would offer it.
    if packing_candidates(read_metadata(fp32), [{}]) != [{}]:
        packed = {"pack_channels": PACK_CHANNELS}
        rows.append(Row("fp32 packed", fp32, "onnxruntime", packed))
        if installed("openvino") and has_bf16():
            rows.append(
                Row("bf16 packed", fp32, "openvino", {"inference_precision": "bf16", **packed})
            )
    # As runtime.load runs them: the rule (or a tuned choice) sets options too, such as bf16
    # float parts where the export passed that gate; a bare backend would run them in f32.
    rows.append(Row("int8-cpu", int8, *runtime_choice(int8)))
    # A model that ships a ready-made all-int8 graph (quantisation-aware training): that one
    # too, as a user of the registered model gets it.
    if name in model_names() and "int8-cpu" in get_model(name).graphs:
        shipped = get_model(name).graph("int8-cpu")
        rows.append(Row("int8-cpu qat", shipped, *runtime_choice(shipped)))
    return rows


def runtime_choice(graph: Path) -> tuple[str, dict[str, Any]]:
    """The backend and options ``runtime.load(graph, device="cpu")`` takes here."""
    from hardnet_export.runtime.policy import choose

    choice = choose(graph, device="cpu")
    return choice.backend, dict(choice.options)


def versus_peers(
    frame: np.ndarray, weights: Path, graphs: dict[str, Path], keypoints: int, rounds: int
) -> list[Any]:
    """Ours (``runtime.load(graph, device="cpu")`` of the FP32 and INT8 CPU graphs, the
    shipped all-int8 one where the model ships one) against
    every installed peer, per frame, in interleaved rounds with OpenCV SIFT ``compute()``;
    a peer that cannot run here is left out with a line on stderr."""
    import os

    from hardnet_export.benchmark.frame import _best_chunk_load, frame_versus
    from hardnet_export.benchmark.peers import PeerUnavailable, load_ours, peers
    from hardnet_export.benchmark.run import load_target
    from hardnet_export.benchmark.targets import Target

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    # The INT8 graph a user of the model takes: the shipped all-int8 one where it ships one.
    int8 = "int8-cpu qat" if "int8-cpu qat" in graphs else "int8-cpu"
    ours = [
        (f"ours: {v} (runtime.load default)", load_ours(graphs[v], "cpu")) for v in ("fp32", int8)
    ]
    rivals = []
    for peer in peers():
        source = weights if peer.source == "weights" else graphs["fp32"]
        target = Target(peer.label, source, None, "cpu", role="peer", loader=peer.load,
                        chunks=peer.chunks)  # fmt: skip
        try:
            # One call per frame (a user's describe of every patch), or the best chunk.
            describer: Any = load_target(target, keypoints, threads)
        except PeerUnavailable as exc:
            print(f"{peer.label} skipped: {exc}", file=sys.stderr)
            continue
        if target.chunks:
            describer = _best_chunk_load(describer, target, frame, keypoints, threads)
        rivals.append((peer.label, describer))
    return frame_versus(frame, ours, rivals, keypoints, rounds=rounds)


def _shape(row: dict[str, Any]) -> str:
    """The width, and the layout where it is not the paper's."""
    layout = row.get("layout", "l2net")
    return f"{row['width']:g}" + ("" if layout == "l2net" else f" {layout}")


def int8_gate(graph: Path, backend: str) -> bool | None:
    """Whether an INT8 graph passed its export gate as run on ``backend`` (OpenVINO's own
    gate where the export measured one); None for float graphs."""
    from hardnet_export.artifacts.metadata import read_metadata

    meta = read_metadata(graph)
    if meta.precision != "int8":
        return None
    quantisation = meta.quantisation
    if quantisation is None:
        return False
    gate = quantisation.gates.get(backend) if backend == "openvino" else None
    gate = gate or quantisation.gate
    return bool(gate and gate.passed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--keypoints", type=int, default=KEYPOINTS)
    parser.add_argument(
        "--rounds", type=int, default=30, help="interleaved rounds of the frame timing"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time ours (runtime.load by default) against the peers per model",
    )
    parser.add_argument(
        "--versus-rounds",
        type=int,
        default=10,
        help="interleaved rounds of ours against the peers (each runs SIFT, ours and every "
        "peer once: PyTorch eager takes seconds per frame for the full model on 2 cores)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from hardnet_export import runtime

    frame = bench_photo()
    stereo = stereo_frame(args.keypoints)
    rows: list[dict[str, Any]] = []
    describers = []
    sift_accuracy: dict[str, Any] = {}
    against: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hardnet-frontier-") as tmp:
        for name, weights, width, layout in candidates(args.model):
            points = exports(name, weights, Path(tmp))
            if args.peers:
                graphs = {p.precision: p.graph for p in points}
                for record in versus_peers(
                    frame, weights, graphs, args.keypoints, args.versus_rounds
                ):
                    against.append({"model": name, **dataclasses.asdict(record)})
                print(f"{name}: ours against the peers timed", file=sys.stderr)
            for point in points:
                describer = runtime.load(
                    point.graph,
                    backend=point.backend,
                    device="cpu",
                    max_batch=MAX_BATCH,
                    **point.options,
                )
                # SIFT's figures do not depend on the row: score it with the first one only.
                tables = run_evaluation(
                    describer.describe, DATA, n_pairs=args.pairs, device="cpu", progress=False,
                    sift=not sift_accuracy,
                )  # fmt: skip
                sift_accuracy = sift_accuracy or {t.dataset: t.results["SIFT"] for t in tables}
                accuracy = {t.dataset: t.results[next(iter(t.results))] for t in tables}
                settings = ""
                if point.precision.startswith("int8") and point.options:
                    settings = ", " + ", ".join(f"{k}={v}" for k, v in point.options.items())
                label = f"{name} {point.precision} ({point.backend}{settings})"
                describers.append((label, describer))
                rows.append(
                    {
                        "label": label,
                        "model": name,
                        "width": width,
                        "layout": layout,
                        "precision": point.precision,
                        "backend": point.backend,
                        "options": point.options,
                        "int8_gate_passed": int8_gate(point.graph, point.backend),
                        "parameters": parameter_count(width, layout),
                        "multiply_adds": multiply_adds(width, layout),
                        "accuracy": accuracy,
                        "stereo_frame": score_describer(describer, stereo),
                    }
                )
                print(f"{label}: scored", file=sys.stderr)
        timing = run_frame_benchmark(
            frame,
            describers,
            keypoints=[args.keypoints],
            image_name="builtin:frame",
            duration_s=args.duration_s,
            command=" ".join(["python", "benchmarks/frontier.py", *(argv or sys.argv[1:])]),
        )
        # The figures of the table: each row against SIFT alone in interleaved rounds (ratios
        # per round), not all rows in one round: a round of 16 sessions on 2 cores measures
        # their thread pools' contention with whatever runs next.
        paired = {
            label: interleaved_compute_times(
                frame, [(label, describer)], args.keypoints, rounds=args.rounds
            )
            for label, describer in describers
        }
    sift_ms = [ms for pair in paired.values() for ms in pair["sift_ms"]]
    reference = timing.references[0]
    for row, target in zip(rows, timing.targets, strict=True):
        case = target.cases[0]
        interleaved = paired[row["label"]]["targets"][row["label"]]
        row["sift_ms_p50_paired"] = paired[row["label"]]["sift_ms_p50"]
        row["frame_ms_p50"] = interleaved["ms_p50"]
        row["frame_ms_p99"] = float(np.percentile(interleaved["ms"], 99))
        row["vs_sift"] = interleaved["vs_sift"]
        row["stages_ms_p50"] = {name: stage.p50 for name, stage in case.stages.items()}
    machine = machine_info()
    result = {
        "format": "hardnet-export-frontier/2",
        "command": timing.command,
        "created": timing.created,
        "machine": machine,
        "int8_isa": int8_isa(),
        "keypoints": reference.keypoints,
        "max_batch": MAX_BATCH,
        "pairs": args.pairs,
        "stereo_frame": {
            "detector": stereo.detector,
            "left_with_ground_truth": int(stereo.valid.sum()),
            **stereo.repeatable(),
        },
        "rounds": args.rounds,
        "sift": {
            "frame_ms_p50": float(np.median(sift_ms)),
            "frame_ms_p99": float(np.percentile(sift_ms, 99)),
            "accuracy": sift_accuracy,
            "stereo_frame": sift_scores(stereo),
        },
        "rows": rows,
        "versus": against,
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


def meets_goal(row: dict[str, Any], sift: dict[str, Any]) -> bool:
    """Issue 16's bar: faster than SIFT compute() per frame, NN accuracy at the motorcycle
    pair's keypoints >= 3 points over SIFT's own descriptor, and (INT8) its gate passed."""
    frame_gain = row["stereo_frame"]["nn@3"] - sift["stereo_frame"]["nn@3"]
    return row["vs_sift"] < 1.0 and frame_gain >= 0.03 and row["int8_gate_passed"] is not False


def _where(row: dict[str, Any]) -> str:
    gate = " gate FAILED" if row["int8_gate_passed"] is False else ""
    return f"{row['precision']} ({row['backend']}){gate}"


def markdown(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]
    sift = result["sift"]
    frame = result["stereo_frame"]
    lines = [
        "# Frontier: time per frame against NN accuracy",
        "",
        f"- command: `{result['command']}`",
        f"- created: {result['created']}",
        f"- machine: {cpu['model']}, {cpu['usable_cpus']} CPUs, {isa_text(cpu)}",
        f"- frame: builtin:frame (800x640), {result['keypoints']} SIFT keypoints; time = "
        "Describer.compute (extraction + inference, chunks of "
        f"{result['max_batch']} patches) p50 over {result['rounds']} interleaved rounds per "
        "row, each running OpenCV SIFT compute() on the same keypoints and the row once, "
        "each call after 50 ms idle (benchmarks/README.md says why); x SIFT = the median "
        "over rounds of the row's time over SIFT's in the same round; SIFT's time: the "
        "median over every row's rounds",
        f"- patch pairs: NN accuracy % ({result['pairs']} pairs, seed 0) on the held-out "
        "built-in photos, the motorcycle stereo pair, and the pair with rotation/zoom jitter; "
        "SIFT on the same 32x32 patches",
        f"- motorcycle keypoints: {frame['detector']} in both views, "
        f"{frame['left_with_ground_truth']} left keypoints with ground truth; each descriptor "
        "by its own compute() (SIFT's own descriptor as the reference); NN@3: the nearest right "
        "descriptor lies within 3 px of the truth, among left keypoints that have a right "
        f"keypoint there ({100 * frame['repeatable@3']:.1f} %); mnn@3: mutual nearest "
        "neighbours within 3 px, of all left keypoints with ground truth",
        "- bf16: the FP32 graph with OpenVINO's bf16 inference, on CPUs with native bf16 only",
        "- int8-cpu: the export's INT8 CPU graph; int8-cpu qat: the model's shipped QAT graph; "
        "both run as `runtime.load(graph, device='cpu')` runs them here (its backend and "
        "options, listed: bf16 float parts where the graph's export passed that gate)",
        "- packed: the narrow convs run several patches side by side (`pack_channels=16`, "
        "the same descriptors; `hardnet_export.runtime.packing`); `runtime.load` packs "
        "`hardnet-eighth` by rule, so its 'ours' rows are packed",
        "",
        "| model | width | precision (backend) | M mult-adds / patch | frame ms p50 | x SIFT "
        "| held-out NN % | stereo NN % | stereo-hard NN % | keypoints NN@3 % | keypoints mnn@3 % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| OpenCV SIFT | - | - | - | {sift['frame_ms_p50']:.1f} | 1.00x | "
        f"{_pct(sift['accuracy'], 'builtin')} | {_pct(sift['accuracy'], 'stereo')} | "
        f"{_pct(sift['accuracy'], 'stereo-hard')} | "
        f"{100 * sift['stereo_frame']['nn@3']:.2f} | {100 * sift['stereo_frame']['mnn@3']:.2f} |",
    ]
    for row in result["rows"]:
        mark = " **(goal)**" if meets_goal(row, sift) else ""
        lines.append(
            f"| {row['model']} | {_shape(row)} | {_where(row)}{mark} | "
            f"{row['multiply_adds'] / 1e6:.1f} | {row['frame_ms_p50']:.1f} | "
            f"{row['vs_sift']:.2f}x | {_pct(row['accuracy'], 'builtin')} | "
            f"{_pct(row['accuracy'], 'stereo')} | {_pct(row['accuracy'], 'stereo-hard')} | "
            f"{100 * row['stereo_frame']['nn@3']:.2f} | {100 * row['stereo_frame']['mnn@3']:.2f} |"
        )
    goal = [r["label"] for r in result["rows"] if meets_goal(r, sift)]
    lines += [
        "",
        "**(goal)**: faster than SIFT compute() per frame and NN@3 at the motorcycle keypoints "
        ">= 3 points over SIFT's own descriptor (INT8: gate passed). Met by: "
        + (", ".join(goal) if goal else "none")
        + ".",
    ]
    lines += versus_markdown(result.get("versus", []))
    return "\n".join(lines) + "\n"


def versus_markdown(against: list[dict[str, Any]]) -> list[str]:
    """Ours against the best peer per model and graph (empty without peers)."""
    if not against:
        return []
    lines = [
        "",
        "## Ours against the peers, per frame",
        "",
        "Ours: `runtime.load(graph, device='cpu')`, no backend and no options, of the FP32 "
        "graph and of the INT8 CPU graph (the shipped QAT graph where the model "
        "ships one, else the export's). Peers: PyTorch "
        "eager FP32 at its best chunk, torch.compile, ONNX Runtime (default session) and "
        "OpenVINO (default settings: bf16 on CPUs with native bf16) on the FP32 graph. "
        "Interleaved rounds of compute() on the same keypoints with OpenCV SIFT compute(), "
        "each call after 50 ms idle; ratios are medians over rounds of the ratio within a "
        "round.",
        "",
        "| model | ours | ours ms | x SIFT | best peer | peer ms | ours x best peer | "
        "goal <= 0.5x SIFT |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for v in against:
        met = "met" if v["meets_goal"] else "NOT met"
        lines.append(
            f"| {v['model']} | {v['ours']} | {v['ours_ms']:.1f} | {v['vs_sift']:.2f}x | "
            f"{v['best_peer']} | {v['peers_ms'][v['best_peer']]:.1f} | {v['ratio']:.2f}x | "
            f"{met} |"
        )
    return lines


#: Time axis ticks, ms.
TICKS_MS = (1, 2, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000)
#: (marker, line style) per precision.
STYLES = {
    "fp32": ("o", "-"),
    "bf16": ("s", "--"),
    "int8-cpu": ("^", ":"),
    "int8-cpu qat": ("v", "-."),
    "fp32 packed": ("D", "-"),
    "bf16 packed": ("P", "--"),
}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    against = result.get("versus", [])
    panels = 3 if against else 2
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 6.5), constrained_layout=True)
    sift = result["sift"]
    times = [sift["frame_ms_p50"], *(r["frame_ms_p50"] for r in result["rows"])]
    lo, hi = min(times), max(times)
    accuracy_panels = (
        (lambda a: 100 * a["stereo_frame"]["nn@3"], "motorcycle pair, NN@3 at SIFT keypoints"),
        (lambda a: 100 * a["accuracy"]["builtin"]["nn_accuracy"], "held-out built-in photos"),
    )
    for ax, (value, title) in zip(axes[:2], accuracy_panels, strict=True):
        ax.axvline(sift["frame_ms_p50"], color="grey", linewidth=0.8, linestyle="--")
        ax.scatter(
            [sift["frame_ms_p50"]],
            [value(sift)],
            marker="*",
            s=220,
            color="black",
            label="OpenCV SIFT compute()",
            zorder=3,
        )
        series = sorted({(r["precision"], r["backend"]) for r in result["rows"]})
        for precision, backend in series:
            chosen = [
                r for r in result["rows"] if (r["precision"], r["backend"]) == (precision, backend)
            ]
            x = [r["frame_ms_p50"] for r in chosen]
            y = [value(r) for r in chosen]
            marker, style = STYLES.get(precision, ("x", "-"))
            ax.plot(
                x, y, marker=marker, linestyle=style, markersize=7, label=f"{precision} ({backend})"
            )
        for r in result["rows"]:
            if (r["precision"], r["backend"]) == series[0]:  # names once, on one series
                short = r["model"].replace("hardnet-", "") if r["model"] != "hardnet" else "full"
                ax.annotate(
                    short,
                    (r["frame_ms_p50"], value(r)),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize="small",
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([t for t in TICKS_MS if lo / 1.5 <= t <= hi * 1.5]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(
            f"time per frame, {result['keypoints']} keypoints, p50 ms (log); dashed: SIFT"
        )
        ax.set_ylabel("NN accuracy %")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        # Below the axes: SIFT, slowest and least accurate, sits in the lower right corner.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize="small")
    if against:
        versus_panel(axes[2], against)
    cpu = result["machine"]["cpu"]
    figure.suptitle(
        f"{cpu['model']}, {cpu['usable_cpus']} CPUs, {isa_text(cpu)}; "
        "builtin:frame 800x640; left of the dashed line: faster than SIFT",
        fontsize="small",
    )
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def versus_panel(ax: Any, against: list[dict[str, Any]]) -> None:
    """Per model, bars of ours over the best peer per frame (one bar per graph of ours),
    each marked with its x SIFT; above 1: ours faster."""
    model_names = list(dict.fromkeys(v["model"] for v in against))
    # A colour per graph kind of ours; each model's bars share its slot (two per model: FP32
    # and its one INT8 graph), so a kind missing for one model leaves no gap.
    colours = {label: f"C{j}" for j, label in enumerate(dict.fromkeys(v["ours"] for v in against))}
    named: set[str] = set()
    for i, model in enumerate(model_names):
        present = [v for v in against if v["model"] == model]
        width = 0.8 / len(present)
        for j, v in enumerate(present):
            x = i + (j - (len(present) - 1) / 2) * width
            label = v["ours"]
            ax.bar(x, v["ratio"], width * 0.9, color=colours[label],
                   label=None if label in named else label)  # fmt: skip
            named.add(label)
            ax.annotate(f"{v['ratio']:.2f}x\n{v['vs_sift']:.2f}x SIFT", (x, v["ratio"]),
                        textcoords="offset points", xytext=(0, 3), ha="center",
                        fontsize="x-small")  # fmt: skip
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(model_names)), model_names, fontsize="small")
    ax.set_ylim(0, max(v["ratio"] for v in against) * 1.35)
    ax.set_ylabel("ours x best peer per frame (above 1: ours faster)")
    ax.set_title(f"ours against the best peer, {against[0]['size']} keypoints")
    ax.legend(fontsize="x-small", loc="upper left")


if __name__ == "__main__":
    raise SystemExit(main())
