"""INT8 settings by measurement: per int8 kernel kind, and the mixed-precision trade-off.

Two tables for the shipped model, on this machine's CPU (its int8 kernel kind is in the file
name and the header):

1. **Kernel kinds** (``cpu`` flavour settings per ISA, and the ``tensorrt`` flavour on this
   CPU): each graph run on this host's ONNX Runtime kernels and in exact Q/DQ semantics;
   ``host vs exact`` is the worst cosine between the two (1.0000 = the kernels compute the
   graph as written; lower = they saturate), then speed relative to ONNX Runtime FP32 at
   batch 1 and 256 and accuracy against FP32.
2. **Trade-off**: both flavours, calibration minmax / percentile, and 0..4 early layers kept
   float (FP16 in the tensorrt flavour, FP32 in the cpu flavour): worst and mean cosine to
   FP32 and NN accuracy on the held-out built-in photos, the motorcycle pair and the pair
   with rotation and zoom, plus the float share of multiply-adds and (cpu flavour) speed.

Figures are in each flavour's gate semantics (tensorrt: exact Q/DQ; cpu: this host's kernels
with the settings for this host). Speeds are medians of interleaved rounds in one run, as
ratios to ONNX Runtime FP32 in the same run. Writes
``benchmarks/results/int8-<cpu>-<isa>.{md,json,png}`` (``cpu_slug`` ends in the int8 kernel kind).

Usage::

    python benchmarks/int8.py                    # 2000 pairs per set, 2 threads
    python benchmarks/int8.py --pairs 500 --duration-s 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export import host
from hardnet_export._io import atomic_path, atomic_write_text
from hardnet_export.artifacts.metadata import SEMANTICS_EXACT, SEMANTICS_HOST
from hardnet_export.benchmark.machine import cpu_slug, machine_info
from hardnet_export.benchmark.timing import time_step
from hardnet_export.calibration.dataset import make_calibration_set
from hardnet_export.calibration.gate import worst_cosine
from hardnet_export.data.builtin import validation_pairs
from hardnet_export.data.stereo import HARD_JITTER, stereo_pairs
from hardnet_export.data.types import MatchedPairs
from hardnet_export.evaluation.pairs import pair_metrics
from hardnet_export.export.int8 import DEFAULT_FLOAT_LAYERS, Quantizer
from hardnet_export.export.onnx import resolve_weights, torch_to_onnx
from hardnet_export.export.sensitivity import conv_multiply_adds
from hardnet_export.runtime.onnxruntime_backend import ort_session

FLOAT_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("conv0",),
    ("conv0", "conv1"),
    ("conv0", "conv1", "conv2"),
    ("conv0", "conv1", "conv2", "conv3"),
)


def session(model: Any, semantics: str, threads: int) -> Any:
    return ort_session(model, semantics=semantics, threads=threads)


def run(sess: Any, patches: np.ndarray, batch: int = 256) -> np.ndarray:
    name = sess.get_inputs()[0].name
    x = patches[:, None]
    return np.concatenate(
        [sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    )


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def accuracy(
    sets: dict[str, MatchedPairs], reference: dict[str, np.ndarray], sess: Any
) -> dict[str, dict[str, float]]:
    """Worst/mean cosine to FP32 and NN accuracy (with FP32's) on each set."""
    out = {}
    for name, pairs in sets.items():
        n = len(pairs)
        patches = np.concatenate([pairs.anchors, pairs.positives])
        got = run(sess, patches)
        ref = reference[name]
        sim = cosine(ref, got)
        out[name] = {
            # As the export gate takes it: flat patches carry no signal (see textured()).
            "min_cosine": worst_cosine(ref, got, patches),
            "min_cosine_all": float(sim.min()),
            "mean_cosine": float(sim.mean()),
            "nn_accuracy": 100 * pair_metrics(got[:n], got[n:])["nn_accuracy"],
            "nn_accuracy_fp32": 100 * pair_metrics(ref[:n], ref[n:])["nn_accuracy"],
        }
    return out


def speeds(
    sessions: dict[str, Any], batches: Sequence[int], duration_s: float, rounds: int
) -> dict[str, dict[int, float]]:
    """Median seconds per call of each session at each batch, over interleaved rounds."""
    rng = np.random.default_rng(0)
    inputs = {b: rng.integers(0, 256, (b, 1, 32, 32), dtype=np.uint8) for b in batches}
    found: dict[str, dict[int, list[float]]] = {k: {b: [] for b in batches} for k in sessions}
    for _ in range(rounds):
        for key, sess in sessions.items():
            name = sess.get_inputs()[0].name
            for b in batches:
                step: Callable[[], None] = lambda s=sess, n=name, x=inputs[b]: s.run(None, {n: x})  # noqa: E731
                timings = time_step(step, warmup_s=0.1, duration_s=duration_s)
                found[key][b].append(float(np.median(timings.host)))
    return {k: {b: float(np.median(v[b])) for b in batches} for k, v in found.items()}


def _fmt_sets(acc: dict[str, dict[str, float]]) -> list[str]:
    cells = []
    for row in acc.values():
        delta = row["nn_accuracy"] - row["nn_accuracy_fp32"]
        cells.append(f"{row['min_cosine']:.4f} / {row['mean_cosine']:.5f} / {delta:+.2f}")
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs per evaluation set")
    parser.add_argument("--calibration-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=1.0, help="timed seconds per case")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    this_isa = host.int8_isa()
    model, weights_sha, _ = resolve_weights(None)
    fp32 = torch_to_onnx(model)
    calibration = make_calibration_set("builtin", size=args.calibration_size, seed=0)
    sets = {
        "held-out photos": validation_pairs(args.pairs, seed=0),
        "motorcycle": stereo_pairs(args.pairs, seed=0),
        "motorcycle +rot/zoom": stereo_pairs(args.pairs, seed=0, jitter=HARD_JITTER),
    }
    fp32_session = session(fp32, SEMANTICS_HOST, args.threads)
    reference = {
        name: run(fp32_session, np.concatenate([p.anchors, p.positives]))
        for name, p in sets.items()
    }
    macs = conv_multiply_adds(fp32)
    total_macs = sum(macs.values())
    print(f"int8 kernels here: {this_isa} ({host.INT8_ISAS[this_isa]})", flush=True)

    # 1. Kernel kinds.
    kernel_rows: list[dict[str, Any]] = []
    timed: dict[str, Any] = {"fp32": fp32_session}
    kernel_variants = [
        ("cpu", "avx512-vnni", "8-bit weights (settings for VNNI)"),
        ("cpu", "avx2", "7-bit weights (settings for AVX2)"),
        ("tensorrt", None, "tensorrt flavour (symmetric int8)"),
    ]
    for target, isa, label in kernel_variants:
        with Quantizer(fp32, calibration, target=target, method="percentile", isa=isa) as q:
            for kept in ((), DEFAULT_FLOAT_LAYERS[target]):
                graph = q.build(kept)
                host_sess = session(graph, SEMANTICS_HOST, args.threads)
                exact_sess = session(graph, SEMANTICS_EXACT, args.threads)
                probe = np.concatenate([p.anchors for p in sets.values()])
                fidelity = float(cosine(run(exact_sess, probe), run(host_sess, probe)).min())
                key = f"{label}, float {','.join(kept) or 'none'}"
                timed[key] = host_sess
                kernel_rows.append(
                    {
                        "variant": key,
                        "target": target,
                        "made_for": isa,
                        "float_layers": list(kept),
                        "host_vs_exact_min_cosine": fidelity,
                        "host": accuracy(sets, reference, host_sess),
                        "exact": accuracy(sets, reference, exact_sess),
                    }
                )
                print(f"  {key}: host vs exact {fidelity:.4f}", flush=True)

    # 2. Trade-off.
    tradeoff_rows: list[dict[str, Any]] = []
    for target in ("tensorrt", "cpu"):
        semantics = SEMANTICS_EXACT if target == "tensorrt" else SEMANTICS_HOST
        for method in ("minmax", "percentile"):
            with Quantizer(fp32, calibration, target=target, method=method) as q:
                for kept in FLOAT_SETS:
                    graph = q.build(kept)
                    sess = session(graph, semantics, args.threads)
                    key = f"{target} {method}, float {','.join(kept) or 'none'}"
                    if target == "cpu":
                        timed[key] = sess
                    acc = accuracy(sets, reference, sess)
                    tradeoff_rows.append(
                        {
                            "variant": key,
                            "target": target,
                            "method": method,
                            "semantics": semantics,
                            "float_layers": list(kept),
                            "float_mac_share": sum(macs[k] for k in kept) / total_macs,
                            "default": method == "percentile"
                            and tuple(kept) == DEFAULT_FLOAT_LAYERS[target],
                            "accuracy": acc,
                        }
                    )
                    worst = min(v["min_cosine"] for v in acc.values())
                    print(f"  {key}: worst cosine {worst:.4f}", flush=True)

    print("timing ...", flush=True)
    times = speeds(timed, (1, 256), args.duration_s, args.rounds)
    base = times["fp32"]
    for row in [*kernel_rows, *tradeoff_rows]:
        if row["variant"] in times:
            t = times[row["variant"]]
            row["speed_vs_fp32"] = {str(b): base[b] / t[b] for b in t}
            row["ms_batch1"] = 1e3 * t[1]
            row["patches_per_s_256"] = 256 / t[256]
    machine = machine_info()
    result = {
        "machine": machine,
        "int8_isa": this_isa,
        "weights_sha256": weights_sha,
        "threads": args.threads,
        "pairs": args.pairs,
        "fp32": {"ms_batch1": 1e3 * base[1], "patches_per_s_256": 256 / base[256]},
        "kernel_kinds": kernel_rows,
        "tradeoff": tradeoff_rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"int8-{cpu_slug(machine['cpu'])}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), render(result, list(sets)))
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {stem}.md, .json, .png")
    return 0


def render(result: dict[str, Any], set_names: list[str]) -> str:
    machine = result["machine"]
    cpu = machine["cpu"]
    isa = result["int8_isa"]
    head = " | ".join(f"{s}: worst / mean cos / NN" for s in set_names)
    lines = [
        f"# INT8 settings on {cpu['model']} ({cpu['usable_cpus']} CPUs, int8 kernels: {isa})",
        "",
        f"`python benchmarks/int8.py` (shipped model, {result['pairs']} pairs per set, "
        f"{result['threads']} threads, onnxruntime {machine['libraries'].get('onnxruntime')}). "
        f"ONNX Runtime FP32 here: {result['fp32']['ms_batch1']:.3f} ms at batch 1, "
        f"{result['fp32']['patches_per_s_256']:,.0f} patches/s at batch 256. "
        "Cells: worst cosine to FP32 over textured patches (as the export gate takes it; "
        "flat patches, under one grey level of standard deviation, carry no signal) / mean "
        "cosine / NN accuracy minus FP32's (points); the JSON also has the worst over all. "
        "Speeds: medians of interleaved rounds, as ratios to ONNX Runtime FP32 in the same run.",
        "",
        f"## 1. Kernel kinds: what this CPU's ({isa}) ONNX Runtime int8 kernels compute",
        "",
        "`host vs exact`: worst cosine between this host's kernels and the graph's exact Q/DQ "
        "semantics (1.0000: the kernels compute the graph as written).",
        "",
        f"| variant | host vs exact | x FP32 batch 1 | x FP32 batch 256 | {head} |",
        "|---|---:|---:|---:|" + "---|" * len(set_names),
    ]
    for row in result["kernel_kinds"]:
        speed = row.get("speed_vs_fp32", {})
        lines.append(
            f"| {row['variant']} | {row['host_vs_exact_min_cosine']:.4f} | "
            f"{speed.get('1', float('nan')):.2f} | {speed.get('256', float('nan')):.2f} | "
            + " | ".join(_fmt_sets(row["host"]))
            + " |"
        )
    lines += [
        "",
        "## 2. Trade-off: layers kept float",
        "",
        "tensorrt flavour in exact Q/DQ semantics (what TensorRT computes; float layers FP16), "
        f"cpu flavour on this host's kernels with the settings for {isa} (float layers FP32). "
        "**Bold**: the default export.",
        "",
        f"| variant | float MACs | x FP32 batch 1 | x FP32 batch 256 | {head} |",
        "|---|---:|---:|---:|" + "---|" * len(set_names),
    ]
    for row in result["tradeoff"]:
        speed = row.get("speed_vs_fp32")
        name = f"**{row['variant']}**" if row["default"] else row["variant"]
        b1 = f"{speed['1']:.2f}" if speed else "GPU"
        b256 = f"{speed['256']:.2f}" if speed else "GPU"
        lines.append(
            f"| {name} | {100 * row['float_mac_share']:.0f}% | {b1} | {b256} | "
            + " | ".join(_fmt_sets(row["accuracy"]))
            + " |"
        )
    lines.append("")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, target in zip(axes, ("tensorrt", "cpu"), strict=True):
        for method, marker in (("minmax", "o"), ("percentile", "s")):
            rows = [
                r for r in result["tradeoff"] if r["target"] == target and r["method"] == method
            ]
            x = [100 * r["float_mac_share"] for r in rows]
            y = [min(v["min_cosine"] for v in r["accuracy"].values()) for r in rows]
            ax.plot(x, y, marker=marker, label=f"{method} calibration")
            for r, xi, yi in zip(rows, x, y, strict=True):
                label = ",".join(k.replace("conv", "") for k in r["float_layers"]) or "none"
                ax.annotate(
                    label, (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=8
                )
        ax.axhline(0.98, color="grey", linestyle="--", linewidth=1, label="target 0.98")
        ax.set_xlabel("multiply-adds kept float (%)  [labels: float conv layers]")
        ax.set_ylabel("worst textured patch's cosine to FP32 (all three sets)")
        semantics = "exact Q/DQ" if target == "tensorrt" else f"{result['int8_isa']} kernels"
        ax.set_title(f"{target} flavour ({semantics})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    cpu = result["machine"]["cpu"]["model"]
    fig.suptitle(f"INT8 mixed precision, shipped HardNet, {cpu}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
