"""This machine's CPU as INT8 inference sees it: model, instruction-set flags, int8 kernel kind.

Torch-free and import-cheap (reads ``/proc/cpuinfo`` once), so the runtime, the exporter and
``check`` can all say which int8 kernels computed a figure.

Why the int8 instruction set matters: on x86 without VNNI, ONNX Runtime's (MLAS) u8 x s8
convolution kernels multiply with ``vpmaddubsw``, which adds two u8 x s8 products into a
*saturating* 16-bit sum before widening; 2 x 255 x 127 = 64,770 > 32,767, so large
activations times large weights clip silently. VNNI (``vpdpbusd``: AVX-512 VNNI or AVX-VNNI)
and AMX accumulate in 32 bits. ONNX Runtime's quantisation guide therefore recommends
``reduce_range`` (7-bit weights, |w| <= 64: 2 x 255 x 64 = 32,640 fits) on non-VNNI x86.
ARM's NEON int8 kernels widen to 16 bits per product and accumulate in 32 bits (``sdot``/
``udot`` with the dot-product extension), so they do not saturate.

OpenVINO's int8 kernels do the same on such CPUs: one Q/DQ conv (16 input channels, 3x3,
every weight 127, every input 255) gave the exact 4,663,440 on an AMX Xeon and 2,359,224 with
OpenVINO 2026.4 restricted to AVX2 code there (``ONEDNN_MAX_CPU_ISA=AVX2``): every pair sum
clipped at 32,767 (:func:`int8_kernels_fit`).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

from hardnet_export.errors import InputError, MissingDependencyError

#: int8 kernel kinds, best first; each is what :func:`int8_isa` may return.
INT8_ISAS: dict[str, str] = {
    "amx-int8": "AMX tiles, 32-bit accumulation",
    "avx512-vnni": "AVX-512 VNNI (vpdpbusd), 32-bit accumulation",
    "avx-vnni": "AVX-VNNI (256-bit vpdpbusd), 32-bit accumulation",
    "avx512": "AVX-512 without VNNI (vpmaddubsw), saturating 16-bit pair sums",
    "avx2": "AVX2 without VNNI (vpmaddubsw), saturating 16-bit pair sums",
    "neon-dotprod": "ARM NEON with sdot/udot, 32-bit accumulation",
    "neon": "ARM NEON, 16-bit products widened to 32 bits",
    "generic": "no SIMD int8 kernels known to this project",
}
#: Kernel kinds whose u8 x s8 pair sums saturate at 16 bits (see the module docstring).
SATURATING_ISAS = frozenset({"avx512", "avx2"})


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo (the first CPU's); {} elsewhere."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    info: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in info:
            info[key] = value.strip()
    return info


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags`` or ARM ``Features``); empty when unknown.

    On arm64 only ARM features count: ``Features`` of /proc/cpuinfo and the kernel's
    auxiliary vector (AT_HWCAP, AT_HWCAP2). Under qemu-user, /proc/cpuinfo is the x86 host's
    (its ``flags`` would claim AVX-512 and AMX for an ARM process), while the auxiliary
    vector holds the emulated CPU's features.
    """
    info = _cpuinfo()
    if platform.machine().lower() in ("aarch64", "arm64"):
        return frozenset(info.get("Features", "").split()) | _arm_hwcap_flags()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    """The CPU's marketing name, e.g. ``AMD EPYC 9R14``, or ``unknown``."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or "unknown"


def int8_isa(flags: frozenset[str] | set[str] | None = None) -> str:
    """The int8 kernel kind of a CPU with these flags (default: this machine's).

    Returns one key of :data:`INT8_ISAS`.
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    machine = platform.machine().lower()
    if "amx_int8" in flags:
        return "amx-int8"
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "asimddp" in flags:
        return "neon-dotprod"
    if "asimd" in flags or machine in ("aarch64", "arm64"):
        return "neon"
    return "generic"


#: Bits of AT_HWCAP (16) and AT_HWCAP2 (26) on Linux/arm64 (the kernel's uapi asm/hwcap.h),
#: by the /proc/cpuinfo feature name they stand for: the ones TUNING_FLAGS names.
_HWCAP_BITS = {
    16: {"asimd": 1 << 1, "asimdhp": 1 << 10, "asimddp": 1 << 20, "sve": 1 << 22},
    26: {"i8mm": 1 << 13, "bf16": 1 << 14},
}


def _arm_hwcap_flags() -> frozenset[str]:
    """Feature names from ``getauxval(AT_HWCAP / AT_HWCAP2)`` on Linux/arm64: what the kernel
    (or qemu-user) reports to this process; empty where it cannot be read."""
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        words = {key: int(getauxval(key)) for key in _HWCAP_BITS}
    except (OSError, AttributeError):
        return frozenset()
    return frozenset(
        name for key, bits in _HWCAP_BITS.items() for name, bit in bits.items() if words[key] & bit
    )


def check_isa(isa: str) -> str:
    """``isa`` if it is a known int8 kernel kind.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if isa not in INT8_ISAS:
        raise InputError(f"unknown int8 instruction set {isa!r}; known: {', '.join(INT8_ISAS)}")
    return isa


def saturates(isa: str) -> bool:
    """Whether the u8 x s8 kernels on ``isa`` (ONNX Runtime's and OpenVINO's) sum pairs in
    saturating 16 bits."""
    return check_isa(isa) in SATURATING_ISAS


def int8_kernels_fit(isa: str, flavour: str | None, made_for: str | None) -> bool:
    """Whether fused int8 kernels on ``isa`` compute an INT8 graph of ``flavour`` whose
    weights were made for ``made_for`` kernels without clipping a sum.

    On kernels that do not saturate, every graph fits. On saturating ones the ``tensorrt``
    flavour (symmetric int8 activations) does not, nor a ``cpu`` graph with 8-bit weights
    (made for kernels that do not saturate); a ``cpu`` graph made for saturating kernels
    (7-bit weights) does, and so does one that records no kind (not this exporter's).
    """
    if not saturates(isa):
        return True
    if (flavour or "cpu") == "tensorrt":
        return False
    return made_for is None or saturates(made_for)


def distribution_version(*distributions: str) -> str | None:
    """The version of the first of ``distributions`` that is installed (read from its
    metadata, nothing is imported), or ``None``: one library ships under several names
    (``onnxruntime`` and ``onnxruntime-gpu``)."""
    import importlib.metadata

    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def host_record() -> dict[str, Any]:
    """What computed a CPU figure: CPU model, architecture, int8 kernel kind, ONNX Runtime."""
    isa = int8_isa()
    return {
        "cpu": cpu_model(),
        "architecture": platform.machine(),
        "int8_isa": isa,
        "int8_kernels": INT8_ISAS[isa],
        "onnxruntime": distribution_version("onnxruntime", "onnxruntime-gpu"),
    }


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it.

    A module blocked on purpose (``sys.modules[name] = None``, or a meta-path finder that
    refuses it, as the torch-free tests do) counts as absent, as does a broken install whose
    finder raises: both mean the code that wanted it must take its other path.
    """
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


#: The optional packages, by import name: (distribution, the extra of hardnet-export that
#: installs it). ``tests/test_extras.py`` keeps it in step with ``pyproject.toml``.
OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "train"),
    "onnx": ("onnx", "train"),
    "onnxscript": ("onnxscript", "train"),
    "skimage": ("scikit-image", "train"),
    "sklearn": ("scikit-learn", "train"),
    "matplotlib": ("matplotlib", "train"),
    "onnxruntime": ("onnxruntime", "cpu"),
    "openvino": ("openvino", "openvino"),
    "h5py": ("h5py", "sfm"),
    "pycolmap": ("pycolmap", "sfm"),
    "ray": ("ray", "ray"),
}
#: What reading the built-in photos needs (they ship inside these packages).
BUILTIN_PHOTO_PACKAGES = ("skimage", "sklearn", "matplotlib")


def require(purpose: str, *modules: str) -> None:
    """Check, before any work, that ``modules`` (import names of :data:`OPTIONAL_PACKAGES`)
    are installed; ``purpose`` says what needs them ("an INT8 export").

    Raises:
        MissingDependencyError: one sentence naming every missing package and the extras that
            install them.
    """
    missing = [m for m in dict.fromkeys(modules) if not installed(m)]
    if not missing:
        return
    names = ", ".join(OPTIONAL_PACKAGES[m][0] for m in missing)
    extras = sorted({OPTIONAL_PACKAGES[m][1] for m in missing})
    hint = f"pip install 'hardnet-export[{','.join(extras)}]'"
    if "cpu" in extras:  # the two ONNX Runtimes install the same module
        hint += " (on a CUDA machine [gpu] instead of [cpu]; never both)"
    verb = "is" if len(missing) == 1 else "are"
    raise MissingDependencyError(f"{purpose} needs {names}, which {verb} not installed: {hint}")


def usable_cpus() -> int:
    """The logical CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_cache_dir() -> Path:
    """``$HARDNET_EXPORT_CACHE`` or ``$XDG_CACHE_HOME/hardnet-export`` (``~/.cache``): where
    the benchmark keeps its exports and the runtime its tuning choices."""
    if os.environ.get("HARDNET_EXPORT_CACHE"):
        return Path(os.environ["HARDNET_EXPORT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hardnet-export"


#: CPU flags that decide which inference path is fastest and what it computes: the int8
#: kernels (:data:`INT8_ISAS`) and native bf16/fp16 arithmetic. A tuning choice measured on
#: one set is not reused on a CPU with another.
TUNING_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "asimd", "asimddp",
    "asimdhp", "bf16", "i8mm", "sve",
)  # fmt: skip


def tuning_flags(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """Which of :data:`TUNING_FLAGS` this CPU (or one with ``flags``) has, sorted."""
    flags = cpu_flags() if flags is None else flags
    return tuple(sorted(f for f in TUNING_FLAGS if f in flags))


#: x86 flags of int8 dot products that accumulate in 32 bits (no saturating 16-bit pair sums).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: Flags of native bf16 arithmetic (x86 AVX512-BF16 and AMX-BF16; ARM's BF16 extension).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Flags of native fp16 arithmetic on x86 (AVX512-FP16, AMX-FP16).
FP16_FLAGS = ("avx512_fp16", "amx_fp16")


def has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU (or one with ``flags``) computes bf16 natively (AVX512-BF16, AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def has_fp16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU (or one with ``flags``) computes fp16 natively (AVX512-FP16, AMX-FP16)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in FP16_FLAGS)
