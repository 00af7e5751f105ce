"""One GPU smoke run: every CUDA/TensorRT path this project has, in under 5 minutes on one GPU.

    python benchmarks/gpu_smoke.py [--keep DIR]

Each step prints PASS or FAIL with a detail; the exit code is the number of failures (a step
whose prerequisite failed counts as failed). Without a CUDA device it says so and exits 100,
before any step: this script exists to check a GPU machine, and "nothing to check" is not
a pass. Needs the ``train`` extra (torch, onnx) and ``trt``/``trt-cu13`` (TensorRT,
cuda-python) installed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

NO_DEVICE_EXIT = 100
RESULTS: list[tuple[str, bool, str]] = []
STATE: dict[str, Any] = {}


def step(name: str, needs: tuple[str, ...] = ()) -> Callable[[Callable[[], str]], None]:
    """Run ``fn`` now as one step; its return value is the detail printed after PASS."""

    def run(fn: Callable[[], str]) -> None:
        missing = [n for n in needs if n not in STATE]
        started = time.perf_counter()
        if missing:
            ok, detail = False, f"not run: needs {', '.join(missing)}"
        else:
            try:
                ok, detail = True, fn()
            except Exception as exc:
                ok = False
                detail = f"{type(exc).__name__}: {exc}"
                traceback.print_exc(limit=3, file=sys.stderr)
        took = time.perf_counter() - started
        RESULTS.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name} ({took:.1f}s): {detail}", flush=True)

    return run


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="write the artifacts here and keep them")
    args = parser.parse_args()

    # The test gate is test tooling, not part of the package: read it from tests/.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from gpu_gate import gpu_test_gate, gpu_visible

    from hardnet_export._cuda import cuda_status

    count, why = cuda_status()
    visible, evidence = gpu_visible()
    if count == 0:
        print(
            f"no CUDA device: {why} (other probes: {evidence}; the GPU-test gate says "
            f"{gpu_test_gate(visible, False)!r}); nothing was checked",
            file=sys.stderr,
        )
        return NO_DEVICE_EXIT
    work = args.keep or Path(tempfile.mkdtemp(prefix="hardnet-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (200, 32, 32), dtype=np.uint8)

    @step("versions and device, as the test gate sees them")
    def _() -> str:
        import onnxruntime
        import torch

        from hardnet_export._cuda import device_properties, tensorrt_status

        trt, trt_why = tensorrt_status()
        try:
            from cuda.bindings import __version__ as bindings
        except ImportError:
            bindings = "?"
        gpu = device_properties(0)
        decision = gpu_test_gate(visible, count > 0)
        assert decision == "run", f"the GPU tests would {decision}"
        assert trt is not None, trt_why
        assert torch.cuda.is_available(), "torch sees no CUDA device (GPU tests of torch skip)"
        STATE["trt"] = trt
        return (
            f"{gpu['name']} cc {gpu['compute_capability']}; TensorRT {trt.__version__}, "
            f"cuda-bindings {bindings}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
            f"onnxruntime {onnxruntime.__version__}; gate: run ({evidence})"
        )

    @step("CUDA basics: pinned/device copies, events, a graph of one copy")
    def _() -> str:
        from hardnet_export.runtime import cudart

        host = cudart.PinnedBuffer((1 << 20,), np.float32)
        device = cudart.DeviceBuffer(host.nbytes)
        stream = cudart.Stream()
        start, end = cudart.Event(timing=True), cudart.Event(timing=True)
        graph = cudart.Graph(stream)
        graph.begin()
        cudart.memcpy_async(device.ptr, host.ptr, host.nbytes, "h2d", int(stream))
        graph.end()
        back = np.empty(host.array.shape, np.float32)
        for value in (1.0, 2.0):
            host.array[:] = value
            start.record(int(stream))
            graph.launch()
            end.record(int(stream))
            stream.synchronize()
            cudart.copy_device_to_host(back, device.ptr)
            assert (back == value).all(), f"graph replay copied {back[:3]}, expected {value}"
        seconds = cudart.elapsed_seconds(start, end)
        graph.destroy()
        for resource in (device, host):
            resource.free()
        stream.destroy()
        return f"4 MiB h2d by graph replay in {seconds * 1e3:.3f} ms"

    @step("ONNX export FP32 and FP16")
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

    @step("TensorRT vs ONNX Runtime CPU, CUDA graph on and off", needs=("engine",))
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

    @step("graph after partial batch and device input equals no graph", needs=("engine",))
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

    @step("torch input: default stream, side stream; __cuda_array_interface__", needs=("engine",))
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

    @step("describe_timed", needs=("engine",))
    def _() -> str:
        from hardnet_export import runtime

        trt = runtime.load(STATE["engine"])
        out, seconds = trt.describe_timed(patches)
        assert seconds is not None and seconds > 0, f"device time {seconds}"
        np.testing.assert_allclose(out, trt.describe(patches), atol=1e-5)
        return f"{len(patches)} patches, {seconds * 1e3:.3f} ms of inference"

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

    @step("torch backend: CUDA graph, FP16 + channels_last")
    def _() -> str:
        from hardnet_export import runtime

        want = runtime.load(None, device="cpu").describe(patches)
        notes = []
        for options, floor in (
            ({"cuda_graph": True}, 0.9999),
            ({"fp16": True, "channels_last": True}, 0.999),
        ):
            d = runtime.load(None, device="cuda", max_batch=100, backend="torch", **options)
            worst = cosine_min(d.describe(patches), want)
            assert worst >= floor, f"{options}: min cosine {worst}"
            notes.append(f"{'+'.join(options)} {worst:.5f}")
        return ", ".join(notes)

    failures = sum(not ok for _, ok, _ in RESULTS)
    print(f"{len(RESULTS) - failures} passed, {failures} failed", flush=True)
    return failures


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        sys.exit(main())
