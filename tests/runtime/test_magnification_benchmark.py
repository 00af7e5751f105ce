"""benchmarks/magnification.py runs end to end (tiny settings) and writes its two files."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_writes_table(onnx_model: Path, tmp_path: Path) -> None:
    script = runpy.run_path(str(ROOT / "benchmarks" / "magnification.py"))
    args = ["--model", str(onnx_model), "--magnifications", "5,7", "--max-keypoints", "150"]
    assert script["main"]([*args, "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "magnification.json").read_text())
    rows = result["rows"]
    assert [r["magnification"] for r in rows] == [None, 5.0, 7.0]
    assert rows[0]["descriptor"] == "sift" and 0.0 < rows[0]["mnn@3"] <= 1.0
    for row in rows:
        assert row["mnn@2"] <= row["mnn@3"] <= result["keypoints"]["repeatable@3"]
    assert result["best_magnification"] in (5.0, 7.0)
    table = (tmp_path / "magnification.md").read_text()
    assert "| sift | - |" in table and "| hardnet | 7 |" in table and "--max-keypoints 150" in table
