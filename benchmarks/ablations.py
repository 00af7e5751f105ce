"""The paper's ablations at small scale on the built-in data, with a fixed budget of pairs.

Questions (Mishchuk et al. 2017, sections 4-5):
1. negatives: hardest in batch ("min") vs all negatives ("average") vs one random negative;
2. loss: triplet margin vs softmin ("softmax") vs contrastive, all with hardest in batch;
3. batch size 64 .. 1024 with the same number of pairs seen (so fewer steps for larger batches).

Every run trains from the same seed on the same built-in pair stream (training photos only)
for ``--pairs`` pairs with the default recipe otherwise (SGD, momentum 0.9, dampening 0.9,
linear decay to 0), then is scored on the motorcycle stereo pairs and the built-in validation
pairs (held-out photos), with OpenCV SIFT as the reference row.

Usage (about 15-25 minutes on a shared 2-core CPU with the defaults):
    python benchmarks/ablations.py --pairs 8192 --eval-pairs 1000
Writes benchmarks/results/ablations.md and ablations.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from hardnet_export._io import atomic_write_text
from hardnet_export.data.builtin import validation_pairs
from hardnet_export.data.stereo import stereo_pairs
from hardnet_export.evaluation.describers import as_describer
from hardnet_export.evaluation.pairs import evaluate_matched_pairs
from hardnet_export.evaluation.sift import SIFT_SIZE, sift_describer
from hardnet_export.train.config import TrainConfig
from hardnet_export.train.trainer import train

RESULTS = Path(__file__).parent / "results"


def runs(base_batch: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(question, label, config overrides) of every run; shared runs are listed once."""
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("negatives", "hardest in batch (min)", {}),
        ("negatives", "average", {"batch_reduce": "average"}),
        ("negatives", "random", {"batch_reduce": "random"}),
        ("loss", "softmin (softmax)", {"loss_type": "softmax"}),
        ("loss", "contrastive", {"loss_type": "contrastive"}),
    ]
    for b in (64, 128, 256, 512, 1024):
        if b != base_batch:
            out.append(("batch size", f"batch {b}", {"batch_size": b}))
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8192, help="training pairs per run")
    parser.add_argument("--batch-size", type=int, default=128, help="batch of the non-batch runs")
    parser.add_argument("--lr", type=float, default=5.0)
    parser.add_argument("--eval-pairs", type=int, default=1000)
    parser.add_argument("--workdir", default="runs/ablations")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--precision",
        default="auto",
        help="trainer precision; bf16 is ~2.8x faster on CPUs with native bf16 (AVX512-BF16, AMX)",
    )
    args = parser.parse_args()

    evalsets = {
        "stereo": stereo_pairs(args.eval_pairs, seed=0),
        "builtin-val": validation_pairs(args.eval_pairs, seed=0),
    }
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    results: list[dict[str, Any]] = []
    sift = sift_describer(SIFT_SIZE)
    results.append(
        {
            "question": "reference",
            "label": f"OpenCV SIFT (size {SIFT_SIZE})",
            **{k: evaluate_matched_pairs(sift, v) for k, v in evalsets.items()},
        }
    )
    for i, (question, label, overrides) in enumerate(runs(args.batch_size)):
        batch = overrides.get("batch_size", args.batch_size)
        steps = max(1, args.pairs // batch)
        config = TrainConfig(
            data=["builtin"], out=str(workdir / f"run{i}"), steps=steps, batch_size=batch,
            lr=args.lr, num_workers=args.num_workers, progress=False, log_every=max(1, steps // 8),
            checkpoint_every=steps, precision=args.precision, threads=args.threads,
            **{k: v for k, v in overrides.items() if k != "batch_size"},
        )  # fmt: skip
        t0 = time.perf_counter()
        final = train(config)
        seconds = time.perf_counter() - t0
        _, describe = as_describer(final, device="cpu")
        row = {
            "question": question,
            "label": label,
            "batch_size": batch,
            "steps": steps,
            "train_seconds": round(seconds, 1),
            **{k: evaluate_matched_pairs(describe, v) for k, v in evalsets.items()},
        }
        print(json.dumps(row), flush=True)
        results.append(row)

    meta = {
        "pairs_per_run": args.pairs,
        "base_batch_size": args.batch_size,
        "lr": args.lr,
        "precision": args.precision,
        "eval_pairs": args.eval_pairs,
        "cpu": _cpu_name(),
        "command": f"python benchmarks/ablations.py --pairs {args.pairs} --batch-size "
        f"{args.batch_size} --lr {args.lr:g} --eval-pairs {args.eval_pairs} "
        f"--precision {args.precision} --threads {args.threads}",
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(
        RESULTS / "ablations.json", json.dumps({"meta": meta, "runs": results}, indent=2) + "\n"
    )
    atomic_write_text(RESULTS / "ablations.md", render(meta, results))


def render(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        "# Ablations at small scale (built-in data)",
        "",
        f"Budget: **{meta['pairs_per_run']} training pairs per run** (a tiny fraction of the "
        "paper's 50M), same seed and pair stream for every run, lr "
        f"{meta['lr']:g} with linear decay to 0, {meta['precision']} precision, batch "
        f"{meta['base_batch_size']} unless the "
        "row varies it (then steps = pairs / batch). Scored on "
        f"{meta['eval_pairs']} motorcycle stereo pairs and {meta['eval_pairs']} built-in "
        "validation pairs (held-out photos). FPR95 lower is better, NN accuracy higher.",
        f"CPU: {meta['cpu']} (2 cores, shared with other jobs: times are indicative only).",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| question | run | batch | steps | stereo FPR95 % | stereo NN acc % "
        "| val FPR95 % | val NN acc % | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s, v = r["stereo"], r["builtin-val"]
        lines.append(
            f"| {r['question']} | {r['label']} | {r.get('batch_size', '')} | "
            f"{r.get('steps', '')} | {100 * s['fpr95']:.2f} | {100 * s['nn_accuracy']:.1f} | "
            f"{100 * v['fpr95']:.2f} | {100 * v['nn_accuracy']:.1f} | "
            f"{r.get('train_seconds', '')} |"
        )
    lines += [
        "",
        "Caveat: at this budget the runs are far from converged and one seed each; "
        "differences of a few points are within run-to-run noise. The paper's claims are "
        "about full training (10 epochs of 5M pairs).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
