"""The ``hardnet-export`` command line: one thin command per stage; the library does the work."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from hardnet_export import __version__

app = typer.Typer(
    name="hardnet-export",
    help=(
        "Train HardNet patch descriptors, export them to ONNX and TensorRT, and serve them.\n\n"
        "Example: hardnet-export demo --out demo-out"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}

# Errors a user can cause (bad path, bad argument, missing library): one sentence, no traceback.
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, ImportError, KeyError)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hardnet-export {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


def _not_built(stage: str) -> NoReturn:
    typer.echo(f"error: the '{stage}' stage is not built yet in this version.", err=True)
    raise typer.Exit(2)


@app.command()
def train() -> None:
    """Train HardNet.

    Example: hardnet-export train --data builtin --steps 1000 --out runs/builtin
    """
    _not_built("train")


@app.command("eval")
def evaluate() -> None:
    """Evaluate a model against OpenCV SIFT.

    Example: hardnet-export eval --model model.onnx --data stereo
    """
    _not_built("eval")


@app.command()
def onnx(
    weights: Path | None = typer.Argument(
        None, help="Checkpoint (.pth); omitted: the model shipped in the package."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="The .onnx file to write."),
    precision: str = typer.Option("fp32", help="fp32, fp16 or int8."),
    input_dtype: str = typer.Option("uint8", help="Graph input: uint8 or float32 (0..255)."),
    opset: int = typer.Option(18, help="ONNX opset (>= 18)."),
    parity: bool = typer.Option(True, help="Compare with PyTorch at batch 1, 7, 300."),
) -> None:
    """Export a checkpoint to ONNX (fp32, fp16, int8).

    Example: hardnet-export onnx weights.pth -o model.fp32.onnx --precision fp32
    """
    from hardnet_export.export.metadata import read_metadata
    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.export.parity import format_parity

    path = export_onnx(
        weights, out, precision=precision, input_dtype=input_dtype, opset=opset, parity=parity
    )
    meta = read_metadata(path)
    if "parity" in meta:
        typer.echo(format_parity(meta["parity"], title=f"{precision} ONNX Runtime vs PyTorch"))
    typer.echo(f"wrote {path} ({precision}, input {input_dtype})")


@app.command()
def trt() -> None:
    """Build a TensorRT engine from an ONNX graph.

    Example: hardnet-export trt model.fp16.onnx -o model.fp16.engine
    """
    _not_built("trt")


@app.command()
def bench() -> None:
    """Benchmark latency and throughput per artifact, backend and batch size.

    Example: hardnet-export bench model.fp32.onnx --batch-sizes 1,32,256
    """
    _not_built("bench")


@app.command()
def describe() -> None:
    """Detect keypoints in images and describe them.

    Example: hardnet-export describe a.png b.png -o descriptors.npz
    """
    _not_built("describe")


@app.command()
def match() -> None:
    """Match two images and draw the inliers.

    Example: hardnet-export match left.png right.png -o matches.png
    """
    _not_built("match")


@app.command()
def demo() -> None:
    """Run the whole pipeline on built-in data.

    Example: hardnet-export demo --out demo-out
    """
    _not_built("demo")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one sentence; ``--debug`` shows the traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="hardnet-export")
    except USER_ERRORS as exc:
        if _state["debug"] or "--debug" in args:
            raise
        message = str(exc).strip() or type(exc).__name__
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)
