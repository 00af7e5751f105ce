"""HardNet against COLMAP's own SIFT in COLMAP's own geometric verification, per real pair.

Every pair goes through ``hardnet-export colmap`` (``build_database``) as a folder of two
grayscale PNGs, once per configuration and keypoint budget:

- ``sift``: COLMAP's SIFT extraction and matching (``--descriptor sift``), the reference;
- ``hardnet-before``: the first defaults (OpenCV SIFT keypoints, mutual NN + ratio 0.8);
- ``hardnet-frames``: COLMAP's SIFT frames, patches of ``12 x size``, ratio 0.8 still;
- ``hardnet-mnn``: as ``hardnet-frames`` with mutual nearest neighbours only;
- ``hardnet``: the defaults now (``--detector colmap-sift``: COLMAP's frames, described from
  the detector's support ``max(6 x size, 24 px)``, mutual nearest neighbours only).

``hardnet-frames`` and ``hardnet-mnn`` are the steps between, written and verified by this
script (COLMAP's defaults in both); the others are ``build_database`` as the command runs it.

The budget is ``--max-keypoints`` (COLMAP's ``max_num_features`` for COLMAP's frames). Per
run: keypoints, tentative matches, verified inliers (what COLMAP keeps) and, from ground
truth, correct verified inliers (within 3 px of where the truth puts them: the disparity
for the stereo pair, occluded and unknown pixels counting as wrong; the homography for the
planar pairs). COLMAP's RANSAC is seeded at random, so verified counts vary by a few between
runs.

Pairs: the Middlebury motorcycle stereo pair (never trained on), and each held-out photo
(``HELDOUT_PHOTOS``, never trained on) with a copy warped by a mild and by a hard homography
(25 degrees, 0.8x, perspective). The matching rule and the support were chosen on the
training photos, not on these (docs/sfm.md); ``--pairs training`` runs those instead.

Writes ``benchmarks/results/colmap-<machine>.{json,md,png}`` and prints the table.

Usage::

    python benchmarks/colmap_inliers.py
    python benchmarks/colmap_inliers.py --budgets 2000 --pairs motorcycle,coffee-mild
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hardnet_export._io import atomic_path, atomic_write_text
from hardnet_export.benchmark.machine import cpu_slug, machine_info

RESULTS = Path(__file__).resolve().parent / "results"
#: Name -> (detector, ratio) of the HardNet runs through ``build_database``; ``sift`` is
#: COLMAP's own.
CONFIGS: dict[str, tuple[str, float | str | None]] = {
    "hardnet-before": ("sift", 0.8),
    "hardnet": ("colmap-sift", "auto"),
}
#: Name -> ratio of the steps between: COLMAP's frames, patches of the describer's
#: ``magnification x size`` (no detector support), written by :func:`_plain_database`.
PLAIN: dict[str, float | None] = {"hardnet-frames": 0.8, "hardnet-mnn": None}
COLUMNS = ("sift", "hardnet-before", *PLAIN, "hardnet")
#: Correct: within this many pixels of the ground truth.
TOLERANCE_PX = 3.0


def homography(kind: str, height: int, width: int) -> np.ndarray:
    """A mild warp (the tests' own) or a hard one (25 degrees, 0.8x, perspective) about the
    image centre."""
    if kind == "mild":
        return np.array([[0.92, 0.08, 18.0], [-0.06, 0.95, 26.0], [1e-4, 5e-5, 1.0]])
    centre = np.array([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1.0]])
    a, s = np.radians(25.0), 0.8
    turn = np.array(
        [[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]]
    )
    tilt = np.array([[1, 0, 0], [0, 1, 0], [3e-4, -2e-4, 1.0]])
    return centre @ tilt @ turn @ np.linalg.inv(centre)


#: Training photos on which the defaults were chosen (``--pairs training``).
TRAINING_PHOTOS = ("astronaut", "camera", "chelsea", "rocket", "china", "grace_hopper")


def pair_names(training: bool = False) -> list[str]:
    from hardnet_export.data.builtin import HELDOUT_PHOTOS

    if training:
        return [f"{p}-{k}" for p in TRAINING_PHOTOS for k in ("mild", "hard")]
    return ["motorcycle"] + [f"{p}-{k}" for p in HELDOUT_PHOTOS for k in ("mild", "hard")]


def make_pair(name: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """Left and right grayscale images and the truth: a function from (K, 2) left points to
    ((K, 2) expected right points, (K,) known)."""
    from hardnet_export.data.builtin import load_photo
    from hardnet_export.geometry import as_gray

    if name == "motorcycle":
        from hardnet_export.data.stereo import load_motorcycle
        from hardnet_export.evaluation.stereo_frame import ground_truth

        left, right, _ = load_motorcycle()
        return left, right, ground_truth
    photo, kind = name.rsplit("-", 1)
    image = as_gray(load_photo(photo))
    h = homography(kind, *image.shape)

    def truth(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved = cv2.perspectiveTransform(xy.reshape(-1, 1, 2).astype(np.float64), h)
        return moved.reshape(-1, 2), np.ones(len(xy), bool)

    warped = cv2.warpPerspective(image, h, (image.shape[1], image.shape[0]))
    return image, warped, truth


def run(folder: Path, config: str, budget: int, describer: Any, truth: Any) -> dict[str, Any]:
    """One ``build_database`` run on the pair in ``folder`` and its counts."""
    import pycolmap

    from hardnet_export.applications.colmap import build_database

    db_path = folder / f"{config}-{budget}.db"
    start = time.perf_counter()
    if config in PLAIN:
        _plain_database(folder, db_path, budget, describer, PLAIN[config])
    elif config == "sift":
        build_database(folder, db_path, None, max_keypoints=budget)
    else:
        detector, ratio = CONFIGS[config]
        build_database(
            folder, db_path, describer, detector=detector, ratio=ratio, max_keypoints=budget
        )
    seconds = time.perf_counter() - start
    db = pycolmap.Database.open(db_path)
    try:
        ids = {i.name: i.image_id for i in db.read_all_images()}
        a, b = ids["left.png"], ids["right.png"]
        keypoints = [int(db.num_keypoints_for_image(a)), int(db.num_keypoints_for_image(b))]
        matches = len(db.read_matches(a, b)) if db.exists_matches(a, b) else 0
        config_name = (
            pycolmap.TwoViewGeometryConfiguration(int(db.read_two_view_geometry(a, b).config)).name
            if db.exists_two_view_geometry(a, b)
            else "UNDEFINED"
        )
        # COLMAP's pixel centres sit at 0.5: back to OpenCV's, where the truth is.
        left = db.read_keypoints(a)[:, :2].astype(np.float64) - 0.5
        right = db.read_keypoints(b)[:, :2].astype(np.float64) - 0.5
        inliers = (
            db.read_two_view_geometry(a, b).inlier_matches
            if db.exists_two_view_geometry(a, b)
            else np.zeros((0, 2), np.uint32)
        ).astype(np.int64)
    finally:
        db.close()
    expected, known = truth(left[inliers[:, 0]])
    error = np.linalg.norm(expected - right[inliers[:, 1]], axis=1)
    correct = int((known & (error <= TOLERANCE_PX)).sum())
    return {
        "keypoints": keypoints,
        "matches": matches,
        "verified": len(inliers),
        "correct": correct,
        "config": config_name,
        "seconds": round(seconds, 2),
    }


def _plain_database(
    folder: Path, db_path: Path, budget: int, describer: Any, ratio: float | None
) -> None:
    """What ``build_database`` writes with COLMAP's frames, but each patch cut from the
    describer's ``magnification x size`` (as before the detector had a support) and matched
    with ``ratio``; the database keeps COLMAP's true frames."""
    import pycolmap

    from hardnet_export.applications.detection import detect_colmap_frames, frames_to_keypoints
    from hardnet_export.applications.images import read_image
    from hardnet_export.applications.matching import match_descriptors

    names = ["left.png", "right.png"]
    db_path.touch()  # COLMAP's import wants the file to exist
    pycolmap.import_images(db_path, folder, pycolmap.CameraMode.AUTO, names)
    frames, descriptors = [], []
    for name in names:
        image = read_image(folder / name)
        found = detect_colmap_frames(image, max_keypoints=budget)
        keypoints = frames_to_keypoints(found)
        frames.append(found)
        descriptors.append(describer.compute(image, keypoints, out_of_bounds="zero")[1])
    db = pycolmap.Database.open(db_path)
    try:
        ids = {i.name: i.image_id for i in db.read_all_images()}
        for name, found in zip(names, frames, strict=True):
            db.write_keypoints(ids[name], found)
        matches = match_descriptors(*descriptors, ratio=ratio).astype(np.uint32)
        db.write_matches(ids[names[0]], ids[names[1]], matches)
    finally:
        db.close()
    pairs_file = folder / "plain-pairs.txt"
    pairs_file.write_text(" ".join(names) + "\n")
    pycolmap.verify_matches(db_path, pairs_file, pycolmap.TwoViewGeometryOptions())


def _support_text() -> str:
    from hardnet_export.applications.detection import SUPPORTS

    rule = SUPPORTS["colmap-sift"]
    return f"max({rule.per_size:g} x size, {rule.min_px:g})"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per pair and budget, verified (correct) inliers per column."""
    head = "| pair | budget | " + " | ".join(COLUMNS) + " | HardNet / SIFT |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 3)]
    for row in rows:
        cells = [f"{row[c]['verified']} ({row[c]['correct']})" for c in COLUMNS]
        ratio = row["hardnet"]["verified"] / max(1, row["sift"]["verified"])
        lines.append(
            f"| {row['pair']} | {row['budget']} | " + " | ".join(cells) + f" | {ratio:.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], budgets: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"sift": "#7f7f7f", "hardnet-before": "#f4a582", "hardnet-frames": "#92c5de",
               "hardnet-mnn": "#4393c3", "hardnet": "#1a9641"}  # fmt: skip
    labels = {"sift": "COLMAP SIFT", "hardnet-before": "HardNet, first defaults",
              "hardnet-frames": "HardNet, COLMAP's frames, 12 x size, ratio 0.8",
              "hardnet-mnn": "HardNet, COLMAP's frames, 12 x size, mutual NN",
              "hardnet": f"HardNet, defaults now (support {_support_text()} px, mutual NN)",
              }  # fmt: skip
    height = 3.6 * len(budgets) + 1.2  # 1.2 inches below the panels for the legend
    fig, axes = plt.subplots(len(budgets), 1, figsize=(13, height), squeeze=False)
    width = 0.8 / len(COLUMNS)
    for ax, budget in zip(axes[:, 0], budgets, strict=True):
        mine = [r for r in rows if r["budget"] == budget]
        x = np.arange(len(mine))
        for k, column in enumerate(COLUMNS):
            verified = [r[column]["verified"] for r in mine]
            correct = [r[column]["correct"] for r in mine]
            pos = x + (k - (len(COLUMNS) - 1) / 2) * width
            ax.bar(pos, verified, width, color=colours[column], label=labels[column])
            # The correct part of each bar, hatched over it.
            ax.bar(pos, correct, width, fill=False, hatch="///", edgecolor="white", lw=0)
        ax.set_xticks(x, [r["pair"] for r in mine], rotation=15, ha="right", fontsize=9)
        ax.set_ylabel("verified inliers")
        ax.set_title(f"budget {budget} keypoints (--max-keypoints)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    # Below the panels: inside them it would hide the tallest bars.
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(f"{title}\nbars: verified inliers in COLMAP's verification; hatched: correct "
                 f"(within {TOLERANCE_PX:g} px of the ground truth)", fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.9 / height, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="2000,4000", help="Keypoint budgets, e.g. 2000,4000.")
    parser.add_argument(
        "--pairs",
        default=None,
        help="Pairs (default: the evaluation pairs), e.g. motorcycle,coins-hard; 'training': "
        "the training photos the defaults were chosen on (written as colmap-training-*).",
    )
    parser.add_argument("--model", default=None, help="Model artifact (default: the shipped).")
    parser.add_argument(
        "--plot-only", action="store_true", help="Redraw the .md and .png from this CPU's .json."
    )
    args = parser.parse_args()
    training = args.pairs == "training"
    if args.plot_only:
        stem = f"colmap-{'training-' if training else ''}{cpu_slug().removeprefix('cpu-')}"
        saved = json.loads((RESULTS / f"{stem}.json").read_text())
        write_reports(saved["rows"], saved["title"], stem)
        return
    budgets = [int(b) for b in args.budgets.split(",")]
    known = pair_names() + pair_names(training=True)
    names = pair_names(training) if training or not args.pairs else args.pairs.split(",")
    unknown = sorted(set(names) - set(known))
    if unknown:
        sys.exit(f"unknown pair(s) {', '.join(unknown)}; known: {', '.join(known)}")

    import pycolmap

    from hardnet_export import runtime

    pycolmap.logging.minloglevel = 2
    describer = runtime.load(args.model, device="cpu")
    machine = machine_info()
    cpu = machine["cpu"]
    rows: list[dict[str, Any]] = []
    for name in names:
        left, right, truth = make_pair(name)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for file, image in (("left.png", left), ("right.png", right)):
                if not cv2.imwrite(str(folder / file), image):
                    raise OSError(f"could not write {folder / file}")
            for budget in budgets:
                row: dict[str, Any] = {"pair": name, "budget": budget}
                for column in COLUMNS:
                    row[column] = run(folder, column, budget, describer, truth)
                rows.append(row)
                print(
                    f"{name:<16} {budget:>5}  "
                    + "  ".join(f"{c} {row[c]['verified']} ({row[c]['correct']})" for c in COLUMNS),
                    flush=True,
                )
    title = (
        f"HardNet ({describer.backend}) vs COLMAP SIFT, pycolmap {pycolmap.__version__}; "
        f"{cpu['model']}, {cpu['usable_cpus']} CPUs"
    )
    stem = f"colmap-{'training-' if training else ''}{cpu_slug(cpu).removeprefix('cpu-')}"
    RESULTS.mkdir(exist_ok=True)
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "title": title,
        "machine": machine,
        "pycolmap": pycolmap.__version__,
        "model": {"artifact": str(describer.artifact or "shipped"), "backend": describer.backend},
        "configs": {"sift": "COLMAP extract_features + match_exhaustive (max_ratio 0.8)"}
        | {k: {"detector": d, "ratio": r} for k, (d, r) in CONFIGS.items()}
        | {
            k: {"detector": "colmap-sift", "ratio": r, "support_px": "magnification x size"}
            for k, r in PLAIN.items()
        }
        | {
            "hardnet": {"detector": "colmap-sift", "ratio": "auto", "support_px": _support_text()}
        },  # fmt: skip
        "tolerance_px": TOLERANCE_PX,
        "rows": rows,
    }
    atomic_write_text(RESULTS / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    write_reports(rows, title, stem)


def write_reports(rows: list[dict[str, Any]], title: str, stem: str) -> None:
    """Print the table; write it as ``<stem>.md`` and the bars as ``<stem>.png``."""

    def wins(column: str, count: str) -> int:
        return sum(r[column][count] >= r["sift"][count] for r in rows)

    summary = (
        f"HardNet >= COLMAP SIFT on {len(rows)} pair-budgets, verified (correct) inliers: "
        f"defaults now {wins('hardnet', 'verified')} ({wins('hardnet', 'correct')}); "
        f"without the detector's support {wins('hardnet-mnn', 'verified')} "
        f"({wins('hardnet-mnn', 'correct')})"
    )
    markdown = (
        f"# COLMAP verified inliers: HardNet vs COLMAP SIFT\n\n{title}.\n\n"
        "Cells: verified inliers (correct ones, within "
        f"{TOLERANCE_PX:g} px of the ground truth). Made by `benchmarks/colmap_inliers.py`.\n\n"
        f"{table(rows)}\n\n{summary}.\n"
    )
    print(f"\n{title}\n\n{table(rows)}\n\n{summary}")
    atomic_write_text(RESULTS / f"{stem}.md", markdown)
    budgets = sorted({r["budget"] for r in rows})
    plot(rows, budgets, RESULTS / f"{stem}.png", title)
    print(f"wrote {RESULTS / stem}.{{json,md,png}}")


if __name__ == "__main__":
    main()
