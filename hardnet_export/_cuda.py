"""Is there a CUDA device, and a real TensorRT? Probes shared by the engine builder and runtime.

Creating any TensorRT object without a CUDA device can crash the interpreter later, so callers
ask :func:`require_tensorrt` (TensorRT present *and* a device visible) before touching
TensorRT. ``tensorrt-stubs`` installs an empty ``tensorrt`` namespace package, so a successful
``import tensorrt`` is not proof: a real TensorRT has ``__version__`` and ``Builder``.
Everything here imports lazily and never raises on a machine without CUDA, except the
``require_*`` functions, which raise :class:`MissingDependencyError` with one clear sentence.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from hardnet_export.errors import MissingDependencyError

TRT_INSTALL = (
    "pip install 'hardnet-export[trt]' (TensorRT 10.x or 11.x and cuda-python for CUDA 12 "
    "drivers; 'hardnet-export[trt-cu13]' for CUDA 13 drivers, 580 or newer)"
)
CUDA_INSTALL = (
    "pip install 'cuda-python>=12.6,<13' (CUDA 12 drivers) or 'cuda-python>=13,<14' "
    "(CUDA 13 drivers, 580 or newer)"
)


def _cudart() -> Any | None:
    # cuda-python >= 12.6 ships cuda.bindings.runtime; older releases had cuda.cudart.
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # type: ignore[no-redef,attr-defined]
        except ImportError:
            return None
    return runtime


def cuda_status() -> tuple[int, str]:
    """Visible CUDA devices and, when there are none, why (one phrase).

    Never raises: no cuda-python, no driver and no device all count as zero devices.
    """
    runtime = _cudart()
    if runtime is None:
        return 0, f"cuda-python is not installed ({CUDA_INSTALL})"
    try:
        err, count = runtime.cudaGetDeviceCount()
    except Exception as exc:  # a broken driver install can raise from the bindings
        return 0, f"cudaGetDeviceCount failed ({type(exc).__name__}: {exc})"
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        if "InsufficientDriver" in str(name):
            return 0, _insufficient_driver(runtime, str(name))
        return 0, f"no CUDA device is visible (cudaGetDeviceCount: {name})"
    if int(count) == 0:
        return 0, "no CUDA device is visible"
    return int(count), ""


def _insufficient_driver(runtime: Any, name: str) -> str:
    """The driver is older than the CUDA that cuda-python was built for (cuda-python 13
    needs driver 580+): name both majors and the extra that matches the driver."""
    try:
        _, driver = runtime.cudaDriverGetVersion()
        driver_major = int(driver) // 1000
    except Exception:
        driver_major = 0
    try:
        from cuda.bindings import __version__ as bindings_version
    except Exception:
        bindings_version = "?"
    driver_text = f"CUDA {driver_major}" if driver_major else "an older CUDA"
    extra = f"trt-cu{driver_major}" if driver_major in (12, 13) else "trt-cu12"
    return (
        f"the NVIDIA driver supports {driver_text}, older than cuda-python "
        f"{bindings_version} needs (cudaGetDeviceCount: {name}); install the cuda-python of "
        f"the driver's CUDA major: pip install 'hardnet-export[{extra}]'"
    )


def cuda_device_count() -> int:
    """CUDA devices visible through the driver; 0 without cuda-python, driver or device."""
    return cuda_status()[0]


def require_cuda_device(index: int = 0) -> int:
    """Return the device count, or raise :class:`MissingDependencyError` saying why there is
    no usable device ``index``."""
    count, why = cuda_status()
    if count == 0:
        raise MissingDependencyError(f"a CUDA device is needed but {why}")
    if not 0 <= index < count:
        raise MissingDependencyError(
            f"CUDA device {index} does not exist ({count} device(s) visible)"
        )
    return count


def tensorrt_status() -> tuple[ModuleType | None, str]:
    """The real ``tensorrt`` module, or None and why not. Never raises."""
    try:
        import tensorrt
    except ImportError:
        return None, f"TensorRT is not installed ({TRT_INSTALL})"
    except Exception as exc:  # e.g. the wheel is present but its libraries are not
        return None, f"TensorRT failed to import ({type(exc).__name__}: {exc})"
    if not (hasattr(tensorrt, "Builder") and hasattr(tensorrt, "__version__")):
        return None, (
            "TensorRT is not installed (only type stubs or an empty 'tensorrt' package were "
            f"found; {TRT_INSTALL})"
        )
    return tensorrt, ""


def tensorrt_module() -> ModuleType:
    """The real ``tensorrt`` module, or :class:`MissingDependencyError` saying what to install.

    This only imports; it creates no TensorRT object, so it is safe without a device.
    """
    module, why = tensorrt_status()
    if module is None:
        raise MissingDependencyError(why)
    return module


def tensorrt_version(trt: ModuleType) -> tuple[int, int]:
    """(major, minor) of a TensorRT module, e.g. (10, 13)."""
    parts = str(trt.__version__).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError as exc:
        raise MissingDependencyError(f"unrecognised TensorRT version {trt.__version__!r}") from exc


def require_tensorrt(device: int = 0, *, purpose: str = "this") -> ModuleType:
    """TensorRT *and* CUDA device ``device``, checked before any TensorRT object exists.

    Raises:
        MissingDependencyError: one sentence naming everything that is missing and what to
            install, e.g. "building a TensorRT engine needs TensorRT and a CUDA device:
            TensorRT is not installed (...); no CUDA device is visible (...)".
    """
    module, trt_why = tensorrt_status()
    count, cuda_why = cuda_status()
    problems = [why for why in (trt_why, cuda_why) if why]
    if problems:
        raise MissingDependencyError(
            f"{purpose} needs TensorRT and a CUDA device: {'; '.join(problems)}"
        )
    if not 0 <= device < count:
        raise MissingDependencyError(
            f"{purpose} needs CUDA device {device}, but only {count} device(s) are visible"
        )
    assert module is not None
    return module


def set_cuda_device(index: int) -> None:
    """Make device ``index`` current for this thread (``cudaSetDevice``).

    Raises:
        MissingDependencyError: no cuda-python or no such device.
    """
    require_cuda_device(index)
    runtime = _cudart()
    assert runtime is not None
    (err,) = runtime.cudaSetDevice(index)
    if int(err) != 0:
        raise MissingDependencyError(f"cudaSetDevice({index}) failed: {getattr(err, 'name', err)}")


def device_properties(index: int = 0) -> dict[str, Any]:
    """Name, compute capability and memory of CUDA device ``index`` (cudaGetDeviceProperties).

    Raises:
        MissingDependencyError: no cuda-python or no such device.
    """
    require_cuda_device(index)
    runtime = _cudart()
    assert runtime is not None
    err, props = runtime.cudaGetDeviceProperties(index)
    if int(err) != 0:
        raise MissingDependencyError(
            f"cudaGetDeviceProperties({index}) failed: {getattr(err, 'name', err)}"
        )
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return {
        "index": index,
        "name": str(name),
        "compute_capability": f"{props.major}.{props.minor}",
        "total_memory_bytes": int(props.totalGlobalMem),
        "integrated": bool(props.integrated),
    }
