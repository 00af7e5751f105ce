from __future__ import annotations

import sys
import types
from pathlib import Path

import gpu_gate
import pytest

from hardnet_export import _cuda
from hardnet_export.errors import MissingDependencyError


def test_device_count_never_raises() -> None:
    count, why = _cuda.cuda_status()
    assert count >= 0 and (count > 0) == (why == "")
    assert _cuda.cuda_device_count() == count


def test_require_cuda_device_matches_the_probe() -> None:
    if _cuda.cuda_device_count() == 0:
        with pytest.raises(MissingDependencyError, match="a CUDA device is needed"):
            _cuda.require_cuda_device()
        with pytest.raises(MissingDependencyError):
            _cuda.device_properties(0)
    else:
        assert _cuda.require_cuda_device() >= 1
        props = _cuda.device_properties(0)
        assert props["name"] and "." in props["compute_capability"]


def test_empty_tensorrt_package_is_not_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    # What tensorrt-stubs leaves behind: an importable module without the API.
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    module, why = _cuda.tensorrt_status()
    assert module is None and "TensorRT is not installed" in why and "[trt]" in why
    with pytest.raises(MissingDependencyError, match="not installed"):
        _cuda.tensorrt_module()
    with pytest.raises(MissingDependencyError, match="building an engine needs TensorRT"):
        _cuda.require_tensorrt(purpose="building an engine")


def test_real_looking_tensorrt_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "11.4.1.2"  # type: ignore[attr-defined]
    fake.Builder = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert _cuda.tensorrt_module() is fake
    assert _cuda.tensorrt_version(fake) == (11, 4)
    if _cuda.cuda_device_count() == 0:
        # TensorRT alone is not enough: the message names the missing device, not TensorRT
        # (it may name cuda-python, which the device probe needs).
        with pytest.raises(MissingDependencyError) as info:
            _cuda.require_tensorrt()
        message = str(info.value)
        assert "CUDA device" in message and "TensorRT is not installed" not in message


def test_missing_cuda_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cuda, "_cudart", lambda: None)
    count, why = _cuda.cuda_status()
    assert count == 0 and "cuda-python is not installed" in why


@pytest.mark.parametrize(
    ("gpu_visible", "wrappers_work", "decision"),
    [
        (False, False, "skip"),  # a CPU machine
        (True, True, "run"),
        (False, True, "run"),  # the wrappers see a device nothing else listed
        (True, False, "fail"),  # a GPU the CUDA wrappers cannot use: never a silent skip
    ],
)
def test_gpu_test_gate(gpu_visible: bool, wrappers_work: bool, decision: str) -> None:
    assert gpu_gate.gpu_test_gate(gpu_visible, wrappers_work) == decision


def test_gpu_visible_never_raises() -> None:
    visible, evidence = gpu_gate.gpu_visible()
    assert isinstance(visible, bool) and evidence


def test_insufficient_driver_names_the_matching_extra() -> None:
    class Runtime:  # what cuda-python 13 reports on a CUDA 12.4 driver
        @staticmethod
        def cudaDriverGetVersion() -> tuple[int, int]:
            return 0, 12040

    message = _cuda._insufficient_driver(Runtime(), "cudaErrorInsufficientDriver")
    assert "CUDA 12" in message and "hardnet-export[trt-cu12]" in message
    assert "cudaErrorInsufficientDriver" in message


def _extras() -> dict[str, list[str]]:
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]


def _bounds(requirement: str) -> tuple[str, list[tuple[str, tuple[int, ...]]]]:
    import re

    name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()  # type: ignore[union-attr]
    bounds = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        op, version = re.match(r"(<=|>=|==|<|>|~=)\s*([\d.]+)", part).groups()  # type: ignore[union-attr]
        bounds.append((op, tuple(int(v) for v in version.split("."))))
    return name.lower(), bounds


def _allows_only_major(requirements: list[str], package: str, major: int) -> None:
    found = [b for n, b in map(_bounds, requirements) if n == package]
    assert found, f"{package} is not pinned in {requirements}"
    (bounds,) = found
    assert (">=", (major,)) in [(op, v[:1]) for op, v in bounds if op == ">="], bounds
    assert ("<", (major + 1,)) in bounds, f"{package} needs '<{major + 1}' in {bounds}"


def test_extras_pin_cuda_python_to_the_cuda_major() -> None:
    extras = _extras()
    for package in ("cuda-python", "cuda-bindings"):
        _allows_only_major(extras["trt-cu12"], package, 12)  # what a CUDA 12 driver runs
        _allows_only_major(extras["trt-cu13"], package, 13)
        _allows_only_major(extras["gpu"], package, 12)
    assert any(r.startswith("tensorrt-cu12") for r in extras["trt-cu12"])
    assert any(r.startswith("tensorrt-cu13") for r in extras["trt-cu13"])
    assert extras["trt"] == ["hardnet-export[trt-cu12]"]  # the documented default


@pytest.mark.slow
@pytest.mark.skipif(_cuda.cuda_device_count() > 0, reason="checks the no-GPU path")
def test_gpu_smoke_script_says_no_device() -> None:
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 100, result.stderr
    assert result.stderr.startswith("no CUDA device") and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(_cuda.cuda_device_count() > 0, reason="checks the no-GPU mode")
def test_gpu_smoke_cpu_mode_writes_its_results(tmp_path: Path) -> None:
    """The device check's no-GPU mode runs its torch steps on this CPU and writes the same
    two files a GPU run writes; every CUDA step is there, skipped as such, none failed."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    script = root / "benchmarks" / "gpu_smoke.py"
    args = ["--cpu", "--out", str(tmp_path), "--seconds", "0.1", "--batches", "1,8"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "gpu-cpu-mode.json").read_text())
    assert report["schema"] == 1 and report["mode"] == "cpu" and report["gpu"] is None
    assert report["slug"] == "gpu-cpu-mode" and report["versions"]["torch"]
    steps = {s["name"]: s for s in report["steps"]}
    assert len(steps) == len(report["steps"]) >= 15
    for entry in report["steps"]:
        assert set(entry) == {"name", "status", "seconds", "detail"}
        assert entry["status"] in ("passed", "skipped"), entry
        assert entry["seconds"] >= 0 and entry["detail"]
    counts = report["counts"]
    assert counts["failed"] == 0 and counts["passed"] + counts["skipped"] == len(steps)
    cuda_steps = [s for n, s in steps.items() if "cudart" in n or "CUDA graph" in n]
    assert len(cuda_steps) >= 4
    assert all(s["status"] == "skipped" and "no CUDA device" in s["detail"] for s in cuda_steps)
    assert steps["describe_timed"]["status"] == "skipped"
    assert steps["torch backend: FP32 on the device, against the CPU"]["status"] == "passed"
    rows = report["throughput"]
    assert [r["batch"] for r in rows] == [1, 8]
    for row in rows:
        assert row["device"] == "cpu" and row["precision"] == "fp32" and row["iterations"] >= 3
        assert row["patches_per_s"] > 0 and row["p50_ms"] > 0 and row["device_p50_ms"] is None
        assert row["p50_ms_per_descriptor"] == pytest.approx(row["p50_ms"] / row["batch"], 1e-2)
    markdown = (tmp_path / "gpu-cpu-mode.md").read_text()
    assert markdown.startswith("# GPU device check: no GPU (CPU mode)")
    assert "| step | status | seconds | detail |" in markdown
    assert "| backend | device | precision | options | batch |" in markdown
    assert all(f"| {name} |" in markdown for name in steps)
    assert "wrote" in result.stdout and "0 failed" in result.stdout
