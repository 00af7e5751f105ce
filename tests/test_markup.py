"""No rich markup eats bracketed text: ``[trt]`` in a message prints as ``[trt]``."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from hardnet_export._progress import plain_console
from hardnet_export.cli import app
from hardnet_export.shipped import SHIPPED_ONNX


def test_plain_console_prints_brackets() -> None:
    console = plain_console(record=True, width=200)
    console.print("pip install 'hardnet-export[trt]' [bold]x[/bold]")
    assert "pip install 'hardnet-export[trt]' [bold]x[/bold]" in console.export_text()


def test_demo_stage_detail_keeps_brackets() -> None:
    from hardnet_export.demo import DemoReport, _Stages
    from hardnet_export.errors import MissingDependencyError

    console = plain_console(record=True, width=200)
    stages = _Stages(DemoReport(config={}), console, total=1)

    def missing() -> str:
        raise MissingDependencyError("TensorRT: pip install 'hardnet-export[trt]'")

    stages.run("[trt] engines", missing)
    text = console.export_text()
    assert "[1/1] [trt] engines" in text and "skipped" in text and "hardnet-export[trt]'" in text


def test_bench_table_and_lines_keep_brackets(tmp_path: Path) -> None:
    model = tmp_path / "model[trt].onnx"
    shutil.copy(SHIPPED_ONNX, model)
    args = ["bench", str(model), "--no-baseline", "--batch-sizes", "1", "--duration-s", "0.02"]
    args += ["--warmup-s", "0", "--accuracy-pairs", "0", "--json", str(tmp_path / "b[x].json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "model[trt].onnx" in result.output and "b[x].json" in result.output
