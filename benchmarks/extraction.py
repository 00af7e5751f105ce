"""Patch extraction against OpenCV SIFT's compute() on the same keypoints, and pipelined
``describe`` of many images against the sequential loop.

1. Extraction: the benchmark frame (:func:`hardnet_export.benchmark.frame.bench_photo`, an
   800x640 photo) and its 2000 strongest SIFT keypoints; ``extract_patches`` on the grey and
   on the BGR image and ``cv2.SIFT.compute`` on the same keypoints, timed in alternating
   rounds (the timing rules of ``hardnet-export bench``), so a neighbour's load hits both. The
   ratio is per round (extraction p50 / SIFT p50), reported as the median round. A profile of
   one extraction says where its time goes (remap, blur, pyramid, the rest).
2. Pipelining: ``describe_images`` over 8 PNG files of the frame (flipped and turned copies)
   with the shipped FP32 ONNX model on ONNX Runtime, with and without the helper thread,
   alternating; images per second, and a check that both give the same arrays.

Usage (about a minute on a shared 2-core CPU):
    python benchmarks/extraction.py [--rounds 5] [--duration-s 1] [--images 8]
Writes benchmarks/results/extraction-<machine>.json and prints the table.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hardnet_export._io import atomic_write_text
from hardnet_export.benchmark.frame import bench_photo, sift_keypoints
from hardnet_export.benchmark.machine import cpu_slug, machine_info
from hardnet_export.benchmark.stats import LatencySummary
from hardnet_export.benchmark.timing import time_step
from hardnet_export.geometry import as_gray, extract_patches
from hardnet_export.host import int8_isa

RESULTS = Path(__file__).parent / "results"
GOAL = 0.15


def _p50_ms(step: Any, duration_s: float) -> LatencySummary:
    def timed() -> None:
        step()

    return LatencySummary.from_seconds(time_step(timed, warmup_s=0.2, duration_s=duration_s).host)


def extraction(rounds: int, duration_s: float, count: int) -> dict[str, Any]:
    bgr = bench_photo()
    gray = as_gray(bgr)
    kps = sift_keypoints(gray, count)
    sift = cv2.SIFT_create()
    steps = {
        "sift compute (grey)": lambda: sift.compute(gray, kps),
        "extract_patches (grey)": lambda: extract_patches(gray, kps),
        "extract_patches (BGR)": lambda: extract_patches(bgr, kps),
    }
    runs: dict[str, list[LatencySummary]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            runs[name].append(_p50_ms(step, duration_s))
    sift_p50 = np.array([s.p50 for s in runs["sift compute (grey)"]])
    rows = []
    for name, summaries in runs.items():
        p50 = np.array([s.p50 for s in summaries])
        ratios = p50 / sift_p50
        rows.append(
            {
                "step": name,
                "p50_ms_per_round": p50.round(3).tolist(),
                "p99_ms_per_round": [round(s.p99, 3) for s in summaries],
                "p50_ms": float(np.median(p50)),
                "vs_sift_per_round": ratios.round(4).tolist(),
                "vs_sift": float(np.median(ratios)),
            }
        )
    return {
        "image": "skimage coffee, 1.6x bicubic, central 800x640 (bench_photo)",
        "image_shape": list(bgr.shape),
        "keypoints": len(kps),
        "rounds": rounds,
        "duration_s": duration_s,
        "rows": rows,
        "profile": _profile(gray, kps),
    }


def _profile(gray: np.ndarray, kps: list[cv2.KeyPoint]) -> dict[str, float]:
    """Share of one extraction's time per OpenCV call, and the numpy/Python rest."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(10):
        extract_patches(gray, kps)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(t[2] for t in stats.values())  # tottime of every function: the whole run
    shares: dict[str, float] = {}
    for (_, _, name), (_, _, tottime, _, _) in stats.items():
        for key in ("remap", "GaussianBlur", "pyrDown", "KeyPoint_convert"):
            if name == f"<built-in method cv2.{key}>" or name.endswith(f"{key}>"):
                shares[key] = shares.get(key, 0.0) + tottime / total
    shares["numpy and Python (maps, sorting, checks)"] = 1.0 - sum(shares.values())
    return {k: round(v, 3) for k, v in shares.items()}


def pipelining(n_images: int, passes: int) -> dict[str, Any]:
    from hardnet_export import runtime
    from hardnet_export.applications.features import describe_images

    describer = runtime.load(None, backend="onnxruntime", device="cpu")
    frame = bench_photo()
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(n_images):
            image = np.rot90(frame, i % 4) if i % 2 else frame[:, ::-1] if i % 4 == 2 else frame
            path = Path(folder) / f"frame{i}.png"
            cv2.imwrite(str(path), np.ascontiguousarray(image))
            paths.append(path)
        seconds: dict[str, list[float]] = {"sequential": [], "pipelined": []}
        outputs: dict[str, list[Any]] = {}
        list(describe_images(describer, paths[:2], pipeline=False))  # warm-up
        for _ in range(passes):
            for mode in seconds:
                start = time.perf_counter()
                outputs[mode] = list(
                    describe_images(describer, paths, pipeline=mode == "pipelined")
                )
                seconds[mode].append(time.perf_counter() - start)
    same = all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for a, b in zip(outputs["sequential"], outputs["pipelined"], strict=True)
    )
    rates = {mode: [n_images / s for s in values] for mode, values in seconds.items()}
    ratio = np.median(np.array(rates["pipelined"]) / np.array(rates["sequential"]))
    return {
        "images": n_images,
        "keypoints_per_image": int(np.median([len(k) for k, _ in outputs["sequential"]])),
        "model": f"{describer.backend} {describer.precision} ({describer.device})",
        "passes": passes,
        "images_per_s": {mode: [round(r, 3) for r in v] for mode, v in rates.items()},
        "images_per_s_median": {mode: float(np.median(v)) for mode, v in rates.items()},
        "pipelined_over_sequential": float(ratio),
        "identical_output": bool(same),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--keypoints", type=int, default=2000)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--no-pipeline", action="store_true", help="Skip part 2.")
    args = parser.parse_args()
    machine = machine_info()
    result: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "opencv_threads": cv2.getNumThreads(),
        "goal_vs_sift": GOAL,
        "extraction": extraction(args.rounds, args.duration_s, args.keypoints),
    }
    if not args.no_pipeline:
        result["pipelining"] = pipelining(args.images, args.passes)
    ext = result["extraction"]
    cpu = machine["cpu"]
    print(
        f"{ext['keypoints']} SIFT keypoints of a {ext['image_shape'][1]}x{ext['image_shape'][0]} "
        f"photo; {cpu['model']}, {cpu['usable_cpus']} CPUs, int8 ISA {int8_isa()}, "
        f"OpenCV threads {result['opencv_threads']}"
    )
    print(f"{'step':<26}{'p50 ms':>9}{'x SIFT':>9}   per round x SIFT")
    for row in ext["rows"]:
        rounds = " ".join(f"{r:.3f}" for r in row["vs_sift_per_round"])
        print(f"{row['step']:<26}{row['p50_ms']:>9.2f}{row['vs_sift']:>9.3f}   {rounds}")
    print(
        "extraction time by part: "
        + ", ".join(f"{k} {100 * v:.0f} %" for k, v in ext["profile"].items())
    )
    if "pipelining" in result:
        pipe = result["pipelining"]
        rates = pipe["images_per_s_median"]
        print(
            f"describe of {pipe['images']} PNG files (~{pipe['keypoints_per_image']} keypoints "
            f"each, {pipe['model']}): sequential {rates['sequential']:.2f} img/s, pipelined "
            f"{rates['pipelined']:.2f} img/s ({pipe['pipelined_over_sequential']:.2f}x), "
            f"identical output: {pipe['identical_output']}"
        )
    # cpu_slug: file-name-safe ("Intel(R) Xeon(R)" gave a name with parentheses).
    name = f"extraction-{cpu_slug(cpu).removeprefix('cpu-')}.json"
    path = RESULTS / name
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
