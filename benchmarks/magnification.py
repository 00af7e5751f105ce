"""Choose ``compute``'s magnification by measurement: HardNet vs SIFT on a real stereo pair.

Keypoints: OpenCV SIFT detections in the left and right Middlebury motorcycle images
(``skimage.data.stereo_motorcycle``, never used for training). Ground truth: a left keypoint
at (x, y) with a known, unoccluded disparity d should match a right keypoint near
(x - d, y). Each descriptor is matched by mutual nearest neighbour (no ratio test) and we
report, over left keypoints with ground truth:

- ``mnn@T``: the fraction whose mutual nearest neighbour lies within T px of the truth
  (the figure to beat);
- ``precision@T``: correct among the mutual nearest neighbours found;
- ``repeatable@T`` (descriptor-independent): the fraction that has any right keypoint
  within T px, an upper bound for ``mnn@T``.

SIFT's own descriptor (``cv2.SIFT.compute`` on the same keypoints) is the reference; HardNet
runs ``Describer.compute`` at each magnification (support side = magnification x
KeyPoint.size). The chosen magnification has the highest mnn@2 + mnn@3 among those at least
as good as SIFT on all four figures. Writes benchmarks/results/magnification.{md,json}.

Usage::

    python benchmarks/magnification.py                     # the shipped model
    python benchmarks/magnification.py --model model.fp32.onnx --magnifications 4,6,8
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2

from hardnet_export._io import atomic_write_text, sha256_file
from hardnet_export.artifacts.models import lookup
from hardnet_export.evaluation.describers import exact_model
from hardnet_export.evaluation.stereo_frame import (
    THRESHOLDS,
    score_describer,
    sift_scores,
    stereo_frame,
)
from hardnet_export.runtime import load

DEFAULT_MAGNIFICATIONS = (3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 16.0)


def dominates(row: dict[str, Any], sift: dict[str, Any]) -> bool:
    """At least SIFT's mnn@T and precision@T at every threshold."""
    keys = [f"{m}@{t:g}" for m in ("mnn", "precision") for t in THRESHOLDS]
    return all(row[k] >= sift[k] for k in keys)


def choose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The HardNet row with the highest mnn@2 + mnn@3 among those that match SIFT on every
    figure (all rows when none does); ties go to the smaller magnification."""
    sift = next(r for r in rows if r["descriptor"] == "sift")
    hardnet = [r for r in rows if r["descriptor"] == "hardnet"]
    candidates = [r for r in hardnet if dominates(r, sift)] or hardnet
    return max(candidates, key=lambda r: (r["mnn@2"] + r["mnn@3"], -r["magnification"]))


def run(
    model: str | None, magnifications: list[float], max_keypoints: int, device: str | None
) -> dict[str, Any]:
    frame = stereo_frame(max_keypoints)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    rows.append({"descriptor": "sift", "magnification": None, **sift_scores(frame)})
    # A name is the model itself, exactly; a file runs as runtime.load runs it here.
    describer = (
        exact_model(model, device=device)
        if model is None or lookup(model)
        else load(model, device=device)
    )
    for mag in magnifications:
        scores = score_describer(describer, frame, magnification=mag)
        rows.append({"descriptor": "hardnet", "magnification": mag, **scores})
        print(f"magnification {mag:g}: mnn@3 {rows[-1]['mnn@3']:.3f}", file=sys.stderr)
    best = choose(rows)
    artifact = Path(str(describer.artifact)) if describer.artifact else None
    return {
        "pair": "Middlebury motorcycle (skimage.data.stereo_motorcycle), left -> right",
        "keypoints": {
            "detector": frame.detector,
            "left": len(frame.left_keypoints),
            "right": len(frame.right_keypoints),
            "left_with_ground_truth": int(frame.valid.sum()),
            **frame.repeatable(),
        },
        "model": {
            "artifact": str(artifact) if artifact else "shipped",
            "sha256": sha256_file(artifact) if artifact and artifact.is_file() else None,
            "backend": describer.backend,
            "precision": describer.precision,
            "device": describer.device,
        },
        "rows": rows,
        "best_magnification": best["magnification"],
        "beats_sift": dominates(best, rows[0]),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()}, {platform.python_version()}, opencv {cv2.__version__}",
    }


def to_markdown(result: dict[str, Any]) -> str:
    kp = result["keypoints"]
    cols = [f"{m}@{t:g}" for m in ("mnn", "precision") for t in THRESHOLDS]
    lines = [
        "# Magnification sweep: HardNet vs SIFT on the motorcycle stereo pair",
        "",
        f"Keypoints: {kp['detector']}: {kp['left']} left, {kp['right']} right, "
        f"{kp['left_with_ground_truth']} left with ground truth. Repeatable (any right "
        f"keypoint within 2 / 3 px of the truth): {kp['repeatable@2']:.3f} / "
        f"{kp['repeatable@3']:.3f}.",
        f"Model: {result['model']['artifact']} ({result['model']['backend']}, "
        f"{result['model']['precision']}, {result['model']['device']}).",
        "Matching: mutual nearest neighbour, no ratio test. mnn@T: fraction of left keypoints "
        "with ground truth whose match lies within T px of it; precision@T: correct / matches.",
        "",
        "| descriptor | magnification | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for row in result["rows"]:
        mag = "-" if row["magnification"] is None else f"{row['magnification']:g}"
        values = " | ".join(f"{row[c]:.3f}" for c in cols)
        lines.append(f"| {row['descriptor']} | {mag} | {values} |")
    verdict = "at least as good as" if result["beats_sift"] else "NOT at least as good as"
    lines += [
        "",
        f"Chosen magnification: {result['best_magnification']:g} (HardNet {verdict} SIFT on "
        "every figure there).",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="artifact (default: the shipped model)")
    parser.add_argument(
        "--magnifications",
        default=",".join(f"{m:g}" for m in DEFAULT_MAGNIFICATIONS),
        help="comma-separated values to sweep",
    )
    parser.add_argument("--max-keypoints", type=int, default=2000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    mags = [float(v) for v in args.magnifications.split(",") if v.strip()]
    result = run(args.model, mags, args.max_keypoints, args.device)
    given = sys.argv[1:] if argv is None else argv
    result["command"] = " ".join(["python benchmarks/magnification.py", *given])
    markdown = to_markdown(result)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out_dir / "magnification.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.out_dir / "magnification.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
