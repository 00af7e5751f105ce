"""The ``hardnet-export`` command line: one thin command per stage; the library does the work.

Every default shown in ``--help`` is the library's own: read from its config dataclasses
(``TrainConfig``, ``Int8Options``, ``DemoConfig``) or its functions' keyword defaults, never
restated here. Errors of the project's own types (:mod:`hardnet_export.errors`) and of the
operating system print as one line; anything else is a bug, reported as one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import re
import signal
import sys
import threading
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from hardnet_export import __version__, _signals
from hardnet_export.applications.colmap import (
    build_database,
    check_outputs,
    database_from_features,
    import_pycolmap,
    list_images,
    reconstruct,
)
from hardnet_export.applications.detection import DETECTORS, SUPPORTS
from hardnet_export.applications.extract import ExtractEvent, Scale
from hardnet_export.applications.extract import extract as run_extract
from hardnet_export.applications.features import (
    describe_image,
    describe_images,
    extract_features,
    load_keypoints_file,
    model_record,
    model_summary,
    save_features,
)
from hardnet_export.applications.matching import (
    GEOMETRIES,
    MAX_DRAWN,
    SIFT_RATIO,
    KeypointDescriber,
    OpenCVSift,
    draw_matches,
    match_images,
    parse_ratio,
)
from hardnet_export.artifacts.backends import backends, format_backends, format_rules
from hardnet_export.artifacts.variants import (
    flavours,
    get_variant,
    precisions,
    variant_for,
    variants,
)
from hardnet_export.benchmark.frame import (
    DEFAULT_KEYPOINTS,
    frame_image,
    parse_keypoint_counts,
    run_image_benchmark,
)
from hardnet_export.benchmark.run import parse_batch_sizes, run_benchmark
from hardnet_export.check import check_artifact
from hardnet_export.demo import DemoConfig, run_demo
from hardnet_export.errors import (
    HardnetError,
    InputError,
    Interrupted,
    TrainingInterrupted,
)
from hardnet_export.evaluation.suite import render_tables, run_evaluation, write_json
from hardnet_export.export.common import LAYER_NAMES, MIN_OPSET
from hardnet_export.export.image_graph import export_image_graph
from hardnet_export.export.int8 import (
    DEFAULT_FLOAT_LAYERS,
    LIGHT_FLOAT_LAYERS,
    LIGHT_MIN_COSINE,
    METHODS,
    Int8Options,
)
from hardnet_export.export.onnx import export_onnx
from hardnet_export.export.tensorrt import (
    BuildOptions,
    build_engine,
)
from hardnet_export.geometry import DEFAULT_MAGNIFICATION, OUT_OF_BOUNDS
from hardnet_export.host import INT8_ISAS, installed, require
from hardnet_export.imagefile import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_IMAGE_PIXELS_ENV,
    ImageTooLargeError,
    image_header,
)
from hardnet_export.train.config import TrainConfig
from hardnet_export.tune import tune_artifact, tune_model

app = typer.Typer(
    name="hardnet-export",
    help=(
        "Train HardNet patch descriptors, export them to ONNX and TensorRT, and serve them.\n\n"
        "Example: hardnet-export demo --out demo-out\n\n"
        "Exit status: 0 done; 1 an error you can fix (one line says what); 2 a usage error; "
        "3 some inputs failed (extract: listed in OUT.errors.jsonl), the rest done; "
        "70 an internal error (a bug: rerun with --debug and report it); 128+N ended by "
        "signal N (130 Ctrl-C, 143 SIGTERM), leaving no half-written or unfinished output."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: "[trt]" in a pip command is not markup
)

_state: dict[str, Any] = {"debug": False}


def default(owner: Any, name: str) -> Any:
    """The library's default for ``name``: a field of a dataclass or a keyword of a function."""
    if dataclasses.is_dataclass(owner):
        found = {f.name: f for f in dataclasses.fields(owner)}[name]
        if found.default is not dataclasses.MISSING:
            return found.default
        assert found.default_factory is not dataclasses.MISSING
        return found.default_factory()
    return inspect.signature(owner).parameters[name].default


def one_of(values: Any) -> str:
    """``a, b or c``: a help text's list, from the library's own tuple."""
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def filled(**values: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Fill a command's docstring (its --help) with the library's values: ``{name}``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command.__doc__ = (command.__doc__ or "").format(**values)
        return command

    return decorate


def documented(owner: Any) -> dict[str, str]:
    """One line of help per argument from the ``Args:`` section of ``owner``'s docstring
    (names listed together, ``a, b: text``, share their text)."""
    doc = inspect.getdoc(owner) or ""
    section = doc.partition("Args:\n")[2] or doc.partition("Attributes:\n")[2]
    section = re.split(r"\n\S", section, maxsplit=1)[0]
    entries: dict[str, str] = {}
    for match in re.finditer(r"^    (\w[\w, ]*):(.*(?:\n {6,}.*)*)", section, re.M):
        text = " ".join(part.strip() for part in match.group(2).splitlines())
        for name in match.group(1).split(","):
            entries[name.strip()] = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
    return entries


def options_from(
    config: type[Any],
    names: dict[str, tuple[str, ...]] | None = None,
    parsers: dict[str, Callable[[str], Any]] | None = None,
    types: dict[str, Any] | None = None,
    *,
    flags: dict[str, str] | None = None,
    exclude: frozenset[str] = frozenset(),
    prefix: str = "",
    helps: dict[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per field of ``config``: its type, default and help from the
    dataclass (``names``: extra option names per field, e.g. ``{"out": ("-o",)}``; ``types``:
    the option's type where the field's is not one the CLI parses, e.g. a union). A tuple
    field is one comma-separated option, read by ``parsers[field]`` (default: each item as
    the tuple's item type). ``flags``: a field's flag where it is not ``--field-name``;
    ``exclude``: fields the command does not offer; ``prefix``: before every help text;
    ``helps``: a field's help where the command line says it better than the docstring. The
    command's own parameters come first; it receives the fields as keyword arguments: the one
    mechanism behind every command whose options are a config's fields."""
    names = names or {}
    parsers = dict(parsers or {})
    types = types or {}
    flags = flags or {}
    hints = _field_hints(config, exclude | set(types))
    helps = {**documented(config), **(helps or {})}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own_hints = typing.get_type_hints(command)
        own = [
            p.replace(annotation=own_hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        parameters = list(own)
        annotations: dict[str, Any] = {p.name: p.annotation for p in own}
        for item in dataclasses.fields(config):
            if item.name in exclude:
                continue
            hint = types[item.name] if item.name in types else hints[item.name]
            value = default(config, item.name)
            flag = flags.get(item.name, "--" + item.name.replace("_", "-"))
            declared = [flag, *names.get(item.name, ())]
            if hint is bool:
                declared = [f"{flag}/--no-{flag[2:]}"] + list(names.get(item.name, ()))
            if typing.get_origin(hint) is tuple:
                parsers.setdefault(item.name, _items_of(typing.get_args(hint)[0], flag))
                hint, value = str, ",".join(map(str, value))
            option = typer.Option(value, *declared, help=prefix + helps.get(item.name, ""))
            parameters.append(
                inspect.Parameter(
                    item.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint
                )
            )
            annotations[item.name] = hint

        @functools.wraps(command)
        def parsed(*args: Any, **fields: Any) -> Any:
            for name, parse in parsers.items():
                if isinstance(fields.get(name), str):
                    fields[name] = parse(fields[name])
            return command(*args, **fields)

        parsed.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        parsed.__annotations__ = annotations
        return parsed

    return decorate


def _field_hints(config: type[Any], skip: set[str] | frozenset[str]) -> dict[str, Any]:
    """The fields' types, resolved one by one: a field the command skips (or retypes) may name
    a type its module imports only for type checkers."""
    namespace = vars(sys.modules[config.__module__])
    hints: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        if item.name in skip:
            continue
        hint = item.type
        hints[item.name] = eval(hint, namespace) if isinstance(hint, str) else hint  # noqa: S307
    return hints


def _items_of(kind: type, flag: str) -> Callable[[str], tuple[Any, ...]]:
    """A parser of a comma-separated option into a tuple of ``kind``."""

    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise InputError(
                f"{flag} takes comma-separated {kind.__name__} values, got {text!r}"
            ) from None

    return parse


def _size(size: tuple[int, int]) -> str:
    """(width, height) -> ``WIDTHxHEIGHT``."""
    return f"{size[0]}x{size[1]}"


#: The commands with ``--max-image-pixels``: an image above the limit names the flag there.
_IMAGE_LIMIT_COMMANDS = ("describe", "extract", "match", "colmap", "bench")


def _backend_option() -> Any:
    names = ", ".join(b.name for b in backends())
    return typer.Option(
        None,
        "--backend",
        help=f"Run the model on this backend ({names}; hardnet-export backends lists them); "
        "default: the artifact and this host decide (on a CPU, a name runs its FP32 graph, or "
        "the INT8 graph it ships where that is the faster here, on the tuned or rule path; "
        "hardnet-export models lists which; --backend torch runs its checkpoint).",
    )


def _max_image_pixels_option() -> Any:
    return typer.Option(
        None,
        "--max-image-pixels",
        help=(
            "Refuse images with more pixels (width x height), read from the file's header "
            "before decoding: a guard against decompression bombs (default: "
            f"${MAX_IMAGE_PIXELS_ENV}, else {DEFAULT_MAX_IMAGE_PIXELS:,} = 2**26, e.g. "
            "8192x8192)."
        ),
    )


def _image_limit(value: int | None) -> int | None:
    """``--max-image-pixels`` checked in the flag's own name (None: the library's default)."""
    from hardnet_export.validate import check_int

    return None if value is None else check_int("--max-image-pixels", value, low=1, high=2**63 - 1)


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


@app.command("models")
def list_models() -> None:
    """List the registered models: the names --model (and load_model, runtime.load) take.

    A bare name (no / and no model suffix such as .pth or .onnx) is the registered model,
    even where a file of that name is in the working directory (a warning says so); a path
    is always a file: ./hardnet-half, runs/a/final.pth, model.onnx. Then which graph each
    name runs on this CPU: its FP32 graph, or the INT8 graph it ships where that is the
    faster here (measured by tune NAME, or by rule: on CPUs with VNNI or AMX, and for hardnet
    also on AVX2 CPUs).

    Example: hardnet-export models
    """
    from hardnet_export.artifacts.models import format_models
    from hardnet_export.runtime.policy import format_registered_graphs

    typer.echo(format_models())
    typer.echo("")
    typer.echo(format_registered_graphs())


@app.command("backends")
def list_backends() -> None:
    """List the registered backends: the artifacts each reads, where it runs and whether its
    library is installed here, then the CPU rule table. runtime.load picks one by the
    artifact's suffix and, on the CPU, by what tune measured here or else by the rules (the
    graph's precision, this CPU's instruction sets, the gates the graph records);
    load(..., backend=NAME) forces one.

    Example: hardnet-export backends
    """
    typer.echo(format_backends())
    typer.echo("")
    typer.echo(format_rules())


@app.command()
@options_from(TrainConfig, {"data": ("-d",), "out": ("-o",)})
def train(**fields: Any) -> None:
    """Train HardNet (the paper's recipe by default); scale out with torchrun.

    --data takes builtin[:KEY=VALUE...], phototour:ROOT/NAME or hpatches:ROOT[:SPLIT]
    (or a dataset folder); repeat it or comma-separate to combine.

    Example: hardnet-export train --data builtin --steps 1000 --batch-size 256 --out runs/builtin

    Example: torchrun --nproc_per_node=4 -m hardnet_export train --data phototour:/d/liberty
    """

    config = TrainConfig(**fields)
    require("training", *config.packages())  # before the trainer's own import of torch
    from hardnet_export.train.trainer import train as run_training

    try:
        path = run_training(config)
    except TrainingInterrupted as exc:
        # Here, not in main(): typer turns any KeyboardInterrupt into a bare exit 130.
        if int(os.environ.get("RANK", "0")) == 0:  # every rank stops; one report is enough
            typer.echo(exc.render(flag), err=True)
        # The shell's convention for "ended by signal N", which scripts and schedulers read.
        raise typer.Exit(128 + exc.signum) from None
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"wrote {path}")


@app.command("eval")
def evaluate(
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint (.pth), artifact (.onnx, .engine) or registered model name (see "
        "'hardnet-export models'); default: the shipped model.",
    ),
    data: list[str] = typer.Option(
        list(default(run_evaluation, "data")),
        "--data",
        "-d",
        help="builtin | stereo | stereo-hard | phototour:ROOT/NAME[:PAIRS.txt] | "
        "hpatches:ROOT[:SPLIT] (or a dataset folder); repeat or comma-separate.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
    rootsift: bool = typer.Option(
        default(run_evaluation, "rootsift"), "--rootsift", help="Add a RootSIFT column."
    ),
    sift_size: float = typer.Option(
        default(run_evaluation, "sift_size"),
        "--sift-size",
        help="OpenCV keypoint size of SIFT (window = 6 x size pixels).",
    ),
    pairs: int = typer.Option(
        default(run_evaluation, "n_pairs"), "--pairs", help="Pairs for builtin and stereo data."
    ),
    seed: int = typer.Option(default(run_evaluation, "seed"), help="Seed of those pairs."),
    device: str = typer.Option(default(run_evaluation, "device"), help="auto, cpu or cuda."),
    progress: bool = typer.Option(default(run_evaluation, "progress"), help="Progress bar."),
) -> None:
    """Evaluate a model against OpenCV SIFT on the same patches.

    Example: hardnet-export eval --model runs/builtin/final.pth --data stereo,builtin --json r.json
    """
    from hardnet_export._io import check_writable
    from hardnet_export._progress import plain_console
    from hardnet_export.shipped import SHIPPED_WEIGHTS

    if json_out is not None:
        check_writable(json_out)
    tables = run_evaluation(
        SHIPPED_WEIGHTS if model is None else model, data, rootsift=rootsift,
        sift_size=sift_size, n_pairs=pairs, seed=seed, device=device, progress=progress,
    )  # fmt: skip
    console = plain_console()
    for table in render_tables(tables):
        console.print(table)
    if json_out is not None:
        typer.echo(f"wrote {write_json(tables, json_out)}")


def _keep_float(text: str) -> tuple[str, ...]:
    """``--keep-float conv0,conv1``; ``none`` for every conv in int8."""
    names = (name.strip() for name in text.split(","))
    return tuple(name for name in names if name and name.lower() != "none")


@app.command()
@options_from(
    Int8Options,
    flags={
        "seed": "--calibration-seed",
        "method": "--calibration-method",
        "max_nn_accuracy_loss": "--max-nn-loss",
        "gate_size": "--gate-pairs",
    },
    types={"calibration": str, "keep_float": str | None},
    parsers={"keep_float": _keep_float},
    exclude=frozenset({"gate_pairs", "progress", "qat"}),
    prefix="int8: ",
    helps={
        "calibration": "builtin, PATCHES.npy, phototour:ROOT/NAME, hpatches:ROOT or a folder.",
        "method": f"{one_of(METHODS)}.",
        "keep_float": f"comma-separated layers ({LAYER_NAMES[0]}..{LAYER_NAMES[-1]}) kept "
        "float (FP16 for tensorrt, FP32 for cpu); 'none' quantises every conv. Default "
        "(measured): "
        + "; ".join(
            (
                f"{','.join(LIGHT_FLOAT_LAYERS[k])} for {k} where its gate's worst cosine "
                f"reaches {LIGHT_MIN_COSINE}, else {','.join(v)}"
            )
            if k in LIGHT_FLOAT_LAYERS
            else f"{','.join(v)} for {k}"
            for k, v in DEFAULT_FLOAT_LAYERS.items()
        )
        + ".",
        "float_budget": "instead of --keep-float, keep the most sensitive layers float "
        "within this share (0..1) of the multiply-adds.",
        "sensitivity": "rank each layer quantised alone; print it and write OUT.sensitivity.json.",
        "for_isa": f"cpu flavour: int8 kernels of the machine it will run on "
        f"({', '.join(INT8_ISAS)}); default: this machine's.",
        "gate_size": "held-out built-in pairs the gate evaluates.",
    },
)
def onnx(
    weights: str | None = typer.Argument(
        None,
        help="Checkpoint (.pth) or registered model name (hardnet, ...); omitted: the model "
        "shipped in the package.",
    ),
    out: Path = typer.Option(..., "-o", "--out", help="The .onnx file to write."),
    precision: str = typer.Option(precisions()[0], help=f"{one_of(precisions())}."),
    int8_target: str = typer.Option(
        flavours()[0],
        help="int8: "
        + one_of(f"{v.flavour} ({v.summary})" for v in variants() if v.precision == "int8"),
    ),
    input_dtype: str = typer.Option(
        default(export_onnx, "input_dtype"), help="Graph input: uint8 or float32 (0..255)."
    ),
    opset: int = typer.Option(default(export_onnx, "opset"), help=f"ONNX opset (>= {MIN_OPSET})."),
    parity: bool = typer.Option(
        default(export_onnx, "parity"), help="Compare with PyTorch at batch 1, 7, 300."
    ),
    with_extraction: bool = typer.Option(
        False,
        "--with-extraction",
        help="Write the image graph: inputs image (H, W) uint8 and keypoints (K, 4), patches "
        "cut inside the graph (fp32 or fp16).",
    ),
    magnification: float | None = typer.Option(
        None,
        help="--with-extraction: support region in keypoint sizes (default "
        f"{DEFAULT_MAGNIFICATION:g}).",
    ),
    **int8_fields: Any,
) -> None:
    """Export a checkpoint to ONNX (fp32, fp16, int8).

    Example: hardnet-export onnx weights.pth -o model.fp32.onnx --precision fp32

    Example: hardnet-export onnx -o model.int8-tensorrt.onnx --precision int8 --sensitivity

    Example: hardnet-export onnx -o model.int8-cpu.onnx --precision int8 --int8-target cpu
    --for-isa avx2 --keep-float conv0,conv1

    Example: hardnet-export onnx --with-extraction -o model.image.onnx --precision fp16
    """
    from hardnet_export.artifacts.metadata import read_metadata
    from hardnet_export.export.parity import format_parity

    variant = variant_for(precision, int8_target if precision == "int8" else None)
    int8 = None
    if variant.options_type() is Int8Options:  # the variants the int8 flags describe
        int8 = Int8Options(**int8_fields, progress=True)
        assert variant.flavour is not None
        int8.isa(variant.flavour)  # --for-isa with the tensorrt flavour fails now, not later
    if with_extraction:
        # A variant that has no image graph is refused by export_image_graph, naming those
        # that have one.
        if variant.image and input_dtype != "uint8":
            raise InputError(
                f"an image graph (--with-extraction) takes a uint8 image, got input_dtype "
                f"{input_dtype!r}"
            )
        path = export_image_graph(
            weights, out, variant=variant, opset=opset, magnification=magnification
        )
    else:
        if magnification is not None:
            raise InputError("--magnification is a setting of the image graph (--with-extraction)")
        path = export_onnx(
            weights,
            out,
            variant=variant,
            options=int8,
            input_dtype=input_dtype,
            opset=opset,
            parity=parity,
        )
    meta = read_metadata(path)
    quantisation = meta.quantisation
    if quantisation is not None and quantisation.sensitivity is not None:
        from hardnet_export.export.sensitivity import SensitivityReport, report_path

        typer.echo(SensitivityReport.from_dict(quantisation.sensitivity).format())
        typer.echo(f"wrote {report_path(path)}")
    if meta.parity is not None:
        typer.echo(format_parity(meta.parity, title=f"{variant.name} ONNX Runtime vs PyTorch"))
    for line in quantisation.summary_lines() if quantisation is not None else []:
        typer.echo(line)
    if meta.kind == "image":
        typer.echo(
            f"wrote {path} ({variant.name} image graph, magnification {meta.magnification:g}, "
            f"images of at least {meta.min_image_side}x{meta.min_image_side} pixels)"
        )
        return
    typer.echo(f"wrote {path} ({variant.name}, input {input_dtype})")


@app.command()
@options_from(
    BuildOptions,
    types={"opt_image": str | None, "max_image": str | None, "timing_cache": Path | None},
)
def trt(
    onnx: str = typer.Argument(
        ...,
        help="An fp32, fp16 or int8 graph, or an image graph, from 'hardnet-export onnx', or a "
        "registered model name (its shipped fp32 graph).",
    ),
    out: Path = typer.Option(..., "-o", "--out", help="The engine file (sidecar: OUT.json)."),
    device: int = typer.Option(default(build_engine, "device"), help="CUDA device to build on."),
    rebuild: bool = typer.Option(
        default(build_engine, "rebuild"), help="Build even if a matching engine exists."
    ),
    **fields: Any,
) -> None:
    """Build a TensorRT engine from an ONNX graph.

    Example: hardnet-export trt model.fp16.onnx -o model.fp16.engine

    Example: hardnet-export trt model.image.onnx -o model.image.engine --opt-image 640x480
    --max-image 1920x1920 --opt-keypoints 2000 --max-keypoints 8000
    """
    from hardnet_export._progress import plain_console
    from hardnet_export.artifacts.models import resolve_model

    graph = resolve_model(onnx, "onnx")  # a registered name: its shipped FP32 graph
    with plain_console(stderr=True).status(f"building a TensorRT engine from {graph}"):
        options = BuildOptions(**fields)
        result = build_engine(graph, out, options, device=device, rebuild=rebuild)
    side = result.sidecar
    what = "reused" if result.reused else f"built in {side.build_seconds or 0:.1f} s"
    profile = (
        " ".join(flag(k, v) for k, v in side.profile_options().items())
        if side.graph_kind == "image"
        else "batch {}/{}/{}".format(*options.batch)
    )
    typer.echo(
        f"{result.engine} ({what}): {side.precision} {side.graph_kind}, TensorRT "
        f"{side.tensorrt_version}, {side.gpu_name} (sm {side.compute_capability}), {profile}"
    )


@app.command()
def bench(
    artifacts: list[str] | None = typer.Argument(
        None,
        help=".onnx / .engine / .pth files or registered model names; omitted: every variant "
        "of the shipped model "
        "that runs here (exported into the cache).",
    ),
    batch_sizes: str = typer.Option(
        ",".join(map(str, default(run_benchmark, "batch_sizes"))),
        "--batch-sizes",
        help="Comma-separated patches per call.",
    ),
    device: str = typer.Option(default(run_benchmark, "device"), "--device", help="cpu or cuda."),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads (ONNX Runtime, PyTorch); default: all usable."
    ),
    warmup_s: float = typer.Option(
        default(run_benchmark, "warmup_s"), "--warmup-s", help="Warm-up seconds per case."
    ),
    duration_s: float = typer.Option(
        default(run_benchmark, "duration_s"),
        "--duration-s",
        help="Timed seconds per case (and at least 10 calls).",
    ),
    accuracy_pairs: int = typer.Option(
        default(run_benchmark, "accuracy_pairs"),
        "--accuracy-pairs",
        help="Held-out pairs for the FPR95 / NN-accuracy column.",
    ),
    baseline: bool = typer.Option(
        default(run_benchmark, "baseline"),
        "--baseline/--no-baseline",
        help="Add PyTorch eager FP32, the 1x reference.",
    ),
    peers: bool = typer.Option(
        default(run_benchmark, "peers"),
        "--peers/--no-peers",
        help="With the default set: time ours (runtime.load by default) against the peers "
        "(PyTorch eager, torch.compile, ONNX Runtime and OpenVINO at their defaults) in "
        "interleaved rounds.",
    ),
    rounds: int = typer.Option(
        default(run_benchmark, "rounds"),
        "--rounds",
        help="Interleaved rounds of ours against the peers.",
    ),
    weights: str | None = typer.Option(
        None,
        "--weights",
        help="Checkpoint or registered model name behind the default set and the baseline "
        "(default: the shipped model).",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write a Markdown table."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a PNG: throughput and p50 latency against batch size."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where the default set is exported (~/.cache/hardnet-export)."
    ),
    image: Path | None = typer.Option(
        None,
        "--image",
        help="Per-image mode: time SIFT detection, extraction, inference and total per frame "
        "of this image (or builtin:frame, 800x640, about 2,000 SIFT keypoints; builtin:large, "
        "1600x1280, about 19,000), against OpenCV SIFT compute() on the same keypoints "
        "(--batch-sizes and --accuracy-pairs do not apply; --plot draws total time against "
        "keypoints).",
    ),
    keypoints: str = typer.Option(
        ",".join(map(str, DEFAULT_KEYPOINTS)),
        "--keypoints",
        help="Per-image mode: comma-separated SIFT keypoint counts (the strongest kept).",
    ),
    max_image_pixels: int | None = _max_image_pixels_option(),
) -> None:
    """Benchmark latency and throughput per artifact, backend and batch size, or with
    --image per frame: image in, descriptors out, against OpenCV SIFT.

    Example: hardnet-export bench model.fp32.onnx --batch-sizes 1,32,256 --json bench.json

    Example: hardnet-export bench model.fp32.onnx --image photo.png --keypoints 500,2000

    Example: hardnet-export bench model.fp32.onnx --image builtin:large --keypoints 500,2000,8000
    --json frame.json --plot frame.png
    """
    from rich.text import Text

    from hardnet_export._io import check_writable
    from hardnet_export._progress import plain_console
    from hardnet_export.benchmark import report

    limit = _image_limit(max_image_pixels)
    for path in (json_out, markdown, plot):
        if path is not None:
            check_writable(path)
    if image is not None:
        _bench_image(
            image, artifacts or (), keypoints, device=device, threads=threads,
            warmup_s=warmup_s, duration_s=duration_s, weights=weights, cache_dir=cache_dir,
            json_out=json_out, markdown=markdown, plot=plot,
            max_image_pixels=limit, peers=peers, rounds=rounds,
        )  # fmt: skip
        return
    result = run_benchmark(
        artifacts or (),
        batch_sizes=parse_batch_sizes(batch_sizes),
        device=device,
        threads=threads,
        warmup_s=warmup_s,
        duration_s=duration_s,
        accuracy_pairs=accuracy_pairs,
        baseline=baseline,
        weights=weights,
        cache_dir=cache_dir,
        command=" ".join(["hardnet-export", *sys.argv[1:]]),
        peers=peers,
        rounds=rounds,
    )
    # The table has a dozen columns: never squeeze it into a pipe's default 80.
    console = plain_console(width=None if sys.stdout.isatty() else 160)
    console.print(report.to_table(result))
    _print_versus(console, result.versus, result.targets)
    for warning in result.warnings:
        console.print(Text.assemble(("warning:", "yellow"), " ", warning))
    for path, write in ((json_out, report.write_json), (markdown, report.write_markdown)):
        if path is not None:
            console.print(f"wrote {write(result, path)}")
    if plot is not None:
        console.print(f"wrote {report.write_plot(result, plot)}")


def _print_versus(console: Any, versus: list[Any], targets: list[Any]) -> None:
    """Ours against the peers: the table, one summary line per size, and what each ran."""
    from hardnet_export.benchmark import report

    if not versus:
        return
    console.print(report.versus_table(versus))
    for line in report.versus_summary(versus) + report.target_notes(targets):
        console.print(line, highlight=False)


def _bench_image(
    image: Path,
    artifacts: list[str] | tuple[()],
    keypoints: str,
    *,
    json_out: Path | None,
    markdown: Path | None,
    plot: Path | None,
    max_image_pixels: int | None,
    **options: Any,
) -> None:
    from rich.console import Console

    from hardnet_export.benchmark import report

    counts = parse_keypoint_counts(keypoints)
    frame = frame_image(image, max_image_pixels=max_image_pixels)
    result = run_image_benchmark(
        frame,
        artifacts,
        keypoints=counts,
        image_name=str(image),
        command=" ".join(["hardnet-export", *sys.argv[1:]]),
        **options,
    )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(report.frame_table(result))
    _print_versus(console, result.versus, result.targets)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for path, write in ((json_out, report.write_json), (markdown, report.write_markdown)):
        if path is not None:
            console.print(f"wrote {write(result, path)}")
    if plot is not None:
        console.print(f"wrote {report.write_frame_plot(result, plot)}")


@app.command()
def describe(
    images: list[Path] = typer.Argument(..., help="Image files (any format OpenCV reads)."),
    out: Path = typer.Option(
        ...,
        "-o",
        "--out",
        help="The .npz to write, or an hloc features .h5 (appended to; images in it skipped).",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model artifact (.pth, .onnx, .engine) or registered model name (a bare name is "
        "the registered model; ./NAME is a file); omitted: the shipped one.",
    ),
    detector: str = typer.Option(
        default(describe_image, "detector"), help=f"Keypoint detector: {one_of(DETECTORS)}."
    ),
    max_keypoints: int = typer.Option(
        default(describe_image, "max_keypoints"), help="Strongest keypoints kept per image."
    ),
    keypoints: Path | None = typer.Option(
        None, "--keypoints", help="A .npy of (K, 2) or (K, 4) keypoints used for every image."
    ),
    out_of_bounds: str = typer.Option(
        default(describe_image, "out_of_bounds"),
        "--out-of-bounds",
        help=(
            "Given keypoints outside the image bound (size above the image diagonal, or centre "
            "further than magnification x size / 2 outside the image): reject (an error) or "
            "zero (a zero descriptor, valid_i false in the .npz)."
        ),
    ),
    root: Path | None = typer.Option(
        None,
        "--root",
        help="With an .h5 output: name the groups by the image paths relative to this "
        "folder, as hloc's image_dir expects (default: the paths as given).",
    ),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N (default: best)."),
    backend: str | None = _backend_option(),
    pipeline: bool = typer.Option(
        default(describe_images, "pipeline"),
        "--pipeline/--no-pipeline",
        help="Read, detect and cut image i+1 in a helper thread while image i is inferred.",
    ),
    max_image_pixels: int | None = _max_image_pixels_option(),
) -> None:
    """Detect keypoints in images and describe them.

    The .npz holds keypoints_i (K, 4: x, y, size, angle), descriptors_i (K, 128) and
    valid_i (K, false where --out-of-bounds zero kept a keypoint with a zero descriptor) for
    image i, and the image paths under 'images'. An .h5 is hloc's features file: one group
    per image path with keypoints (K, 2), descriptors (128, K), scores (K,) and image_size
    [W, H]; it is appended to, and images already in it are skipped (a run resumes).

    Example: hardnet-export describe a.png b.png --model model.fp32.onnx -o descriptors.npz

    Example: hardnet-export describe images/*.jpg -o features.h5 --root images/

    A whole folder, resumable, on many processes or machines: hardnet-export extract.
    """
    from hardnet_export import runtime
    from hardnet_export._io import check_writable
    from hardnet_export._progress import track
    from hardnet_export.runtime.base import patch_describer
    from hardnet_export.validate import check_str

    check_str("--out-of-bounds", out_of_bounds, choices=OUT_OF_BOUNDS)
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".h5", ".hdf5"):
        raise InputError(f"-o must name a .npz or an hloc .h5 file, got {out}")
    hloc = suffix != ".npz"
    if root is not None and not hloc:
        raise InputError("--root names the groups of an .h5 output; a .npz lists the paths")
    todo: list[Path] = list(images)
    if hloc:
        from hardnet_export.applications import hloc as hloc_file

        hloc_file.import_h5py()
        todo = [Path(p) for p in hloc_file.pending_images(out, images, root)]
        if len(todo) < len(images):
            typer.echo(f"{len(images) - len(todo)} images already in {out}: skipped")
        if not todo:
            return
    if not hloc or not out.exists():
        check_writable(out)
    given = load_keypoints_file(keypoints) if keypoints is not None else None
    limit = _image_limit(max_image_pixels)
    for path in todo:  # headers first: a bad image is named before the model loads
        image_header(path, max_image_pixels=limit)
    describer = patch_describer(runtime.load(model, device=device, backend=backend), "describe")
    options: dict[str, Any] = {
        "detector": detector,
        "max_keypoints": max_keypoints,
        "keypoints": given,
        "out_of_bounds": out_of_bounds,
        "pipeline": pipeline,
        "keypoints_name": str(keypoints) if keypoints is not None else None,
        "max_image_pixels": limit,
    }
    # The next image is read, detected and cut in a helper thread while this one is inferred.
    record = model_record(describer)
    if hloc:
        found = (f for _, f in hloc_file.write_features(out, describer, todo, root, **options))
    else:
        found = extract_features(describer, todo, **options)
    features = list(track(found, len(todo), "describing", unit="img", enabled=len(todo) > 1))
    if not hloc:
        save_features(out, todo, [(f.keypoints, f.descriptors) for f in features], record)
    for path, f in zip(todo, features, strict=True):
        kps, desc = f.keypoints, f.descriptors
        outside = int((~desc.any(axis=1)).sum())
        kept = f" ({outside} out of bounds, zero descriptors)" if outside else ""
        typer.echo(f"{path}: {len(kps)} keypoints{kept}")
    typer.echo(f"wrote {out} ({model_summary(record)})")


@app.command()
def extract(
    source: Path = typer.Argument(
        ...,
        metavar="ROOT_OR_LIST",
        help="A folder of images (searched recursively; names relative to it, as hloc names "
        "them) or a text file of image names, one per line.",
    ),
    out: Path = typer.Option(
        ..., "-o", "--out", help="The hloc features .h5 to write (extended by a rerun)."
    ),
    root: Path | None = typer.Option(
        None,
        "--root",
        help="With a list file: the folder its names are relative to (default: here).",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model artifact (.pth, .onnx, .xml, .engine) or registered model name; omitted: "
        "the shipped one.",
    ),
    detector: str = typer.Option(
        default(run_extract, "detector"), help=f"Keypoint detector: {one_of(DETECTORS)}."
    ),
    max_keypoints: int = typer.Option(
        default(run_extract, "max_keypoints"), help="Strongest keypoints kept per image."
    ),
    device: str | None = typer.Option(
        None, help="cpu, cuda, cuda:N (default: best; on Ray, each worker's best)."
    ),
    backend: str | None = _backend_option(),
    engine: str = typer.Option(
        default(run_extract, "engine"),
        help="local (this process, no Ray needed) or ray (Ray Data: a local Ray for the run, "
        "or the cluster at --address).",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --engine ray: the Ray cluster to join (auto: the one this machine is in; "
        "or HOST:PORT). Omitted: a local Ray starts for the run and stops after it.",
    ),
    workers: str = typer.Option(
        str(default(Scale, "workers")[0]),
        "--workers",
        help="With --engine ray: describer processes (Ray actors), N or MIN,MAX to let Ray "
        "scale the pool.",
    ),
    cpus_per_worker: float = typer.Option(
        default(Scale, "cpus_per_worker"), help="CPUs each describer reserves on Ray."
    ),
    gpus_per_worker: float = typer.Option(
        default(Scale, "gpus_per_worker"),
        help="GPUs each describer reserves on Ray (0.5: two share a GPU).",
    ),
    images_per_shard: int = typer.Option(
        default(Scale, "images_per_shard"),
        help="Images described in one batch and written in one shard (a kill loses at most "
        "the shards in flight).",
    ),
    database: Path | None = typer.Option(
        None,
        "--database",
        help="Also write a COLMAP database from the whole features file: images imported by "
        "COLMAP, six-column keypoints, the --pairs matched and verified by COLMAP.",
    ),
    pairs: str = typer.Option(
        default(database_from_features, "pairing"),
        "--pairs",
        help="With --database: exhaustive, sequential (each image with the next 10, by "
        "name), or a pairs file (two image names a line, as hloc writes them).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="With --database: replace an existing database."
    ),
    max_image_pixels: int | None = _max_image_pixels_option(),
) -> None:
    """Describe every image of a folder (or list file) into one hloc features.h5, exactly
    once, on this machine or on a Ray cluster.

    Images already in the output with the same content are skipped (a rerun resumes; a
    changed file is described again). An image that cannot be read is listed in
    OUT.errors.jsonl and skipped; the exit status is then 3. Workers write shards in
    OUT.parts/, merged into OUT when the run ends; a kill at any moment leaves OUT as it
    was, and the rerun completes the set. On a cluster, the images and OUT's folder must be
    on storage every node mounts at the same path.

    Example: hardnet-export extract images/ -o features.h5 --max-keypoints 4096

    Example: hardnet-export extract images/ -o features.h5 --engine ray --workers 2

    Example: hardnet-export extract list.txt --root imgs/ -o f.h5 --engine ray --address auto

    Example: hardnet-export extract images/ -o f.h5 --database f.db --pairs sequential
    """
    from hardnet_export._progress import average_rate_column, plain_console, progress_bar

    scale = Scale(
        images_per_shard=images_per_shard,
        workers=_workers(workers),
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        address=address,
    )
    if engine != "ray" and (
        address is not None or scale.workers != Scale().workers or gpus_per_worker
    ):
        raise InputError("--address, --workers and --gpus-per-worker need --engine ray")
    if database is not None:
        import_pycolmap()
        check_outputs(database, overwrite=overwrite)
    elif pairs != default(database_from_features, "pairing") or overwrite:
        raise InputError("--pairs and --overwrite are options of --database")
    bar = progress_bar(
        "{task.fields[patches]:,} patches",
        "{task.fields[failed]} failed",
        average_rate_column("img"),
    )
    task: list[Any] = []

    def planned(listed: int, todo: int) -> None:
        if listed > todo:
            typer.echo(f"{listed - todo} of {listed} images already described: skipped")
        if todo:
            bar.start()
            task.append(bar.add_task("describing", total=todo, patches=0, failed=0))

    def progress(event: ExtractEvent) -> None:
        bar.update(task[0], completed=event.done, patches=event.patches, failed=event.failed)

    if engine == "ray" and installed("ray"):
        import logging

        import ray.data  # noqa: F401  # configures its loggers on import: quieten them after

        # Ray Data logs every dataset's start and end at INFO, and a warning that its own
        # progress bars are off: our bar shows the whole run.
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)

    try:
        summary = run_extract(
            source,
            out,
            model=model,
            root=root,
            detector=detector,
            max_keypoints=max_keypoints,
            device=device,
            backend=backend,
            max_image_pixels=_image_limit(max_image_pixels),
            engine=engine,
            scale=scale,
            progress=progress,
            on_plan=planned,
        )
    finally:
        bar.stop()
    # Soft wrap: a path broken over two lines cannot be copied.
    console = plain_console(soft_wrap=True)
    rate = f", {summary.images_per_s:.2f} images/s, {summary.patches_per_s:,.0f} patches/s"
    console.print(
        f"{summary.described} images described ({summary.patches:,} keypoints) in "
        f"{summary.seconds:.1f} s{rate if summary.described else ''}, {summary.skipped} "
        f"skipped, {summary.failed} failed; engine {summary.engine}, "
        f"{len(summary.workers)} worker process(es)"
    )
    if summary.merged is not None:
        console.print(
            f"wrote {summary.out} ({summary.merged.added} added, "
            f"{summary.merged.replaced} replaced)"
        )
    if database is not None and out.exists():
        root_dir = source if source.is_dir() else (root or Path("."))
        result = database_from_features(out, root_dir, database, pairing=pairs, overwrite=overwrite)
        console.print(
            f"wrote {result.database}: {len(result.images)} images, "
            f"{result.verified_pairs} of {len(result.pairs)} pairs verified"
        )
    if summary.errors_file is not None:
        console.print(f"{summary.failed} images failed: see {summary.errors_file}", style="red")
        raise typer.Exit(EXIT_PARTIAL)


def _workers(text: str) -> tuple[int, int]:
    """``--workers N`` or ``MIN,MAX``."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"--workers must be N or MIN,MAX (positive integers), got {text!r}")
    low, high = int(parts[0]), int(parts[-1])
    if low > high:
        raise InputError(f"--workers MIN,MAX needs MIN <= MAX, got {text!r}")
    return low, high


@app.command()
@filled(max_drawn=MAX_DRAWN)
def match(
    image1: Path = typer.Argument(..., help="First image."),
    image2: Path = typer.Argument(..., help="Second image."),
    out: Path = typer.Option(..., "-o", "--out", help="The PNG of inlier matches to write."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model artifact (.pth, .onnx, .engine) or registered model name (a bare name is "
        "the registered model; ./NAME is a file); omitted: the shipped one.",
    ),
    descriptor: str = typer.Option("hardnet", help="hardnet, or sift for comparison."),
    detector: str = typer.Option(
        default(match_images, "detector"), help=f"Keypoint detector: {one_of(DETECTORS)}."
    ),
    geometry: str = typer.Option(default(match_images, "geometry"), help=f"{one_of(GEOMETRIES)}."),
    max_keypoints: int = typer.Option(
        default(match_images, "max_keypoints"), help="Strongest keypoints kept per image."
    ),
    ratio: str = typer.Option(
        default(match_images, "ratio"),
        help="Ratio-test threshold in (0, 1], none, or auto: each descriptor's measured rule, "
        f"none for HardNet (mutual nearest neighbours only), {SIFT_RATIO} for SIFT.",
    ),
    threshold: float = typer.Option(
        default(match_images, "threshold"), help="RANSAC inlier threshold in pixels."
    ),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N (default: best)."),
    backend: str | None = _backend_option(),
    max_image_pixels: int | None = _max_image_pixels_option(),
) -> None:
    """Match two images and draw the inliers.

    Mutual nearest neighbours (with Lowe's ratio test for SIFT, or with --ratio), then RANSAC
    (USAC MAGSAC++ when OpenCV has it). --descriptor sift runs OpenCV's SIFT descriptor on the
    same keypoints. The PNG shows at most {max_drawn} inliers as thin lines coloured by
    descriptor distance, with the counts.

    Example: hardnet-export match left.png right.png --model model.fp32.onnx -o matches.png

    Example: hardnet-export match left.png right.png --detector colmap-sift --ratio 0.9 -o m.png
    """
    import cv2

    from hardnet_export import runtime
    from hardnet_export._io import atomic_write_bytes, check_writable
    from hardnet_export.applications.images import read_image

    if descriptor not in ("hardnet", "sift"):
        raise InputError(f"--descriptor must be hardnet or sift, got {descriptor!r}")
    rule = parse_ratio(ratio)
    if out.suffix.lower() != ".png":
        raise InputError(f"-o must name a .png file, got {out}")
    check_writable(out)
    limit = _image_limit(max_image_pixels)
    first = read_image(image1, max_image_pixels=limit)
    second = read_image(image2, max_image_pixels=limit)
    describer: KeypointDescriber = (
        runtime.load(model, device=device, backend=backend)
        if descriptor == "hardnet"
        else OpenCVSift()
    )
    result = match_images(
        first,
        second,
        describer,
        detector=detector,
        max_keypoints=max_keypoints,
        geometry=geometry,
        ratio=rule,
        threshold=threshold,
    )
    title = "HardNet" if descriptor == "hardnet" else "OpenCV SIFT"
    ok, png = cv2.imencode(".png", draw_matches(first, second, result, title=title))
    if not ok:
        raise RuntimeError("OpenCV could not encode the match image")
    atomic_write_bytes(out, png.tobytes())
    typer.echo(
        f"{descriptor}: {len(result.keypoints1)} / {len(result.keypoints2)} keypoints, "
        f"{len(result.matches)} matches, {result.n_inliers} inliers "
        f"(inlier ratio {result.inlier_ratio:.3f}, {geometry})"
    )
    made = f" ({model_summary(model_record(describer))})" if descriptor == "hardnet" else ""
    typer.echo(f"wrote {out}{made}")


@app.command()
def colmap(
    image_dir: Path = typer.Argument(..., help="Folder of images (.jpg, .png, ...), not recursed."),
    database: Path = typer.Option(..., "--database", help="The COLMAP database (.db) to write."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model artifact (.pth, .onnx, .engine) or registered model name (a bare name is "
        "the registered model; ./NAME is a file); omitted: the shipped one.",
    ),
    descriptor: str = typer.Option(
        "hardnet", help="hardnet, or sift: COLMAP's own SIFT extraction and matching."
    ),
    detector: str = typer.Option(
        default(build_database, "detector"),
        help=f"Keypoint detector for HardNet: {one_of(DETECTORS)}; colmap-sift gives the "
        "frames --descriptor sift describes, each described from a square of "
        f"max({SUPPORTS['colmap-sift'].per_size:g} x size, "
        f"{SUPPORTS['colmap-sift'].min_px:g} px).",
    ),
    max_keypoints: int = typer.Option(
        default(build_database, "max_keypoints"),
        help="Keypoint budget per image: COLMAP's max_num_features for COLMAP's SIFT and "
        "colmap-sift (locations, each with up to two orientations), the most kept otherwise.",
    ),
    pairs: str = typer.Option(
        default(build_database, "pairing"),
        "--pairs",
        help="exhaustive (every pair) or sequential (each image with the next 10, by name).",
    ),
    ratio: str = typer.Option(
        default(build_database, "ratio"),
        help="Ratio-test threshold in (0, 1], none, or auto: each descriptor's measured rule, "
        f"none for HardNet (mutual nearest neighbours only), {SIFT_RATIO} for COLMAP's SIFT.",
    ),
    reconstruct_out: Path | None = typer.Option(
        None, "--reconstruct", help="Also run COLMAP's incremental mapping into this folder."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing database (and --reconstruct folder)."
    ),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N (default: best)."),
    backend: str | None = _backend_option(),
    verbose: bool = typer.Option(False, "--verbose", help="Show COLMAP's own log."),
    max_image_pixels: int | None = _max_image_pixels_option(),
) -> None:
    """Build a COLMAP database from HardNet matches and verify it with COLMAP.

    Detects keypoints (COLMAP's own SIFT frames by default), describes them with HardNet,
    matches the pairs (mutual nearest neighbours; a ratio test with --ratio), writes cameras,
    images, keypoints (six-column affine frames) and matches with pycolmap and runs COLMAP's
    geometric verification; prints verified inliers per pair. --descriptor sift runs COLMAP's
    SIFT on the same images and budget, as the reference. The database is renamed into place
    only when everything succeeded.

    Example: hardnet-export colmap images/ --database hardnet.db --reconstruct sparse/

    Example: hardnet-export colmap images/ --database h.db --detector sift --ratio 0.8

    Example: hardnet-export colmap images/ --database sift.db --descriptor sift --pairs sequential
    """
    from hardnet_export import runtime
    from hardnet_export._progress import track

    if descriptor not in ("hardnet", "sift"):
        raise InputError(f"--descriptor must be hardnet or sift, got {descriptor!r}")
    rule = parse_ratio(ratio)
    import_pycolmap()
    limit = _image_limit(max_image_pixels)
    check_outputs(database, reconstruct_out, overwrite=overwrite)
    # A wrong folder or image is reported before the model loads.
    for name in list_images(image_dir):
        image_header(image_dir / name, max_image_pixels=limit)
    describer = (
        runtime.load(model, device=device, backend=backend) if descriptor == "hardnet" else None
    )

    def bar(items: Any, total: int, what: str) -> Any:
        unit = "img" if what == "describing" else "pair"
        return track(items, total, what, unit=unit, enabled=total > 1)

    result = build_database(
        image_dir,
        database,
        describer,
        detector=detector,
        max_keypoints=max_keypoints,
        pairing=pairs,
        ratio=rule,
        overwrite=overwrite,
        progress=bar,
        verbose=verbose,
        max_image_pixels=limit,
    )
    for name, count in result.keypoints.items():
        typer.echo(f"{name}: {count} keypoints")
    for pair in result.pairs:
        typer.echo(
            f"{pair.image1} - {pair.image2}: {pair.matches} matches, {pair.inliers} verified "
            f"inliers ({pair.config})"
        )
    typer.echo(
        f"wrote {result.database} ({result.descriptor}): {len(result.images)} images, "
        f"{result.verified_pairs} of {len(result.pairs)} pairs verified"
    )
    if reconstruct_out is None:
        return
    rec = reconstruct(database, image_dir, reconstruct_out, overwrite=overwrite, verbose=verbose)
    if not rec.models:
        typer.echo(f"no reconstruction: {rec.reason}")
        return
    for index, (registered, points) in enumerate(rec.models):
        typer.echo(
            f"model {index}: {registered} of {rec.images} images registered, {points} 3D points "
            f"(in {rec.out / str(index)})"
        )


@app.command()
def check(
    artifact: str = typer.Argument(
        ..., help="The artifact to check: .onnx, .engine or .pth, or a registered model name."
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="The FP32 model it came from (.pth, fp32 .onnx or registered model name); "
        "default: the shipped model whose weights hash the artifact carries.",
    ),
    device: str | None = typer.Option(
        None, help="cpu, cuda, cuda:N, tensorrt (default: what the artifact would use here)."
    ),
    pairs: int = typer.Option(
        default(check_artifact, "pairs"), help="Held-out built-in pairs to compare on."
    ),
    seed: int = typer.Option(default(check_artifact, "seed"), help="Seed of those pairs."),
    tune_first: bool = typer.Option(
        False,
        "--tune",
        help="First tune the artifact on this CPU (as hardnet-export tune: measure, gate and "
        "keep the fastest correct path), then check the path it keeps.",
    ),
    duration_s: float = typer.Option(
        default(tune_artifact, "duration_s"),
        "--duration-s",
        help="With --tune: timing seconds per candidate.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON."),
) -> None:
    """Check an artifact on the machine it will run on against its FP32 model.

    Runs the artifact the way runtime.load would here (on a CPU: the choice tune measured,
    else the backends' rule table; TensorRT on this GPU), prints the path it took, worst/mean
    cosine, NN agreement, FPR95 and NN accuracy and the host, and exits 1 when the INT8
    gate's limits (stored in the artifact) are exceeded. With --tune it measures that path
    first (hardnet-export tune) and prints the table. A registered model's name on the CPU
    checks the graph runtime.load(NAME) runs here (its FP32 graph, or the INT8 graph it
    ships where that is the faster).

    Example: hardnet-export check model.int8-cpu.onnx

    Example: hardnet-export check model.fp32.onnx --tune

    Example: hardnet-export check model.int8-tensorrt.engine --reference weights.pth
    """
    _writable(json_out)
    if tune_first:
        if device not in (None, "cpu"):
            raise InputError(f"--tune measures the paths on this CPU, got --device {device}")
        from hardnet_export.artifacts.models import lookup

        timing = {"pairs": pairs, "seed": seed, "duration_s": duration_s}
        if reference is None and lookup(artifact) is not None:
            tuned: Any = tune_model(artifact, progress=_say, **timing)
        else:
            tuned = tune_artifact(artifact, reference, progress=_say, **timing)
        typer.echo(tuned.format())
        device = "cpu"
    report = check_artifact(artifact, reference, device=device, pairs=pairs, seed=seed)
    _show_report(report, json_out)
    if not report.passed:
        typer.echo(f"error: {report.reason()}", err=True)
        raise typer.Exit(1)


@app.command()
def tune(
    artifact: str = typer.Argument(
        ..., help="The graph to tune: .onnx or OpenVINO .xml, or a registered model name."
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="The FP32 model a non-FP32 graph came from (default: the registered model whose "
        "weights hash the graph carries).",
    ),
    pairs: int = typer.Option(
        default(tune_artifact, "pairs"), help="Held-out built-in pairs for the accuracy gate."
    ),
    seed: int = typer.Option(default(tune_artifact, "seed"), help="Seed of those pairs."),
    duration_s: float = typer.Option(
        default(tune_artifact, "duration_s"), "--duration-s", help="Timing seconds per candidate."
    ),
    write: bool = typer.Option(
        default(tune_artifact, "write"),
        "--write/--no-write",
        help="Store the choice in the tuning cache, where runtime.load takes it.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON."),
) -> None:
    """Measure how an artifact runs fastest and still correctly on this CPU, and keep it.

    Every candidate the installed CPU backends can build (ONNX Runtime; OpenVINO in f32, and
    in bf16/f16 where this CPU has them; thread counts) is gated on held-out pairs against
    the FP32 model, then timed at batch 256 and 1 in interleaved rounds; the fastest that
    passes, with its best chunk size, goes to the tuning cache ($HARDNET_EXPORT_CACHE or
    ~/.cache/hardnet-export), keyed by the artifact, this CPU and the library versions.
    Every later runtime.load(ARTIFACT, device="cpu") here takes it; without it the
    backends' rule table decides. A registered model's name tunes each graph the name may
    run (its FP32 graph and the INT8 graph it ships, if any), against the model's FP32
    weights; runtime.load(NAME) then runs the fastest of them.

    Example: hardnet-export tune hardnet

    Example: hardnet-export tune model.int8-cpu.onnx --json tune.json

    Example: hardnet-export tune model.fp32.onnx --no-write --duration-s 5
    """
    from hardnet_export.artifacts.models import lookup

    _writable(json_out)
    timing = {"pairs": pairs, "seed": seed, "duration_s": duration_s, "write": write}
    if reference is None and lookup(artifact) is not None:
        report: Any = tune_model(artifact, progress=_say, **timing)
    else:
        report = tune_artifact(artifact, reference, progress=_say, **timing)
    _show_report(report, json_out)


def _say(line: str) -> None:
    """A progress line, on stderr."""
    typer.echo(line, err=True)


def _writable(json_out: Path | None) -> None:
    """A report's JSON file is checked before the work, not after it."""
    from hardnet_export._io import check_writable

    if json_out is not None:
        check_writable(json_out)


def _show_report(report: Any, json_out: Path | None) -> None:
    """Print ``report`` (``format()``) and write its ``to_dict()`` to ``json_out``."""
    from hardnet_export._io import atomic_write_text

    typer.echo(report.format())
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        typer.echo(f"wrote {json_out}")


def _batch_sizes(text: str) -> tuple[int, ...]:
    return tuple(parse_batch_sizes(text))


@app.command()
@options_from(
    DemoConfig,
    {"out": ("-o",), "bench_duration_s": ("--duration-s",)},
    {"batch_sizes": _batch_sizes},
)
def demo(**fields: Any) -> None:
    """Run the whole pipeline on built-in data: export, accuracy vs SIFT, speed, matching.

    Writes DIR/report.md, DIR/report.json, the benchmark plot and the match images.

    Example: hardnet-export demo --out demo-out

    Example: hardnet-export demo --out demo-small --train-steps 50 --pairs 200

    Example: hardnet-export demo --out demo-hardnet --model hardnet
    """
    config = DemoConfig(**fields)
    report = run_demo(config)
    failed = [s.name for s in report.stages if s.status == "failed"]
    typer.echo(f"report: {config.out / 'report.md'}")
    if failed:
        # The report is written either way; the exit status tells scripts (and CI) it broke.
        typer.echo(f"stages that failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


#: Exit statuses, documented in the README (Exit statuses) and in ``hardnet-export --help``.
EXIT_OK = 0
#: The user can fix it: bad input, a missing file or package, a failed accuracy gate.
EXIT_ERROR = 1
#: The command line itself is wrong: an unknown option, a missing argument, a bad value type.
EXIT_USAGE = 2
#: Some inputs failed (``extract``: listed in the errors file); the others were written.
EXIT_PARTIAL = 3
#: A bug in hardnet-export (BSD sysexits' EX_SOFTWARE); --debug shows the traceback.
EXIT_INTERNAL = 70
#: Ended by signal N: 128 + N (the shell's convention), 130 for SIGINT, 143 for SIGTERM.
EXIT_SIGNAL_BASE = 128

#: Parameters whose flag is not the default spelling (``--name-with-dashes``): the one place a
#: renamed flag changes (library errors carry parameter names, :class:`~errors.Remedy`).
FLAG_NAMES = {
    "out": "-o",
    "reconstruct_out": "--reconstruct",
    "max_nn_accuracy_loss": "--max-nn-loss",  # Int8Options' field, onnx's flag
    "variant": "--precision",  # export_onnx(variant=...): onnx --precision [--int8-target]
}


def flag(parameter: str, value: Any) -> str:
    """One parameter of a library remedy as this CLI's flag: ``--out-of-bounds zero``,
    ``--rebuild`` for True, ``--no-pipeline`` for False, ``-o`` where :data:`FLAG_NAMES`
    says so (typer's spelling of a parameter name otherwise); a variant is ``onnx``'s
    ``--precision int8 --int8-target cpu``."""
    name = "--" + parameter.replace("_", "-")
    if parameter == "variant" and isinstance(value, str):
        chosen = get_variant(value)
        if chosen.flavour is None or chosen.flavour == flavours(chosen.precision)[0]:
            return f"--precision {chosen.precision}"
        return f"--precision {chosen.precision} --int8-target {chosen.flavour}"
    if value is ...:  # the parameter itself ("choose another --out"): its long name
        long = FLAG_NAMES.get(parameter, name)
        return long if long.startswith("--") else name
    if value is True:
        return name
    if value is False:
        return "--no-" + parameter.replace("_", "-")
    if isinstance(value, (tuple, list)):
        value = ",".join(str(v) for v in value)
    return f"{FLAG_NAMES.get(parameter, name)} {value}"


def _stopped(signum: int) -> int:
    typer.echo(str(Interrupted(signum)), err=True)
    return EXIT_SIGNAL_BASE + signum


def _run(args: list[str], debug: bool) -> int:
    """Run one command; its exit status. SIGINT and SIGTERM raise :class:`Interrupted`
    (``_signals``), so ``finally`` blocks remove temporary files and folders, and a signal
    decides the status even where a library swallowed its exception."""
    try:
        status = app(args=args, prog_name="hardnet-export", standalone_mode=False)
    except KeyboardInterrupt as exc:
        signum = _signals.received() or getattr(exc, "signum", signal.SIGINT)
        return _stopped(signum)
    except typer.Abort:  # end of input at a prompt
        return _stopped(_signals.received() or signal.SIGINT)
    except typer.exceptions.TyperException as exc:  # click's usage errors, shown as click does
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except (HardnetError, OSError) as exc:
        if signum := _signals.received():  # a library turned the signal into another error
            return _stopped(signum)
        if debug or _state["debug"]:
            raise
        message = (exc.render(flag) if isinstance(exc, HardnetError) else str(exc)).strip()
        message = message or type(exc).__name__
        command = next((a for a in args if not a.startswith("-")), "")
        if isinstance(exc, ImageTooLargeError) and command in _IMAGE_LIMIT_COMMANDS:
            message = exc.message(option="--max-image-pixels")
        typer.echo(f"error: {message}", err=True)
        return EXIT_ERROR
    except Exception as exc:
        if signum := _signals.received():
            # The exception raised in the handler can surface as another one (an import
            # that was running fails with ImportError): it is still the signal.
            return _stopped(signum)
        if debug or _state["debug"]:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(
            f"internal error, please report it with the output of --debug: "
            f"{type(exc).__name__}: {first}",
            err=True,
        )
        return EXIT_INTERNAL
    signum = _signals.received()
    if signum is not None and status in (None, EXIT_OK, EXIT_SIGNAL_BASE + signal.SIGINT):
        # Typer answers a KeyboardInterrupt with a bare 130, and a signal whose exception a
        # library swallowed can let the command run to its end: neither is a success.
        return _stopped(signum)
    return status if isinstance(status, int) else EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Console entry point. Exit statuses: 0 done; 1 an error the user can fix (one line);
    2 a usage error; 70 an internal error (a bug, reported in one line; ``--debug`` shows
    the traceback); 128 + N ended by signal N (130 SIGINT, 143 SIGTERM).

    Called without ``argv`` (the console script, ``python -m hardnet_export``) it owns the
    process: once the command has ended, SIGINT and SIGTERM take their default action, so one
    that lands while the interpreter shuts down ends the process by that signal (a shell sees
    128 + N) instead of raising into the teardown.
    """
    owns_process = argv is None
    args = sys.argv[1:] if argv is None else argv
    # Warnings are advice to the user: one line each, without the source line they came from.
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
    with _signals.handled() as seen:
        status = _run(args, "--debug" in args)
    if seen and status == EXIT_OK:
        # It came after the command's last look (a finaliser swallowed it, or it landed while
        # the handlers were being restored): the command was still asked to stop.
        status = _stopped(seen[0])
    if owns_process and threading.current_thread() is threading.main_thread():
        for signum in _signals.SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
    sys.exit(status)
