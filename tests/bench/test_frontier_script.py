"""benchmarks/frontier.py runs end to end (one tiny model, small settings) and writes its
table, JSON and plot with every CPU backend's row."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch

from hardnet_export import HardNet, save_checkpoint
from hardnet_export.runtime.registry import installed

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_frontier_writes_rows_per_backend(tmp_path: Path) -> None:
    torch.manual_seed(0)
    (tmp_path / "tiny").mkdir()
    weights = save_checkpoint(
        tmp_path / "tiny" / "final.pth", HardNet(width=0.125), step=1, data="builtin", config={}
    )
    args = ["--model", str(weights), "--pairs", "60", "--keypoints", "150", "--duration-s", "0.05",
            "--rounds", "3", "--versus-rounds", "3"]  # fmt: skip
    script = runpy.run_path(str(ROOT / "benchmarks" / "frontier.py"))
    assert script["main"]([*args, "--out", str(tmp_path / "out")]) == 0
    (json_file,) = (tmp_path / "out").glob("frontier-*.json")
    result = json.loads(json_file.read_text())
    points = [(r["precision"], r["backend"]) for r in result["rows"]]
    assert points[0] == ("fp32", "onnxruntime") and points[-1][0] == "int8-cpu"
    assert (("fp32", "openvino") in points) == installed("openvino")
    assert result["rounds"] == 3
    for row in result["rows"]:
        assert row["model"] == "tiny" and row["width"] == 0.125 and row["frame_ms_p50"] > 0
        assert row["vs_sift"] > 0 and set(row["stages_ms_p50"]) == {"extract", "infer", "total"}
        assert 0 <= row["stereo_frame"]["nn@3"] <= 1 and "stereo" in row["accuracy"]
        assert row["int8_gate_passed"] in (
            (None,) if row["precision"] != "int8-cpu" else (True, False)
        )
    sift = result["sift"]["stereo_frame"]
    assert 0.3 < sift["nn@3"] <= 1 and result["keypoints"] == 150
    # Ours (runtime.load by default) against the peers per frame: finite ratios, x SIFT.
    assert [v["ours"] for v in result["versus"]] == [
        "ours: fp32 (runtime.load default)",
        "ours: int8-cpu (runtime.load default)",
    ]
    for record in result["versus"]:
        assert record["model"] == "tiny" and record["size"] == 150 and record["rounds"] == 3
        assert record["best_peer"].startswith("peer: ") and record["ratio"] > 0
        assert 0 < record["vs_sift"] < float("inf") and record["goal"] == 0.5
    table = json_file.with_suffix(".md").read_text()
    assert "| OpenCV SIFT |" in table and "keypoints NN@3 %" in table and "Met by:" in table
    assert "## Ours against the peers, per frame" in table
    assert json_file.with_suffix(".png").stat().st_size > 10_000
