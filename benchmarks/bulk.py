"""Bulk extraction: images/s and patches/s of each engine on the same collection.

N copies of the benchmark frame (:func:`hardnet_export.benchmark.frame.bench_photo`, an
800x640 photo), each shifted, flipped or turned so that every file differs, at 2000 SIFT
keypoints each, described into an hloc ``features.h5`` by:

- ``describe`` (the peer: one image at a time, the next one read and detected in a helper
  thread: what ``hardnet-export describe -o f.h5`` and hloc's extractor do);
- ``extract --engine local`` (the patches of 16 images per batch, atomic shards, merge);
- ``extract --engine ray`` with 1 and 2 describers (a local Ray started for each run: its
  start is in the time, as a user pays it).

Every run starts from an empty output and uses the same model and backend (the runtime's
choice for this CPU unless --backend). Ratios are against the local engine, measured in the
same run; the local engine runs first and again last, so a neighbour's load shows as the
gap between its two runs. The projection to k machines multiplies the Ray figure of one
machine by k and adds the merge (measured here, per image), and is labelled as a projection.

Usage (about 5 minutes on a shared 2-core CPU at 200 images):
    python benchmarks/bulk.py [--images 200] [--keypoints 2000] [--model hardnet]
Writes benchmarks/results/bulk-<machine>.{json,md,png} and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hardnet_export import runtime
from hardnet_export._io import atomic_path, atomic_write_text
from hardnet_export.applications.extract import Scale, extract
from hardnet_export.applications.hloc import write_features
from hardnet_export.benchmark.frame import bench_photo
from hardnet_export.benchmark.machine import cpu_slug, machine_info

RESULTS = Path(__file__).parent / "results"
#: Images a user would extract on one node, for the projection.
COLLECTION = 100_000


def write_collection(folder: Path, count: int) -> list[Path]:
    """``count`` distinct PNGs of the benchmark frame."""
    frame = cv2.cvtColor(bench_photo(), cv2.COLOR_BGR2GRAY)
    paths = []
    for i in range(count):
        image = np.roll(frame, (7 * i) % frame.shape[1], axis=1)
        image = cv2.flip(image, 1) if i % 2 else image
        path = folder / f"{i // 50:02d}" / f"frame{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def run_describe(root: Path, paths: list[Path], out: Path, options: dict[str, Any]) -> dict:
    """The peer: ``describe -o f.h5``'s loop (one image per inference call)."""
    start = time.perf_counter()
    describer = runtime.load(options["model"], backend=options["backend"], device="cpu")
    patches = 0
    for _, features in write_features(
        out, describer, paths,
        max_keypoints=options["max_keypoints"],
    ):  # fmt: skip
        patches += len(features.keypoints)
    seconds = time.perf_counter() - start
    return {"images": len(paths), "patches": patches, "seconds": seconds, "merge_s": 0.0}


def run_extract(root: Path, out: Path, options: dict[str, Any], engine: str, workers: int) -> dict:
    start = time.perf_counter()
    summary = extract(
        root, out, model=options["model"], backend=options["backend"], device="cpu",
        max_keypoints=options["max_keypoints"], engine=engine,
        scale=Scale(images_per_shard=16, workers=(workers, workers)),
    )  # fmt: skip
    total = time.perf_counter() - start
    return {
        "images": summary.described,
        "patches": summary.patches,
        "seconds": total,
        "engine_s": summary.seconds,
        "merge_s": total - summary.seconds,
        "workers": list(summary.workers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--keypoints", type=int, default=2000)
    parser.add_argument("--model", default="hardnet")
    parser.add_argument("--backend", default=None, help="default: the runtime's CPU choice")
    args = parser.parse_args()
    from hardnet_export.artifacts.models import lookup

    entry = lookup(args.model)
    model = str(entry.file("onnx")) if entry is not None else args.model
    options = {"model": model, "backend": args.backend, "max_keypoints": args.keypoints}
    machine = machine_info()
    choice = runtime.load(model, backend=args.backend, device="cpu").choice
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hardnet-bulk-") as tmp:
        root = Path(tmp) / "images"
        paths = write_collection(root, args.images)
        plan = [
            ("extract --engine local", "local", 1),
            ("describe (one image per call)", None, 1),
            ("extract --engine ray, 1 describer", "ray", 1),
            ("extract --engine ray, 2 describers", "ray", 2),
            ("extract --engine local (again)", "local", 1),
        ]
        for i, (label, engine, workers) in enumerate(plan):
            out = Path(tmp) / f"run{i}.h5"
            print(f"{label} ...", flush=True)
            if engine is None:
                found = run_describe(root, paths, out, options)
            else:
                found = run_extract(root, out, options, engine, workers)
            found["label"], found["engine"], found["describers"] = label, engine, workers
            found["output_mb"] = out.stat().st_size / 2**20
            rows.append(found)
            out.unlink()
        if args.images:
            shutil.rmtree(root)
    local = [r for r in rows if r["engine"] == "local"]
    local_rate = max(r["images"] / r["seconds"] for r in local)
    for row in rows:
        row["images_per_s"] = row["images"] / row["seconds"]
        row["patches_per_s"] = row["patches"] / row["seconds"]
        row["vs_local"] = row["images_per_s"] / local_rate
    best_ray = max((r for r in rows if r["engine"] == "ray"), key=lambda r: r["images_per_s"])
    merge_per_image = max(r["merge_s"] for r in local) / args.images
    projection = []
    for nodes in (1, 4, 16, 64):
        describe_h = COLLECTION / (nodes * best_ray["images_per_s"]) / 3600
        merge_h = COLLECTION * merge_per_image / 3600
        projection.append({"nodes": nodes, "describe_h": describe_h, "merge_h": merge_h})
    result = {
        "benchmark": "bulk extraction",
        "command": "python benchmarks/bulk.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None),
        "machine": machine,
        "model": model,
        "choice": None if choice is None else choice.summary(),
        "images": args.images,
        "keypoints": args.keypoints,
        "runs": rows,
        "projection": {
            "collection": COLLECTION,
            "per_node_images_per_s": best_ray["images_per_s"],
            "merge_s_per_image": merge_per_image,
            "rows": projection,
            "assumes": "every node as fast as this one, images and output on shared storage "
            "that keeps up, the merge on one machine at this one's disk speed",
        },
    }
    slug = cpu_slug().removeprefix("cpu-")
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"bulk-{slug}.json", json.dumps(result, indent=2) + "\n")
    table = render(result)
    atomic_write_text(RESULTS / f"bulk-{slug}.md", table)
    plot(result, RESULTS / f"bulk-{slug}.png")
    print(table)


def render(result: dict[str, Any]) -> str:
    cpu = result["machine"]["cpu"]
    lines = [
        f"# Bulk extraction: {result['images']} images at {result['keypoints']} keypoints",
        "",
        f"CPU: {cpu['model']}, {cpu['usable_cpus']} usable CPUs, ISA {', '.join(cpu['isa'])} "
        f"(int8 kernels: {cpu['int8_isa']}). Model `{Path(result['model']).name}`, "
        f"{result['choice']}. Command: `{result['command']}`.",
        "",
        "| run | images/s | patches/s | vs local engine | wall s | merge s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["runs"]:
        lines.append(
            f"| {row['label']} | {row['images_per_s']:.2f} | {row['patches_per_s']:,.0f} | "
            f"{row['vs_local']:.2f}x | {row['seconds']:.1f} | {row['merge_s']:.1f} |"
        )
    p = result["projection"]
    lines += [
        "",
        f"**Projection** (not a measurement) for {p['collection']:,} images: "
        f"{p['per_node_images_per_s']:.2f} images/s per node (the best Ray run here) x k "
        f"nodes, plus the merge at {p['merge_s_per_image'] * 1000:.1f} ms per image; "
        f"assumes {p['assumes']}.",
        "",
        "| nodes | describe (h) | merge (h) |",
        "|---:|---:|---:|",
    ]
    for row in p["rows"]:
        lines.append(f"| {row['nodes']} | {row['describe_h']:.2f} | {row['merge_h']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    labels = [r["label"] for r in runs]
    rates = [r["images_per_s"] for r in runs]
    colours = ["#4c72b0" if r["engine"] == "local" else "#dd8452" if r["engine"] == "ray"
               else "#8c8c8c" for r in runs]  # fmt: skip
    bars = ax.barh(labels[::-1], rates[::-1], color=colours[::-1])
    for bar, row in zip(bars, runs[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {row['images_per_s']:.2f} img/s ({row['vs_local']:.2f}x local)",
                va="center", fontsize=9)  # fmt: skip
    ax.set_xlim(0, max(rates) * 1.45)
    ax.set_xlabel("images per second (higher is better)")
    cpu = result["machine"]["cpu"]
    ax.set_title(
        f"{result['images']} images x {result['keypoints']} keypoints, "
        f"{Path(result['model']).name}\n{cpu['model']}, {cpu['usable_cpus']} CPUs "
        f"({cpu['int8_isa']})",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
