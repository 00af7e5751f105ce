"""The GPU machine's device check: every CUDA path this project has, in one run of under 5
minutes on one H100/H200, and a results file saying what ran, what was skipped and why.

    PYTHONPATH=. python benchmarks/gpu_smoke.py [--out DIR] [--keep DIR]
    PYTHONPATH=. python benchmarks/gpu_smoke.py --cpu --out /tmp/x   # no-GPU mode (CI)

Made for the machine this project may be lent (PyTorch with CUDA, cuda-bindings, CuPy,
ONNX Runtime for the CPU, no TensorRT, no network, only the working tree): the torch CUDA
backend (FP32, FP16, CUDA graphs on the describer's own device and stream, two streams, zero-
copy torch and CuPy input), ``runtime/cudart.py`` for real (device and pinned memory, copies,
streams, events, graph capture and its failure path), patches/s at batch 1 and 1024 and the
p50 latency against the HardNet paper's "about 1 ms per descriptor on a low-end GPU". The
TensorRT steps run where TensorRT is installed and are skipped, with the reason, where not.

Each step prints PASS, FAIL or SKIP with a detail, and ``--out`` (default
``benchmarks/results``) gets ``gpu-<gpu>.json`` and ``.md``. The exit code is the number of
failed steps. Without a CUDA device it exits 100 before any step ("nothing to check" is no
pass), unless ``--cpu`` asks for the no-GPU mode: the same steps and files (``gpu-cpu-
mode.*``), the torch steps on the CPU, every CUDA step skipped as such.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NO_DEVICE_EXIT = 100
SCHEMA = 1
#: The HardNet paper (Mishchuk et al. 2017, section 5): "about 1 ms per descriptor on a
#: low-end GPU"; compared with the p50 per descriptor at batch 1 and at batch 1024.
PAPER_MS_PER_DESCRIPTOR = 1.0
BATCHES = (1, 1024)
STATUSES = ("passed", "failed", "skipped")
RESULTS: list[dict[str, Any]] = []
THROUGHPUT: list[dict[str, Any]] = []
STATE: dict[str, Any] = {}
#: Why a prerequisite is absent on purpose (a missing library, CPU mode): steps that need
#: it are skipped with this reason; a prerequisite a failed step did not make fails them.
ABSENT: dict[str, str] = {}


def step(name: str, needs: tuple[str, ...] = ()) -> Callable[[Callable[[], str]], None]:
    """Run ``fn`` now as one step; its return value is the detail printed after PASS."""

    def run(fn: Callable[[], str]) -> None:
        missing = [n for n in needs if n not in STATE]
        absent = [ABSENT[n] for n in missing if n in ABSENT]
        started = time.perf_counter()
        if absent:
            status, detail = "skipped", "; ".join(dict.fromkeys(absent))
        elif missing:
            status, detail = "failed", f"not run: needs {', '.join(missing)}"
        else:
            try:
                status, detail = "passed", fn()
            except Exception as exc:
                status, detail = "failed", f"{type(exc).__name__}: {exc}"
                traceback.print_exc(limit=3, file=sys.stderr)
        took = round(time.perf_counter() - started, 2)
        RESULTS.append({"name": name, "status": status, "seconds": took, "detail": detail})
        label = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[status]
        print(f"{label}  {name} ({took:.1f}s): {detail}", flush=True)

    return run


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())


def measure(
    describer: Any,
    patches: np.ndarray,
    *,
    label: dict[str, Any],
    seconds: float,
    batches: tuple[int, ...] = BATCHES,
) -> str:
    """Patches/s and p50 latency of ``describer.describe`` on host patches at each of
    ``batches`` (end to end: host in, host out), and the device-time p50 where the
    backend reports one (CUDA events around the inference); recorded in THROUGHPUT."""
    from hardnet_export.benchmark.stats import percentile

    notes = []
    for batch in batches:
        x = patches[:batch] if batch <= len(patches) else np.resize(patches, (batch, 32, 32))
        for _ in range(3):  # warm-up: cuDNN autotuning, lazy allocations
            describer.describe(x)
        walls: list[float] = []
        devices: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(walls) < 3 or (time.perf_counter() < deadline and len(walls) < 2000):
            started = time.perf_counter()
            describer.describe(x)
            walls.append(time.perf_counter() - started)
        for _ in range(min(len(walls), 50)):
            _, device_seconds = describer.describe_timed(x)
            if device_seconds is None:
                break  # a backend without device timing (the CPU)
            devices.append(device_seconds)
        p50 = percentile(walls, 50)
        row = {
            **label,
            "batch": batch,
            "iterations": len(walls),
            "patches_per_s": round(batch / float(np.median(walls)), 1),
            "p50_ms": round(p50 * 1e3, 4),
            "p50_ms_per_descriptor": round(p50 * 1e3 / batch, 5),
            "device_p50_ms": round(percentile(devices, 50) * 1e3, 4) if devices else None,
            "paper_ms_per_descriptor": PAPER_MS_PER_DESCRIPTOR,
        }
        THROUGHPUT.append(row)
        notes.append(f"batch {batch}: {row['patches_per_s']:,.0f}/s, p50 {row['p50_ms']:.3f} ms")
    return "; ".join(notes)


def slug_of(mode: str) -> str:
    if mode == "cpu":
        return "gpu-cpu-mode"
    from hardnet_export.benchmark.machine import gpu_slug

    return gpu_slug()


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    from hardnet_export._cuda import tensorrt_status

    trt, _ = tensorrt_status()  # type stubs alone import as an empty "tensorrt"
    found["tensorrt"] = str(trt.__version__) if trt is not None else None
    for module in ("torch", "numpy", "onnxruntime", "cupy", "cuda.bindings"):
        try:
            imported = __import__(module, fromlist=["__version__"])
            found[module] = str(getattr(imported, "__version__", "?"))
        except Exception:
            found[module] = None
    return found


def write_results(out: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """``<slug>.json`` and ``<slug>.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    slug = report["slug"]
    json_path, md_path = out / f"{slug}.json", out / f"{slug}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    counts = report["counts"]
    lines = [
        f"# GPU device check: {report['gpu'] or 'no GPU (CPU mode)'}",
        "",
        f"`benchmarks/gpu_smoke.py` ({report['mode']} mode), {report['finished']}, "
        f"{report['seconds']:.0f} s: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v) + ".",
        "",
        "| step | status | seconds | detail |",
        "|---|---|---:|---|",
        *(
            f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | "
            f"{str(r['detail']).replace('|', '/')} |"
            for r in report["steps"]
        ),
        "",
        f"Throughput (host patches in, descriptors out; the paper: about "
        f"{PAPER_MS_PER_DESCRIPTOR:g} ms per descriptor on a low-end GPU):",
        "",
        "| backend | device | precision | options | batch | patches/s | p50 ms | "
        "p50 ms/descriptor | device p50 ms |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
        *(
            f"| {t['backend']} | {t['device']} | {t['precision']} | {t['options'] or '-'} | "
            f"{t['batch']} | {t['patches_per_s']:,.0f} | {t['p50_ms']:.3f} | "
            f"{t['p50_ms_per_descriptor']:.5f} | "
            f"{'-' if t['device_p50_ms'] is None else format(t['device_p50_ms'], '.3f')} |"
            for t in report["throughput"]
        ),
        "",
    ]
    md_path.write_text("\n".join(lines))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", type=Path, help="write the artifacts here and keep them")
    parser.add_argument("--cpu", action="store_true", help="the no-GPU mode (see above)")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="timed seconds per throughput point"
    )
    parser.add_argument(
        "--batches",
        default=",".join(map(str, BATCHES)),
        help="throughput batches, comma-separated (default: 1,1024)",
    )
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))

    # Only the working tree travels to the GPU machine: import the package from it.
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from gpu_gate import gpu_test_gate, gpu_visible  # test tooling, not in the package

    from hardnet_export._cuda import cuda_status, tensorrt_status

    started_at = time.perf_counter()
    count, why = cuda_status()
    visible, evidence = gpu_visible()
    if count == 0 and not args.cpu:
        print(
            f"no CUDA device: {why} (other probes: {evidence}; the GPU-test gate says "
            f"{gpu_test_gate(visible, False)!r}); nothing was checked (--cpu runs the no-GPU "
            "mode)",
            file=sys.stderr,
        )
        return NO_DEVICE_EXIT
    mode = "gpu" if count > 0 else "cpu"
    if mode == "cpu":
        for key in ("cuda", "torch_cuda", "trt"):
            ABSENT[key] = f"no CUDA device ({why}): CPU mode"
    trt, trt_why = tensorrt_status()
    if trt is not None and mode == "gpu":
        STATE["trt"] = trt
    elif "trt" not in ABSENT:
        ABSENT["trt"] = trt_why
    try:
        import cupy

        STATE["cupy"] = cupy
    except ImportError as exc:
        ABSENT["cupy"] = f"CuPy is not installed ({exc})"
    gpu_name = None
    if mode == "gpu":
        from hardnet_export._cuda import device_properties

        gpu_name = str(device_properties(0)["name"])
    work = args.keep or Path(tempfile.mkdtemp(prefix="hardnet-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (1024, 32, 32), dtype=np.uint8)

    @step("versions and device, as the test gate sees them")
    def _() -> str:
        import torch

        from hardnet_export._cuda import device_properties

        STATE["torch"] = torch
        if mode == "cpu":
            return f"CPU mode: {why}; torch {torch.__version__}"
        gpu = device_properties(0)
        decision = gpu_test_gate(visible, count > 0)
        assert decision == "run", f"the GPU tests would {decision}"
        STATE["cuda"] = True
        if torch.cuda.is_available():
            STATE["torch_cuda"] = True
        else:
            ABSENT["torch_cuda"] = "torch sees no CUDA device (a CPU build of torch?)"
        return (
            f"{gpu['name']} cc {gpu['compute_capability']}, {count} device(s); torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}); gate: run ({evidence})"
        )

    @step("cudart: device and pinned memory, h2d/d2h copies, stream, timing events", ("cuda",))
    def _() -> str:
        from hardnet_export.runtime import cudart

        host = cudart.PinnedBuffer((1 << 22,), np.float32)
        back = cudart.PinnedBuffer((1 << 22,), np.float32)
        device = cudart.DeviceBuffer(host.nbytes)
        stream = cudart.Stream()
        start, end = cudart.Event(timing=True), cudart.Event(timing=True)
        host.array[:] = np.arange(host.array.size, dtype=np.float32)
        start.record(int(stream))
        cudart.memcpy_async(device.ptr, host.ptr, host.nbytes, "h2d", int(stream))
        cudart.memcpy_async(back.ptr, device.ptr, host.nbytes, "d2h", int(stream))
        end.record(int(stream))
        end.synchronize()
        assert np.array_equal(back.array, host.array), "the round trip changed the data"
        assert cudart.pointer_device(device.ptr) == 0 and cudart.pointer_device(host.ptr) is None
        seconds = cudart.elapsed_seconds(start, end)
        for resource in (device, host, back):
            resource.free()
        for event in (start, end):
            event.destroy()
        stream.destroy()
        gbps = 2 * (1 << 24) / seconds / 1e9
        return f"16 MiB there and back in {seconds * 1e3:.3f} ms ({gbps:.1f} GB/s)"

    @step("cudart: graph capture and replay; a failed capture is aborted cleanly", ("cuda",))
    def _() -> str:
        from hardnet_export.errors import DeviceError
        from hardnet_export.runtime import cudart

        host = cudart.PinnedBuffer((1 << 20,), np.float32)
        device = cudart.DeviceBuffer(host.nbytes)
        stream = cudart.Stream()
        graph = cudart.Graph(stream)
        graph.begin()
        cudart.memcpy_async(device.ptr, host.ptr, host.nbytes, "h2d", int(stream))
        graph.end()
        back = np.empty(host.array.shape, np.float32)
        for value in (1.0, 2.0):
            host.array[:] = value
            graph.launch()
            stream.synchronize()
            cudart.copy_device_to_host(back, device.ptr)
            assert (back == value).all(), f"graph replay copied {back[:3]}, expected {value}"
        graph.destroy()
        # A synchronous copy is illegal while this thread captures: the capture is
        # invalidated, abort() must end it and clear the error, and the stream stay usable.
        broken = cudart.Graph(stream)
        broken.begin()
        try:
            cudart.copy_device_to_host(back, device.ptr)
        except DeviceError as exc:
            failure = str(exc).split(":")[0]
        else:
            failure = "no error"
        broken.abort()
        assert failure != "no error", "a synchronous copy during capture did not fail"
        host.array[:] = 3.0
        cudart.memcpy_async(device.ptr, host.ptr, host.nbytes, "h2d", int(stream))
        stream.synchronize()
        cudart.copy_device_to_host(back, device.ptr)
        assert (back == 3.0).all(), "the stream did not recover after the aborted capture"
        for resource in (device, host):
            resource.free()
        stream.destroy()
        return f"replayed twice; the illegal call failed ({failure}), aborted, stream reused"

    @step("torch backend: FP32 on the device, against the CPU", ("torch",))
    def _() -> str:
        from hardnet_export import runtime

        reference = runtime.load(None, backend="torch", device="cpu", max_batch=256)
        STATE["want"] = reference.describe(patches[:256])
        if mode == "cpu":
            STATE["describer"] = reference
            return "CPU mode: the CPU describer is the reference"
        d = runtime.load(None, backend="torch", device="cuda:0", max_batch=256)
        worst = cosine_min(d.describe(patches[:256]), STATE["want"])
        assert worst >= 0.9999, f"min cosine {worst}"
        STATE["describer"] = d
        return f"cuda:0, min cosine {worst:.6f}"

    @step("torch backend: FP16 + channels_last, CUDA graph", ("torch_cuda", "want"))
    def _() -> str:
        from hardnet_export import runtime

        notes = []
        for options, floor in (
            ({"fp16": True, "channels_last": True}, 0.999),
            ({"cuda_graph": True}, 0.9999),
            ({"cuda_graph": True, "fp16": True}, 0.999),
        ):
            d = runtime.load(None, backend="torch", device="cuda:0", max_batch=256, **options)
            worst = cosine_min(d.describe(patches[:256]), STATE["want"])  # 256: the replay
            assert worst >= floor, f"{options}: min cosine {worst}"
            if options.get("cuda_graph"):
                assert d._graph is not None and np.abs(d.describe(patches[:256])).sum() > 0
            notes.append(f"{'+'.join(options)} {worst:.5f}")
        return "min cosine " + ", ".join(notes)

    @step("torch CUDA graph on its own device, another one current", ("torch_cuda", "want"))
    def _() -> str:
        import torch

        from hardnet_export import runtime

        last = torch.cuda.device_count() - 1
        with torch.cuda.device(0):
            d = runtime.load(
                None, backend="torch", device=f"cuda:{last}", max_batch=64, cuda_graph=True
            )
            got = d.describe(patches[:64])
        assert d._capture_stream.device == torch.device(f"cuda:{last}")
        worst = cosine_min(got, STATE["want"][:64])
        assert worst >= 0.9999, f"min cosine {worst}"
        return f"cuda:{last} with cuda:0 current, min cosine {worst:.6f}"

    @step("torch CUDA graph replays on two streams, no host sync", ("torch_cuda",))
    def _() -> str:
        import torch

        from hardnet_export import runtime

        batch = 2048
        d = runtime.load(None, backend="torch", device="cuda", max_batch=batch, cuda_graph=True)
        eager = runtime.load(None, backend="torch", device="cuda", max_batch=batch)
        xs = [
            torch.from_numpy(rng.integers(0, 256, (batch, 32, 32), dtype=np.uint8)).cuda()
            for _ in range(4)
        ]
        want = [eager.describe(x).cpu().numpy() for x in xs]
        streams = [torch.cuda.Stream(), torch.cuda.Stream()]
        for stream in streams:
            stream.wait_stream(torch.cuda.current_stream())
        outs = []
        for _ in range(3):
            for i, x in enumerate(xs):
                with torch.cuda.stream(streams[i % 2]):
                    outs.append((i, d.describe(x, stream=streams[i % 2])))
        torch.cuda.synchronize()
        worst = min(cosine_min(out.cpu().numpy(), want[i]) for i, out in outs)
        assert worst >= 0.9999, f"min cosine {worst}"
        return f"{len(outs)} replays of {batch}, min cosine {worst:.6f}"

    @step("zero-copy input: a CUDA torch tensor on a second stream", ("torch_cuda", "want"))
    def _() -> str:
        import torch

        d = STATE["describer"]
        x = torch.from_numpy(patches[:256]).cuda()
        out = d.describe(x)
        assert out.device == x.device, f"descriptors on {out.device}"
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            on_side = d.describe(x, stream=side)
        side.synchronize()
        worst = min(
            cosine_min(out.cpu().numpy(), STATE["want"]),
            cosine_min(on_side.cpu().numpy(), STATE["want"]),
        )
        assert worst >= 0.9999, f"min cosine {worst}"
        return f"current and side stream, min cosine {worst:.6f}"

    @step("zero-copy input: a CuPy array (__cuda_array_interface__)", ("torch_cuda", "cupy"))
    def _() -> str:
        cupy = STATE["cupy"]
        x = cupy.asarray(patches[:256])
        out = STATE["describer"].describe(x)
        assert isinstance(out, np.ndarray), type(out)
        worst = cosine_min(out, STATE["want"])
        assert worst >= 0.9999, f"min cosine {worst}"
        return f"CuPy {cupy.__version__}, min cosine {worst:.6f}"

    @step("throughput and p50 latency by batch (1 and 1024 by default)", ("describer",))
    def _() -> str:
        from hardnet_export import runtime

        notes = []
        configs: list[tuple[str, dict[str, Any]]] = (
            [("cpu", {})]
            if mode == "cpu"
            else [("cuda:0", {}), ("cuda:0", {"fp16": True, "channels_last": True})]
        )
        for device, options in configs:
            for batch in batches:
                graph = {"cuda_graph": True} if device != "cpu" else {}
                d = runtime.load(
                    None, backend="torch", device=device, max_batch=batch, **options, **graph
                )
                label = {
                    "backend": "torch",
                    "device": device,
                    "precision": d.precision,
                    "options": "+".join([*options, *graph]),
                }
                # Each describer is sized for one batch (the graph replays exactly that).
                measure(d, patches, label=label, seconds=args.seconds, batches=(batch,))
            row = THROUGHPUT[-len(batches) :]
            notes.append(
                f"{device} {row[0]['precision']}: "
                + ", ".join(f"b{r['batch']} {r['patches_per_s']:,.0f}/s" for r in row)
            )
        best = min(r["p50_ms_per_descriptor"] for r in THROUGHPUT)
        verdict = "within" if best <= PAPER_MS_PER_DESCRIPTOR else "above"
        return "; ".join(notes) + f"; best {best:.5f} ms/descriptor ({verdict} the paper's ~1 ms)"

    @step("ONNX export FP32 and FP16 (for TensorRT)", needs=("trt",))
    def _() -> str:
        from hardnet_export.export.onnx import export_onnx

        STATE["fp32"] = export_onnx(None, work / "model.fp32.onnx", parity=False)
        STATE["fp16"] = export_onnx(None, work / "model.fp16.onnx", variant="fp16", parity=False)
        return f"{STATE['fp32'].name}, {STATE['fp16'].name}"

    @step("engine 1/64/64 with a timing cache, then its reuse", needs=("trt", "fp32"))
    def _() -> str:
        from hardnet_export.export.tensorrt import build_engine

        cache = work / "trt.cache"
        engine = work / "model.fp32.engine"
        first = build_engine(
            STATE["fp32"], engine, min_batch=1, opt_batch=64, max_batch=64,
            timing_cache=cache, rebuild=True,
        )  # fmt: skip
        assert cache.is_file() and cache.stat().st_size > 0, "no timing cache written"
        again = build_engine(
            STATE["fp32"], engine, min_batch=1, opt_batch=64, max_batch=64, timing_cache=cache
        )
        assert again.reused, "an identical build was not reused"
        started = time.perf_counter()
        build_engine(
            STATE["fp32"], work / "cached.engine", min_batch=1, opt_batch=64, max_batch=64,
            timing_cache=cache, rebuild=True,
        )  # fmt: skip
        cached = time.perf_counter() - started
        STATE["engine"] = engine
        return (
            f"built in {first.sidecar.build_seconds:.1f}s, reused, rebuilt from the cache in "
            f"{cached:.1f}s"
        )

    @step("TensorRT vs ONNX Runtime CPU, CUDA graph on and off", needs=("trt", "engine"))
    def _() -> str:
        from hardnet_export import runtime

        ort = runtime.load(STATE["fp32"], device="cpu")
        want = ort.describe(patches)
        worst = []
        for graph in (True, False):
            trt = runtime.load(STATE["engine"], cuda_graph=graph)
            assert (trt._graph is not None) == graph, f"cuda_graph={graph}: {trt.cuda_graph_off}"
            got = trt.describe(patches)
            full = trt.describe(patches[:64])  # exactly max_batch: the graph when on
            worst.append(min(cosine_min(got, want), cosine_min(full, want[:64])))
            trt.close()
        assert min(worst) >= 0.9999, f"min cosine {worst}"
        return f"min cosine graph on {worst[0]:.6f}, off {worst[1]:.6f}"

    @step("graph after partial batch and device input equals no graph", needs=("trt", "engine"))
    def _() -> str:
        import torch

        from hardnet_export import runtime

        graph = runtime.load(STATE["engine"])
        direct = runtime.load(STATE["engine"], cuda_graph=False)
        full = patches[:64]
        want = direct.describe(full)
        graph.describe(full[:7])
        graph.describe(torch.from_numpy(full[:33]).cuda())
        worst = max(float(np.abs(graph.describe(full) - want).max()) for _ in range(3))
        assert worst <= 1e-5, f"max difference {worst}"
        return f"max difference {worst:.2e}"

    @step(
        "torch input: default stream, side stream; __cuda_array_interface__",
        needs=("trt", "engine"),
    )
    def _() -> str:
        import torch

        from hardnet_export import runtime

        trt = runtime.load(STATE["engine"])
        want = trt.describe(patches)
        x = torch.from_numpy(patches).cuda()
        out = trt.describe(x)
        assert out.device == x.device
        np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-4)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            on_side = trt.describe(x.float(), stream=side)
        side.synchronize()
        np.testing.assert_allclose(on_side.cpu().numpy(), want, atol=1e-4)

        class DeviceArray:
            __cuda_array_interface__ = x.__cuda_array_interface__

        np.testing.assert_allclose(trt.describe(DeviceArray()), want, atol=1e-4)
        return "all three equal the host path"

    @step("describe_timed", needs=("trt", "engine"))
    def _() -> str:
        from hardnet_export import runtime

        trt = runtime.load(STATE["engine"])
        out, seconds = trt.describe_timed(patches)
        assert seconds is not None and seconds > 0, f"device time {seconds}"
        np.testing.assert_allclose(out, trt.describe(patches), atol=1e-5)
        return f"{len(patches)} patches, {seconds * 1e3:.3f} ms of inference"

    @step("shipped all-int8 int8-tensorrt graphs -> INT8 engines vs exact Q/DQ", needs=("trt",))
    def _() -> str:
        # QAT trained them in exact Q/DQ arithmetic (ONNX Runtime, optimisations off); the
        # engine's int8 kernels must compute that, within the rounding of their fused epilogues.
        from hardnet_export import runtime
        from hardnet_export.artifacts.models import models
        from hardnet_export.data.builtin import validation_pairs
        from hardnet_export.export.tensorrt import build_engine

        held_out = validation_pairs(256, seed=0).anchors
        figures = []
        for entry in models():
            if "int8-tensorrt" not in entry.graphs:
                continue
            graph = entry.graph("int8-tensorrt")
            engine = work / f"{entry.stem}.int8-tensorrt.engine"
            build_engine(
                graph, engine, opt_batch=256, max_batch=256, timing_cache=work / "trt.cache",
                rebuild=True,
            )  # fmt: skip
            exact = runtime.load(graph, backend="onnxruntime", graph_optimization_level="disable")
            worst = cosine_min(runtime.load(engine).describe(held_out), exact.describe(held_out))
            assert worst >= 0.99, f"{entry.name}: min cosine {worst}"
            figures.append(f"{entry.name} {worst:.4f}")
        assert figures, "no registered model ships an int8-tensorrt graph"
        return "min cosine " + ", ".join(figures)

    @step("a version-compatible engine loads", needs=("trt", "fp32"))
    def _() -> str:
        from hardnet_export import runtime
        from hardnet_export.export.tensorrt import build_engine

        path = work / "model.vc.engine"
        build_engine(
            STATE["fp32"], path, opt_batch=16, max_batch=16, version_compatible=True,
            timing_cache=work / "trt.cache", rebuild=True,
        )  # fmt: skip
        trt = runtime.load(path)
        ort = runtime.load(STATE["fp32"], device="cpu")
        worst = cosine_min(trt.describe(patches[:16]), ort.describe(patches[:16]))
        assert worst >= 0.9999, f"min cosine {worst}"
        return f"min cosine {worst:.6f}"

    @step("image graph (3 levels) -> image engine, compute() vs ONNX Runtime", needs=("trt",))
    def _() -> str:
        from hardnet_export import geometry, runtime
        from hardnet_export.data.builtin import load_photo, split_photos
        from hardnet_export.errors import InputError
        from hardnet_export.export.image_graph import export_image_graph
        from hardnet_export.export.tensorrt import build_engine

        graph = export_image_graph(None, work / "model.image.onnx", pyramid_levels=3)
        engine = work / "model.image.engine"
        build = build_engine(
            graph, engine, opt_image="320x240", max_image="640x480", opt_keypoints=256,
            max_keypoints=1024, timing_cache=work / "trt.cache", rebuild=True,
        )  # fmt: skip
        image = np.ascontiguousarray(
            geometry.as_gray(load_photo(split_photos("val")[0]))[:240, :320]
        )
        n = 2000
        kps = np.stack(
            [rng.uniform(0, 319, n), rng.uniform(0, 239, n), np.exp(rng.uniform(0, 3, n)),
             rng.uniform(-1, 360, n)], 1,
        )  # fmt: skip
        kps = kps[geometry.keypoints_in_bounds(image.shape, kps)][:500].astype(np.float32)
        trt = runtime.load(engine)
        want = runtime.load(graph, device="cpu").compute(image, kps)[1]
        worst = cosine_min(trt.compute(image, kps)[1], want)
        assert worst >= 0.999, f"min cosine {worst}"
        try:
            trt.compute(np.zeros((500, 700), np.uint8), kps[:1])
        except InputError as exc:
            assert "--max-image 700x500" in str(exc), str(exc)
        else:
            raise AssertionError("an image outside the profile was not refused")
        trt.close()
        return (
            f"built in {build.sidecar.build_seconds:.1f}s, {len(kps)} keypoints, min cosine "
            f"{worst:.6f}"
        )

    seconds = time.perf_counter() - started_at
    counts = {status: sum(r["status"] == status for r in RESULTS) for status in STATUSES}
    report = {
        "schema": SCHEMA,
        "slug": slug_of(mode),
        "mode": mode,
        "gpu": gpu_name,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "versions": versions(),
        "counts": counts,
        "steps": RESULTS,
        "throughput": THROUGHPUT,
        "paper_ms_per_descriptor": PAPER_MS_PER_DESCRIPTOR,
    }
    json_path, md_path = write_results(args.out, report)
    print(
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped in "
        f"{seconds:.0f}s; wrote {json_path} and {md_path.name}",
        flush=True,
    )
    return counts["failed"]


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        sys.exit(main())
