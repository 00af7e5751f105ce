"""The core install runs the shipped model without torch: load, describe, compute, and the
CLI's describe, match, check and bench, in a process where torch cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# A meta-path finder first in line refuses torch as a missing install would.
SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    import cv2
    import numpy as np
    from hardnet_export import runtime
    from hardnet_export.cli import main

    left, right, out = sys.argv[1:4]
    describer = runtime.load()
    patches = np.random.default_rng(0).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    image = cv2.imread(left, cv2.IMREAD_GRAYSCALE)
    _, computed = describer.compute(image, np.array([[60.0, 50.0, 8.0, 0.0]]))
    codes = {}
    for name, args in {
        "describe": ["describe", left, right, "-o", f"{out}/f.npz", "--max-keypoints", "200"],
        "match": ["match", left, right, "-o", f"{out}/m.png", "--max-keypoints", "300"],
        "check": ["check", str(runtime.registry.SHIPPED_ONNX), "--pairs", "64"],
        "bench": ["bench", "--batch-sizes", "1", "--duration-s", "0.05",
                  "--warmup-s", "0", "--accuracy-pairs", "0", "--json", f"{out}/b.json"],
    }.items():
        try:
            main(args)
            codes[name] = 0
        except SystemExit as exc:
            codes[name] = exc.code or 0
    print("RESULT " + json.dumps({
        "backend": describer.backend,
        "artifact": str(describer.artifact),
        "graph_backend": runtime.load(describer.artifact).backend,
        "shape": list(describer.describe(patches).shape),
        "norm": float(np.linalg.norm(computed[0])),
        "codes": codes,
        "torch_loaded": "torch" in sys.modules,
    }))
    """
)


def _pair(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.normal(128, 70, (200, 260)), (0, 0), 2.0)
    left = np.clip(texture, 0, 255).astype(np.uint8)
    right = np.ascontiguousarray(np.roll(left, 6, axis=1))
    paths = folder / "left.png", folder / "right.png"
    for path, image in zip(paths, (left, right), strict=True):
        assert cv2.imwrite(str(path), image)
    return paths


def test_shipped_model_runs_without_torch(tmp_path: Path) -> None:
    left, right = _pair(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARDNET_EXPORT_CACHE": str(tmp_path / "c")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(left), str(right), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["codes"] == {"describe": 0, "match": 0, "check": 0, "bench": 0}, done.stderr
    assert not result["torch_loaded"]
    # The shipped graph the default model's name runs here (its FP32 graph, or its INT8 graph
    # on VNNI/AMX CPUs), on the path runtime.load takes for that graph on this CPU.
    from hardnet_export import get_model
    from hardnet_export.runtime.policy import registered_graph

    assert Path(result["artifact"]) == registered_graph(get_model("hardnet")).graph
    assert result["backend"] == result["graph_backend"] and result["shape"] == [5, 128]
    assert abs(result["norm"] - 1.0) < 1e-4
    with np.load(tmp_path / "f.npz") as features:
        assert features["descriptors_0"].shape[1] == 128
    assert cv2.imread(str(tmp_path / "m.png")) is not None
    bench = json.loads((tmp_path / "b.json").read_text())
    assert any("torch is not installed" in w for w in bench["warnings"])
