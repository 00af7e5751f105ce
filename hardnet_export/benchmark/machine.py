"""What a benchmark ran on: CPU, cores, GPU and driver, library versions."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.backends import backends
from hardnet_export.errors import MissingDependencyError
from hardnet_export.host import cpu_flags, cpu_model, distribution_version, int8_isa, usable_cpus

#: Distributions besides the backends' own (each Backend record names those) whose versions
#: decide the numbers; the first installed name of each is used.
OTHER_LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "cuda-python": ("cuda-python", "cuda-bindings"),
}


def libraries() -> dict[str, tuple[str, ...]]:
    """Every library a benchmark records: each registered backend's, by its name, and
    :data:`OTHER_LIBRARIES`."""
    own = {b.name: b.distributions for b in backends() if b.distributions}
    return {**own, **OTHER_LIBRARIES}


#: CPU features that change which kernels ONNX Runtime and PyTorch pick (INT8 and FP16 above all).
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
)


def library_versions() -> dict[str, str | None]:
    """Installed versions by distribution metadata (nothing is imported), ``None`` if absent."""
    from hardnet_export import __version__

    versions: dict[str, str | None] = {"hardnet-export": __version__}
    for name, distributions in libraries().items():
        versions[name] = distribution_version(*distributions)
    return versions


def physical_cores() -> int | None:
    """Distinct (socket, core) pairs in /proc/cpuinfo: cores without SMT siblings."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return None
    cores, socket = set(), "0"
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            socket = value.strip()
        elif key.strip() == "core id":
            cores.add((socket, value.strip()))
    return len(cores) or None


def cpu_info() -> dict[str, Any]:
    """CPU model, usable cores and the instruction-set features that matter for inference."""
    flags = cpu_flags()
    usable = usable_cpus()
    return {
        "model": cpu_model(),
        "architecture": platform.machine(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "int8_isa": int8_isa(flags),
    }


def cpu_slug(cpu: dict[str, Any] | None = None) -> str:
    """A file-name-safe machine tag such as ``cpu-2core-amd-epyc-avx2``: CPU count, model and
    int8 kernel kind (two machines that report the same model name, such as AMD EPYC Zen 3 and
    Zen 4 virtual machines, differ there, and so do their INT8 figures)."""
    cpu = cpu or cpu_info()
    model = re.sub(r"\((r|tm)\)|cpu|@.*$", "", str(cpu["model"]).lower())
    words = re.findall(r"[a-z0-9]+", model)[:8]
    isa = cpu.get("int8_isa") or int8_isa()
    return "-".join(["cpu", f"{cpu['usable_cpus']}core", *words, isa])[:80]


def gpu_slug(gpus: list[dict[str, Any]] | None = None) -> str:
    """A file-name-safe tag of the first GPU such as ``gpu-nvidia-h100-80gb-hbm3``.

    Raises:
        RuntimeError: no CUDA device is visible.
    """
    gpus = gpu_info() if gpus is None else gpus
    if not gpus:
        raise MissingDependencyError("no CUDA device is visible")
    words = re.findall(r"[a-z0-9]+", str(gpus[0]["name"]).lower())
    return "-".join(["gpu", *words])[:80]


def _cuda_versions() -> dict[str, str | None]:
    """CUDA driver and runtime versions as ``"12.4"``; None where they cannot be read."""
    versions: dict[str, str | None] = {"driver": None, "runtime": None}
    try:
        from cuda.bindings import runtime
    except ImportError:
        return versions
    for key, call in (
        ("driver", runtime.cudaDriverGetVersion),
        ("runtime", runtime.cudaRuntimeGetVersion),
    ):
        try:
            err, value = call()
        except Exception:  # a broken install can raise from the bindings; report unknown
            continue
        if int(err) == 0 and int(value) > 0:
            versions[key] = f"{int(value) // 1000}.{int(value) % 1000 // 10}"
    return versions


def gpu_info() -> list[dict[str, Any]]:
    """Visible CUDA devices (name, compute capability, memory) with the CUDA driver and
    runtime versions; ``[]`` without a device."""
    from hardnet_export import _cuda

    count = _cuda.cuda_device_count()
    if count == 0:
        return []
    versions = _cuda_versions()
    return [
        {
            **_cuda.device_properties(i),
            "cuda_driver": versions["driver"],
            "cuda_runtime": versions["runtime"],
        }
        for i in range(count)
    ]


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work competing for the cores skews timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """Everything a reader needs to compare two benchmark files."""
    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "memory_gb": _memory_gb(),
        "gpus": gpu_info(),
        "libraries": library_versions(),
        "load_average_start": load_average(),
    }
