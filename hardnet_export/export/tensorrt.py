"""ONNX -> TensorRT engine (TensorRT 10.x and 11.x), with a JSON sidecar and build caching.

Precision lives in the ONNX graph (FP32, FP16 conv stack, INT8 Q/DQ), so every build is
strongly typed: TensorRT 10 gets the ``STRONGLY_TYPED`` network flag, TensorRT 11 networks are
always strongly typed, and no FP16/INT8 builder flag or calibrator is ever used. The engine
file is the pure serialised plan (any TensorRT tool reads it); what built it goes to
``X.engine.json``: TensorRT version, GPU name and compute capability, ONNX sha256, precision,
calibration hash, profile, workspace, flags and build time. The runtime checks that sidecar
before it loads the plan.

A build with the same ONNX hash, profile, precision, TensorRT version, GPU and flags as an
existing engine whose sidecar matches reuses it unless ``rebuild=True``. TensorRT and a CUDA
device are probed before any TensorRT object is created.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardnet_export import __version__
from hardnet_export._cuda import (
    MissingDependencyError,
    device_properties,
    require_tensorrt,
    set_cuda_device,
    tensorrt_version,
)
from hardnet_export._io import atomic_write_bytes, atomic_write_text, check_writable, sha256_file

SIDECAR_FORMAT = "hardnet-export-engine/1"
PATCH_SHAPE = (1, 32, 32)
# Sidecar fields that must all match for an existing engine to be reused.
CACHE_KEYS = (
    "onnx_sha256",
    "precision",
    "profile",
    "tensorrt_version",
    "gpu_name",
    "compute_capability",
    "dla_core",
    "gpu_fallback",
    "version_compatible",
    "hardware_compatibility",
)


@dataclass(frozen=True)
class EngineBuild:
    """An engine on disk, its sidecar, and whether an existing engine was reused."""

    engine: Path
    sidecar: dict[str, Any]
    reused: bool


def sidecar_path(engine: str | Path) -> Path:
    """``X.engine`` -> ``X.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    *,
    min_batch: int = 1,
    opt_batch: int = 256,
    max_batch: int = 1024,
    workspace_mib: int = 1024,
    timing_cache: str | Path | None = None,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    version_compatible: bool = False,
    hardware_compatible: bool = False,
    device: int = 0,
    rebuild: bool = False,
) -> EngineBuild:
    """Build (or reuse) a TensorRT engine for an ONNX graph from :mod:`hardnet_export.export`.

    Args:
        onnx_path: an FP32, FP16 or INT8 (Q/DQ) graph.
        out: the engine file; the sidecar goes to ``out + ".json"``.
        min_batch, opt_batch, max_batch: the optimisation profile of the batch axis.
        workspace_mib: TensorRT's workspace memory pool limit.
        timing_cache: a timing cache file to load (if it exists) and save after the build.
        dla_core: build for this DLA core (Jetson); FP16 and INT8 graphs only.
        gpu_fallback: with ``dla_core``, let layers DLA cannot run fall back to the GPU.
        version_compatible: a plan later TensorRT versions of the same major can run.
        hardware_compatible: a plan for every Ampere-or-newer GPU (``AMPERE_PLUS``).
        device: the CUDA device to build on.
        rebuild: build even when a matching engine exists.

    Raises:
        MissingDependencyError: no real TensorRT (10.x or 11.x) or no CUDA device.
        FileNotFoundError, ValueError: a bad path, profile or option, or a graph TensorRT
            cannot parse.
        RuntimeError: TensorRT failed to build the engine.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX graph not found: {onnx_path}")
    _check_profile(min_batch, opt_batch, max_batch)
    if workspace_mib < 1:
        raise ValueError(f"workspace_mib must be >= 1, got {workspace_mib}")
    if dla_core is not None and dla_core < 0:
        raise ValueError(f"dla_core must be >= 0, got {dla_core}")
    if out.is_dir():
        raise IsADirectoryError(f"cannot write {out}: it is a folder")
    check_writable(out)
    graph = _graph_info(onnx_path)
    if dla_core is not None and graph["precision"] not in ("fp16", "int8"):
        raise ValueError(
            f"DLA runs FP16 and INT8 graphs only; {onnx_path} is {graph['precision']}: export "
            "it with --precision fp16 or int8"
        )

    require_tensorrt(device, purpose="building a TensorRT engine")
    import tensorrt as trt

    major, _ = tensorrt_version(trt)
    if major < 10:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} is too old: engines need TensorRT 10.x or 11.x "
            "(pip install 'hardnet-export[trt]')"
        )
    set_cuda_device(device)
    gpu = device_properties(device)
    if hardware_compatible and float(gpu["compute_capability"]) < 8.0:
        raise ValueError(
            f"hardware-compatible (Ampere+) engines must be built on an Ampere or newer GPU; "
            f"{gpu['name']} has compute capability {gpu['compute_capability']}"
        )

    sidecar: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "producer": f"hardnet-export {__version__}",
        "engine": out.name,
        "onnx": str(onnx_path),
        "onnx_sha256": sha256_file(onnx_path),
        "precision": graph["precision"],
        "int8_target": graph.get("int8_target"),
        "calibration_sha256": graph.get("calibration_sha256"),
        "weights_sha256": graph.get("weights_sha256"),
        "tensorrt_version": str(trt.__version__),
        "gpu_name": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "device_index": device,
        "profile": {
            "input": graph["input"],
            "min": [min_batch, *PATCH_SHAPE],
            "opt": [opt_batch, *PATCH_SHAPE],
            "max": [max_batch, *PATCH_SHAPE],
        },
        "workspace_bytes": workspace_mib << 20,
        "dla_core": dla_core,
        "gpu_fallback": bool(gpu_fallback and dla_core is not None),
        "version_compatible": version_compatible,
        "hardware_compatibility": "ampere_plus" if hardware_compatible else "none",
        "strongly_typed": True,
    }
    if not rebuild:
        existing = _reusable(out, sidecar)
        if existing is not None:
            return EngineBuild(out, existing, reused=True)

    started = time.perf_counter()
    plan = _build_plan(onnx_path, sidecar, timing_cache=timing_cache)
    sidecar["build_seconds"] = round(time.perf_counter() - started, 3)
    sidecar["built_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    sidecar["timing_cache"] = str(timing_cache) if timing_cache is not None else None
    atomic_write_bytes(out, plan)
    sidecar["engine_sha256"] = sha256_file(out)
    atomic_write_text(sidecar_path(out), json.dumps(sidecar, indent=2) + "\n")
    return EngineBuild(out, sidecar, reused=False)


def _check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(
            "the batch profile needs 1 <= min <= opt <= max, got "
            f"min={min_batch}, opt={opt_batch}, max={max_batch}"
        )


def _graph_info(onnx_path: Path) -> dict[str, Any]:
    from hardnet_export.export.metadata import read_metadata

    meta = read_metadata(onnx_path)
    input_spec = meta.get("input")
    return {
        "precision": meta.get("precision", "unknown"),
        "int8_target": meta.get("int8_target"),
        "calibration_sha256": meta.get("calibration_sha256"),
        "weights_sha256": meta.get("weights_sha256"),
        "input": input_spec.get("name", "patches") if isinstance(input_spec, dict) else "patches",
    }


def _reusable(out: Path, planned: dict[str, Any]) -> dict[str, Any] | None:
    """The existing sidecar when ``out`` is an engine built with the same key, else None."""
    side = sidecar_path(out)
    if not (out.is_file() and side.is_file()):
        return None
    try:
        existing = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(existing, dict) or existing.get("format") != SIDECAR_FORMAT:
        return None
    if any(existing.get(key) != planned.get(key) for key in CACHE_KEYS):
        return None
    if existing.get("engine_sha256") != sha256_file(out):
        return None  # the plan was replaced or truncated since its sidecar was written
    return existing


def _build_plan(
    onnx_path: Path, sidecar: dict[str, Any], *, timing_cache: str | Path | None
) -> bytes:
    """Parse, configure and build; the caller has checked TensorRT and the device."""
    import tensorrt

    major, _ = tensorrt_version(tensorrt)
    logger = tensorrt.Logger(tensorrt.Logger.WARNING)
    builder = tensorrt.Builder(logger)
    # TensorRT 11 networks are always strongly typed; TensorRT 10 opts in with the flag.
    flags = 0 if major >= 11 else 1 << int(tensorrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = tensorrt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors or 'no details'}")
    if network.num_inputs != 1:
        raise ValueError(f"{onnx_path} must have one input, TensorRT sees {network.num_inputs}")
    input_name = network.get_input(0).name

    config = builder.create_builder_config()
    config.set_memory_pool_limit(tensorrt.MemoryPoolType.WORKSPACE, int(sidecar["workspace_bytes"]))
    profile = builder.create_optimization_profile()
    shapes = sidecar["profile"]
    profile.set_shape(
        input_name,
        tensorrt.Dims(shapes["min"]),
        tensorrt.Dims(shapes["opt"]),
        tensorrt.Dims(shapes["max"]),
    )
    config.add_optimization_profile(profile)
    shapes["input"] = input_name

    dla_core = sidecar["dla_core"]
    if dla_core is not None:
        available = builder.num_DLA_cores
        if not 0 <= dla_core < available:
            raise ValueError(
                f"DLA core {dla_core} requested, but this device has {available} DLA core(s) "
                "(DLA exists on Jetson AGX Orin; TensorRT 11.0-11.3 lacks it)"
            )
        config.default_device_type = tensorrt.DeviceType.DLA
        config.DLA_core = dla_core
        if sidecar["gpu_fallback"]:
            config.set_flag(tensorrt.BuilderFlag.GPU_FALLBACK)
    if sidecar["version_compatible"]:
        config.set_flag(tensorrt.BuilderFlag.VERSION_COMPATIBLE)
    if sidecar["hardware_compatibility"] == "ampere_plus":
        config.hardware_compatibility_level = tensorrt.HardwareCompatibilityLevel.AMPERE_PLUS

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = (
        cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    )
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, False):
        raise ValueError(
            f"timing cache {cache_path} does not fit this TensorRT version or GPU; delete it"
        )

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(
            f"TensorRT failed to build an engine from {onnx_path} (see its log above)"
        )
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan))
