"""The ``hardnet-export`` command line: one thin command per stage; the library does the work."""

from __future__ import annotations

import json
import os
import sys
import warnings
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
def train(
    data: list[str] = typer.Option(
        ["builtin"],
        "--data",
        "-d",
        help="builtin[:KEY=VALUE...] | phototour:ROOT/NAME | hpatches:ROOT[:SPLIT]; repeat or "
        "comma-separate to combine.",
    ),
    out: str = typer.Option("runs/hardnet", "--out", "-o", help="Run folder."),
    steps: int = typer.Option(1000, help="Optimiser steps (lr decays linearly to 0 over them)."),
    batch_size: int = typer.Option(1024, help="Pairs per step (global over DDP ranks)."),
    lr: float = typer.Option(10.0, help="SGD learning rate."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    dampening: float = typer.Option(0.9, help="SGD dampening."),
    weight_decay: float = typer.Option(1e-4, help="SGD weight decay."),
    margin: float = typer.Option(1.0, help="Triplet (and contrastive) margin."),
    anchor_swap: bool = typer.Option(True, help="Also use anchors as negatives."),
    batch_reduce: str = typer.Option("min", help="Negatives: min (hardest), average, random."),
    loss_type: str = typer.Option(
        "triplet_margin", help="Loss: triplet_margin, softmax, contrastive."
    ),
    augment: bool = typer.Option(True, help="Per-pair random flip/transpose."),
    dropout: float = typer.Option(0.3, help="Dropout before the last conv."),
    seed: int = typer.Option(0, help="Seed of data, augmentation and dropout."),
    device: str = typer.Option("auto", help="auto (CUDA if present), cpu, cuda, cuda:N."),
    precision: str = typer.Option(
        "auto",
        help="auto, fp32, bf16, fp16 (autocast). auto = fp32 on CPU; bf16 trains about 2.8x "
        "faster on CPUs with native bf16 (AVX512-BF16, AMX).",
    ),
    num_workers: int = typer.Option(-1, help="Data-loader workers; -1 = one per spare core."),
    checkpoint_every: int = typer.Option(500, help="Steps between checkpoints."),
    log_every: int = typer.Option(10, help="Steps between CSV log rows."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pth."),
    stop_after: int | None = typer.Option(
        None, help="End this run after N steps (checkpointed); --resume continues."
    ),
    global_hardest: bool = typer.Option(
        False, "--global-hardest", help="Under torchrun, mine negatives over the global batch."
    ),
    threads: int = typer.Option(0, help="Torch CPU threads (0 = torch default)."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
    init: str | None = typer.Option(None, help="Start from these weights (fine-tuning)."),
) -> None:
    """Train HardNet (the paper's recipe by default); scale out with torchrun.

    Example: hardnet-export train --data builtin --steps 1000 --batch-size 256 --out runs/builtin

    Example: torchrun --nproc_per_node=4 -m hardnet_export train --data phototour:/d/liberty
    """
    from hardnet_export.train.trainer import TrainConfig
    from hardnet_export.train.trainer import train as run_training

    config = TrainConfig(
        data=data, out=out, steps=steps, batch_size=batch_size, lr=lr, momentum=momentum,
        dampening=dampening, weight_decay=weight_decay, margin=margin, anchor_swap=anchor_swap,
        batch_reduce=batch_reduce, loss_type=loss_type, augment=augment, dropout=dropout,
        seed=seed, device=device, precision=precision, num_workers=num_workers,
        checkpoint_every=checkpoint_every, log_every=log_every, resume=resume,
        stop_after=stop_after, global_hardest=global_hardest, threads=threads, progress=progress,
        init=init,
    )  # fmt: skip
    path = run_training(config)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"wrote {path}")


@app.command("eval")
def evaluate(
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint (.pth) or artifact (.onnx, .engine); default: the shipped model.",
    ),
    data: list[str] = typer.Option(
        ["builtin", "stereo"],
        "--data",
        "-d",
        help="builtin | stereo | stereo-hard | phototour:ROOT/NAME[:FILE] | "
        "hpatches:ROOT[:SPLIT]; repeat or comma-separate.",
    ),
    json_out: str | None = typer.Option(None, "--json", help="Also write the results as JSON."),
    rootsift: bool = typer.Option(False, "--rootsift", help="Add a RootSIFT column."),
    sift_size: float = typer.Option(
        4.0, "--sift-size", help="OpenCV keypoint size of SIFT (window = 6 x size pixels)."
    ),
    pairs: int = typer.Option(2000, "--pairs", help="Pairs for builtin and stereo data."),
    seed: int = typer.Option(0, help="Seed of the builtin/stereo pairs."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
) -> None:
    """Evaluate a model against OpenCV SIFT on the same patches.

    Example: hardnet-export eval --model runs/builtin/final.pth --data stereo,builtin --json r.json
    """
    from rich.console import Console

    from hardnet_export.evaluation.suite import render_tables, run_evaluation, write_json

    if model is None:
        from hardnet_export.model import SHIPPED_WEIGHTS

        model = str(SHIPPED_WEIGHTS)
    tables = run_evaluation(
        model, data, rootsift=rootsift, sift_size=sift_size, n_pairs=pairs, seed=seed,
        device=device, progress=progress,
    )  # fmt: skip
    console = Console()
    for table in render_tables(tables):
        console.print(table)
    if json_out:
        typer.echo(f"wrote {write_json(tables, json_out)}")


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
    int8_target: str = typer.Option(
        "tensorrt", help="int8: tensorrt (symmetric int8) or cpu (uint8, fastest on ORT CPU)."
    ),
    calibration: str = typer.Option(
        "builtin", help="int8: builtin, a .npy of patches, a PhotoTour or HPatches folder."
    ),
    calibration_size: int = typer.Option(1024, help="int8: calibration patches."),
    calibration_seed: int = typer.Option(0, help="int8: seed of the calibration draw."),
    calibration_method: str = typer.Option("percentile", help="int8: minmax, entropy, percentile."),
    save_calibration: Path | None = typer.Option(
        None, help="int8: save the calibration set (.npy) for a reproducible build."
    ),
    keep_float: str | None = typer.Option(
        None,
        help="int8: comma-separated layers (conv0..conv6) kept float (FP16 for tensorrt, FP32 "
        "for cpu); 'none' quantises every conv. Default (measured): conv0-3 for tensorrt, "
        "conv0-2 for cpu.",
    ),
    float_budget: float | None = typer.Option(
        None,
        help="int8: instead of --keep-float, keep the most sensitive layers float within "
        "this share (0..1) of the multiply-adds.",
    ),
    sensitivity: bool = typer.Option(
        False,
        "--sensitivity",
        help="int8: rank each layer quantised alone; print it and write OUT.sensitivity.json.",
    ),
    for_isa: str | None = typer.Option(
        None,
        help="int8 cpu: int8 kernels of the machine it will run on (avx512-vnni, avx-vnni, "
        "amx-int8, avx512, avx2, neon-dotprod, neon); default: this machine's.",
    ),
    max_fpr95_loss: float = typer.Option(
        1.0, help="int8 gate: most FPR95 percentage points lost vs fp32 on held-out pairs."
    ),
    max_nn_loss: float = typer.Option(
        2.0, help="int8 gate: most NN-accuracy percentage points lost vs fp32."
    ),
    min_cosine: float = typer.Option(
        0.98, help="int8 gate: least cosine to fp32 of the worst held-out patch."
    ),
    gate_pairs: int = typer.Option(2000, help="int8 gate: held-out built-in pairs to evaluate."),
    force: bool = typer.Option(False, help="int8: write the graph even if the gate fails."),
) -> None:
    """Export a checkpoint to ONNX (fp32, fp16, int8).

    Example: hardnet-export onnx weights.pth -o model.fp32.onnx --precision fp32

    Example: hardnet-export onnx -o model.int8-tensorrt.onnx --precision int8 --sensitivity

    Example: hardnet-export onnx -o model.int8-cpu.onnx --precision int8 --int8-target cpu
    --for-isa avx2 --keep-float conv0,conv1
    """
    from hardnet_export.export.metadata import read_metadata
    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.export.parity import format_parity

    int8 = None
    if precision == "int8":
        from hardnet_export.calibration.quantize import Int8Options

        layers = None
        if keep_float is not None:
            layers = tuple(
                name.strip()
                for name in keep_float.split(",")
                if name.strip() and name.strip().lower() != "none"
            )
        int8 = Int8Options(
            target=int8_target,
            method=calibration_method,
            calibration=calibration,
            calibration_size=calibration_size,
            seed=calibration_seed,
            save_calibration=save_calibration,
            for_isa=for_isa,
            keep_float=layers,
            float_budget=float_budget,
            sensitivity=sensitivity,
            max_fpr95_loss=max_fpr95_loss,
            max_nn_accuracy_loss=max_nn_loss,
            min_cosine=min_cosine,
            gate_size=gate_pairs,
            force=force,
            progress=True,
        )
    path = export_onnx(
        weights,
        out,
        precision=precision,
        input_dtype=input_dtype,
        opset=opset,
        parity=parity,
        int8=int8,
    )
    meta = read_metadata(path)
    if "int8_sensitivity" in meta:
        from hardnet_export._io import atomic_write_text
        from hardnet_export.calibration.sensitivity import SensitivityReport

        report = SensitivityReport.from_dict(meta["int8_sensitivity"])
        typer.echo(report.format())
        json_path = path.with_name(path.name + ".sensitivity.json")
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
        typer.echo(f"wrote {json_path}")
    if "parity" in meta:
        typer.echo(format_parity(meta["parity"], title=f"{precision} ONNX Runtime vs PyTorch"))
    if "int8_gate" in meta:
        from hardnet_export.calibration.gate import GateResult

        typer.echo(GateResult(**meta["int8_gate"]).summary())
        typer.echo(f"calibration set sha256 {meta['calibration_sha256']}")
    if "int8_settings" in meta:
        floats = meta["int8_settings"].get("float_layers") or {}
        kept = ", ".join(f"{k} {v}" for k, v in floats.items()) or "none"
        isa = f", for {meta['int8_isa']} int8 kernels" if "int8_isa" in meta else ""
        typer.echo(f"float layers: {kept}{isa}")
    typer.echo(f"wrote {path} ({precision}, input {input_dtype})")


@app.command()
def trt(
    onnx: Path = typer.Argument(
        ..., help="An fp32, fp16 or int8 graph from 'hardnet-export onnx'."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="The engine file (sidecar: OUT.json)."),
    min_batch: int = typer.Option(1, help="Smallest batch of the optimisation profile."),
    opt_batch: int = typer.Option(256, help="Batch TensorRT tunes for."),
    max_batch: int = typer.Option(1024, help="Largest batch of the optimisation profile."),
    workspace_mib: int = typer.Option(1024, help="Workspace memory pool limit (MiB)."),
    timing_cache: Path | None = typer.Option(None, help="Timing cache file to reuse and update."),
    dla_core: int | None = typer.Option(None, help="Build for this DLA core (Jetson)."),
    gpu_fallback: bool = typer.Option(
        True, help="With --dla-core: let the GPU run what DLA can't."
    ),
    version_compatible: bool = typer.Option(False, help="Runs on later TensorRT of this major."),
    hardware_compatible: bool = typer.Option(False, help="Runs on any Ampere-or-newer GPU."),
    device: int = typer.Option(0, help="CUDA device to build on."),
    rebuild: bool = typer.Option(False, help="Build even if a matching engine exists."),
) -> None:
    """Build a TensorRT engine from an ONNX graph.

    Example: hardnet-export trt model.fp16.onnx -o model.fp16.engine
    """
    from rich.console import Console

    from hardnet_export.export.tensorrt import build_engine

    with Console(stderr=True).status(f"building a TensorRT engine from {onnx}"):
        result = build_engine(
            onnx,
            out,
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            workspace_mib=workspace_mib,
            timing_cache=timing_cache,
            dla_core=dla_core,
            gpu_fallback=gpu_fallback,
            version_compatible=version_compatible,
            hardware_compatible=hardware_compatible,
            device=device,
            rebuild=rebuild,
        )
    side = result.sidecar
    what = "reused" if result.reused else f"built in {side.get('build_seconds', 0):.1f} s"
    typer.echo(
        f"{result.engine} ({what}): {side['precision']}, TensorRT {side['tensorrt_version']}, "
        f"{side['gpu_name']} (sm {side['compute_capability']}), batch "
        f"{min_batch}/{opt_batch}/{max_batch}"
    )


@app.command()
def bench(
    artifacts: list[Path] | None = typer.Argument(
        None,
        help=".onnx / .engine / .pth files; omitted: every variant of the shipped model "
        "that runs here (exported into the cache).",
    ),
    batch_sizes: str = typer.Option(
        "1,32,256,1024", "--batch-sizes", help="Comma-separated patches per call."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads (ONNX Runtime, PyTorch); default: all usable."
    ),
    warmup_s: float = typer.Option(0.2, "--warmup-s", help="Warm-up seconds per case."),
    duration_s: float = typer.Option(
        3.0, "--duration-s", help="Timed seconds per case (and at least 10 calls)."
    ),
    accuracy_pairs: int = typer.Option(
        1000, "--accuracy-pairs", help="Held-out pairs for the FPR95 / NN-accuracy column."
    ),
    baseline: bool = typer.Option(
        True, "--baseline/--no-baseline", help="Add PyTorch eager FP32, the 1x reference."
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Checkpoint behind the default set and the baseline (default: the shipped model).",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write a Markdown table."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a PNG: throughput and p50 latency against batch size."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where the default set is exported (~/.cache/hardnet-export)."
    ),
) -> None:
    """Benchmark latency and throughput per artifact, backend and batch size.

    Example: hardnet-export bench model.fp32.onnx --batch-sizes 1,32,256 --json bench.json
    """
    from rich.console import Console

    from hardnet_export.benchmark import report
    from hardnet_export.benchmark.run import parse_batch_sizes, run_benchmark

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
    )
    # The table has a dozen columns: never squeeze it into a pipe's default 80.
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(report.to_table(result))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for path, write in ((json_out, report.write_json), (markdown, report.write_markdown)):
        if path is not None:
            console.print(f"wrote {write(result, path)}")
    if plot is not None:
        console.print(f"wrote {report.write_plot(result, plot)}")


@app.command()
def describe(
    images: list[Path] = typer.Argument(..., help="Image files (any format OpenCV reads)."),
    out: Path = typer.Option(..., "-o", "--out", help="The .npz file to write."),
    model: Path | None = typer.Option(
        None, "--model", help="Model artifact (.pth, .onnx, .engine); omitted: the shipped one."
    ),
    detector: str = typer.Option("sift", help="Keypoint detector: sift, orb or fast."),
    max_keypoints: int = typer.Option(2000, help="Strongest keypoints kept per image."),
    keypoints: Path | None = typer.Option(
        None, "--keypoints", help="A .npy of (K, 2) or (K, 4) keypoints used for every image."
    ),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N (default: best)."),
) -> None:
    """Detect keypoints in images and describe them.

    The .npz holds keypoints_i (K, 4: x, y, size, angle) and descriptors_i (K, 128) for
    image i, and the image paths under 'images'.

    Example: hardnet-export describe a.png b.png --model model.fp32.onnx -o descriptors.npz
    """
    from hardnet_export import runtime
    from hardnet_export._progress import track
    from hardnet_export.runtime.features import (
        describe_image,
        load_keypoints_file,
        save_features,
    )
    from hardnet_export.runtime.images import read_image

    given = load_keypoints_file(keypoints) if keypoints is not None else None
    describer = runtime.load(model, device=device)
    features = [
        describe_image(
            describer,
            read_image(path),
            detector=detector,
            max_keypoints=max_keypoints,
            keypoints=given,
        )
        for path in track(images, len(images), "describing", unit="img", enabled=len(images) > 1)
    ]
    save_features(out, images, features)
    for path, (kps, _) in zip(images, features, strict=True):
        typer.echo(f"{path}: {len(kps)} keypoints")
    typer.echo(f"wrote {out} ({describer.backend}, {describer.precision}, {describer.device})")


@app.command()
def match(
    image1: Path = typer.Argument(..., help="First image."),
    image2: Path = typer.Argument(..., help="Second image."),
    out: Path = typer.Option(..., "-o", "--out", help="The PNG of inlier matches to write."),
    model: Path | None = typer.Option(
        None, "--model", help="Model artifact (.pth, .onnx, .engine); omitted: the shipped one."
    ),
    descriptor: str = typer.Option("hardnet", help="hardnet, or sift for comparison."),
    detector: str = typer.Option("sift", help="Keypoint detector: sift, orb or fast."),
    geometry: str = typer.Option("homography", help="homography or fundamental."),
    max_keypoints: int = typer.Option(2000, help="Strongest keypoints kept per image."),
    ratio: float = typer.Option(0.8, help="Ratio-test threshold."),
    threshold: float = typer.Option(3.0, help="RANSAC inlier threshold in pixels."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N (default: best)."),
) -> None:
    """Match two images and draw the inliers.

    Mutual nearest neighbours with a ratio test, then RANSAC (USAC MAGSAC++ when OpenCV has
    it). --descriptor sift runs OpenCV's SIFT descriptor on the same keypoints.

    Example: hardnet-export match left.png right.png --model model.fp32.onnx -o matches.png
    """
    import cv2

    from hardnet_export import runtime
    from hardnet_export._io import atomic_write_bytes
    from hardnet_export.runtime.base import Describer
    from hardnet_export.runtime.images import read_image
    from hardnet_export.runtime.matching import draw_matches, match_images

    if descriptor not in ("hardnet", "sift"):
        raise ValueError(f"--descriptor must be hardnet or sift, got {descriptor!r}")
    if out.suffix.lower() != ".png":
        raise ValueError(f"-o must name a .png file, got {out}")
    first, second = read_image(image1), read_image(image2)
    describer: Describer | str = (
        runtime.load(model, device=device) if descriptor == "hardnet" else "sift"
    )
    result = match_images(
        first,
        second,
        describer,
        detector=detector,
        max_keypoints=max_keypoints,
        geometry=geometry,
        ratio=ratio,
        threshold=threshold,
    )
    ok, png = cv2.imencode(".png", draw_matches(first, second, result))
    if not ok:
        raise RuntimeError("OpenCV could not encode the match image")
    atomic_write_bytes(out, png.tobytes())
    typer.echo(
        f"{descriptor}: {len(result.keypoints1)} / {len(result.keypoints2)} keypoints, "
        f"{len(result.matches)} matches, {result.n_inliers} inliers "
        f"(inlier ratio {result.inlier_ratio:.3f}, {geometry})"
    )
    typer.echo(f"wrote {out}")


@app.command()
def check(
    artifact: Path = typer.Argument(..., help="The artifact to check: .onnx, .engine or .pth."),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="The FP32 model it came from (.pth or fp32 .onnx); default: the shipped model, "
        "when the artifact's weights hash says it came from it.",
    ),
    device: str | None = typer.Option(
        None, help="cpu, cuda, cuda:N, tensorrt (default: what the artifact would use here)."
    ),
    pairs: int = typer.Option(2000, help="Held-out built-in pairs to compare on."),
    seed: int = typer.Option(0, help="Seed of those pairs."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON."),
) -> None:
    """Check an artifact on the machine it will run on against its FP32 model.

    Runs the artifact with the backend and device it would use here (ONNX Runtime on this
    CPU's int8 kernels, TensorRT on this GPU), prints worst/mean cosine, NN agreement,
    FPR95 and NN accuracy and the host, and exits 1 when the INT8 gate's limits (stored in
    the artifact) are exceeded.

    Example: hardnet-export check model.int8-cpu.onnx

    Example: hardnet-export check model.int8-tensorrt.engine --reference weights.pth
    """
    from hardnet_export._io import atomic_write_text, check_writable
    from hardnet_export.check import check_artifact

    if json_out is not None:
        check_writable(json_out)
    report = check_artifact(artifact, reference, device=device, pairs=pairs, seed=seed)
    typer.echo(report.format())
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        typer.echo(f"wrote {json_out}")
    if not report.passed:
        typer.echo(f"error: {report.reason()}", err=True)
        raise typer.Exit(1)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for everything."),
    train_steps: int = typer.Option(
        0, "--train-steps", help="0 uses the shipped model; N trains a model for N steps first."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    pairs: int = typer.Option(1000, "--pairs", help="Evaluation pairs per data set."),
    batch_sizes: str = typer.Option("1,32,256", "--batch-sizes", help="Benchmark batch sizes."),
    duration_s: float = typer.Option(1.0, "--duration-s", help="Timed seconds per case."),
) -> None:
    """Run the whole pipeline on built-in data: export, accuracy vs SIFT, speed, matching.

    Writes DIR/report.md, DIR/report.json, the benchmark plot and the match images.

    Example: hardnet-export demo --out demo-out

    Example: hardnet-export demo --out demo-small --train-steps 50 --pairs 200
    """
    from hardnet_export.benchmark.run import parse_batch_sizes
    from hardnet_export.demo import DemoConfig, run_demo

    sizes = tuple(parse_batch_sizes(batch_sizes))
    report = run_demo(
        DemoConfig(
            out=out,
            train_steps=train_steps,
            device=device,
            pairs=pairs,
            batch_sizes=sizes,
            bench_duration_s=duration_s,
        )
    )
    failed = [s.name for s in report.stages if s.status == "failed"]
    typer.echo(f"report: {out / 'report.md'}")
    if failed:
        # The report is written either way; the exit status tells scripts (and CI) it broke.
        typer.echo(f"stages that failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one sentence; ``--debug`` shows the traceback."""
    args = sys.argv[1:] if argv is None else argv
    # Warnings are advice to the user: one line each, without the source line they came from.
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
    try:
        app(args=args, prog_name="hardnet-export")
    except USER_ERRORS as exc:
        if _state["debug"] or "--debug" in args:
            raise
        message = str(exc).strip() or type(exc).__name__
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)
