"""The aarch64 half of ``benchmarks/arm64_check.sh``: run inside the arm64 root (under
qemu-user on an x86 host, or on a real ARM machine) with the core install of the project.

    python arm64_inside.py WORK PAIRS NAME [BACKEND]

``WORK`` holds the graphs to check and ``host-reference.npz`` (patches, an image crop, its
keypoints and the x86 host's descriptors of both per graph). For each graph: ``runtime.load``,
``describe`` and ``compute`` (compared with the x86 host's descriptors of the same input) and
``check`` (the artifact against its FP32 reference on held-out pairs, as on any target). Checks
the graph ``NAME`` of ``WORK/graphs.json`` (on ``BACKEND``, default: the runtime's choice) and
writes ``WORK/arm64-result-NAME[-BACKEND].json``.
Accuracy only: emulated time means nothing.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def main() -> int:
    work = Path(sys.argv[1])
    pairs = int(sys.argv[2])
    only = sys.argv[3]
    backend = sys.argv[4] if len(sys.argv) > 4 else None
    options = {"backend": backend} if backend else {}
    import hardnet_export
    from hardnet_export import host, runtime
    from hardnet_export.check import check_artifact

    ref = np.load(work / "host-reference.npz")
    graphs = [g for g in json.loads((work / "graphs.json").read_text()) if g["name"] == only]
    torch_here = "torch" in sys.modules or _importable("torch")
    result: dict[str, Any] = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "int8_isa": host.int8_isa(),
        "cpu_features": sorted(host.cpu_flags()),
        "hardnet_export": hardnet_export.__version__,
        "torch_installed": torch_here,
        "libraries": {m: _version(m) for m in ("numpy", "onnxruntime", "openvino", "cv2")},
        "pairs": pairs,
        "graphs": [],
    }
    failures = 0
    for entry in graphs:
        name, path = entry["name"], work / entry["file"]
        row: dict[str, Any] = {
            "name": name,
            "file": entry["file"],
            "backend_asked": backend or "the runtime's choice",
            "steps": {},
        }
        started = time.perf_counter()
        try:
            d = runtime.load(path, **options)
            _progress(name, "load", started)
            row["steps"]["load"] = {
                "ok": True,
                "backend": d.backend,
                "device": d.device,
                "precision": d.precision,
                "choice": None if d.choice is None else d.choice.summary(),
            }
            got = d.describe(ref["patches"])
            sim = cosine(got, ref[f"{name}.describe"])
            row["steps"]["describe"] = {
                "ok": got.shape == (len(ref["patches"]), 128) and bool(np.isfinite(got).all()),
                "patches": len(got),
                "cosine_to_x86_min": round(float(sim.min()), 6),
                "cosine_to_x86_mean": round(float(sim.mean()), 6),
            }
            _progress(name, "describe", started)
            kept, desc = d.compute(ref["image"], ref["keypoints"])
            sim = cosine(desc, ref[f"{name}.compute"])
            row["steps"]["compute"] = {
                "ok": desc.shape == (len(ref["keypoints"]), 128) and len(kept) == len(desc),
                "keypoints": len(desc),
                "cosine_to_x86_min": round(float(sim.min()), 6),
                "cosine_to_x86_mean": round(float(sim.mean()), 6),
            }
            _progress(name, "compute", started)
            report = check_artifact(path, entry.get("reference"), pairs=pairs, **options)
            g = report.gate
            row["steps"]["check"] = {
                "ok": bool(report.passed),
                "backend": report.backend,
                "semantics": report.semantics,
                "reference": Path(report.reference).name,
                "min_cosine": round(g.min_cosine, 5),
                "mean_cosine": round(g.mean_cosine, 6),
                "min_cosine_limit": g.min_cosine_limit,
                "nn_accuracy_reference": round(g.nn_accuracy_reference, 2),
                "nn_accuracy_candidate": round(g.nn_accuracy_candidate, 2),
                "fpr95_loss_pp": round(g.fpr95_loss_pp, 3),
                "reason": report.reason(),
            }
        except Exception as exc:  # record it and go on to the next graph
            traceback.print_exc()
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        row["ok"] = "error" not in row and all(s["ok"] for s in row["steps"].values())
        row["emulated_seconds"] = round(time.perf_counter() - started, 1)
        failures += not row["ok"]
        result["graphs"].append(row)
        print(f"{'OK  ' if row['ok'] else 'FAIL'} {name}: {json.dumps(row['steps'])}", flush=True)
    suffix = f"-{backend}" if backend else ""
    (work / f"arm64-result-{only}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    return failures


def _progress(name: str, step: str, started: float) -> None:
    print(f"  {name}: {step} done at {time.perf_counter() - started:.0f} s", flush=True)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
