from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hardnet_export._cuda import cuda_device_count, tensorrt_status
from hardnet_export.artifacts.sidecar import read_sidecar, sidecar_path
from hardnet_export.export.tensorrt import build_engine

HAVE_TENSORRT_AND_GPU = tensorrt_status()[0] is not None and cuda_device_count() > 0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hardnet_export", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(HAVE_TENSORRT_AND_GPU, reason="TensorRT and a CUDA device are present")
def test_trt_without_tensorrt_says_what_is_missing(fp32_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    result = run_cli("trt", str(fp32_onnx), "-o", str(engine))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: building a TensorRT engine needs TensorRT and a CUDA device")
    if tensorrt_status()[0] is None:
        assert "pip install 'hardnet-export[trt]'" in message
    if cuda_device_count() == 0:
        assert "CUDA device" in message
    assert not engine.exists() and not sidecar_path(engine).exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"min_batch": 0}, ValueError, "min_batch must be >= 1"),
        ({"opt_batch": 2048, "max_batch": 1024}, ValueError, "1 <= min <= opt <= max"),
        ({"workspace_mib": 0}, ValueError, "workspace_mib"),
        (
            {"dla_core": 0, "min_batch": 8, "opt_batch": 8, "max_batch": 8},
            ValueError,
            "DLA runs fp16, int8-tensorrt graphs only",
        ),
    ],
)
def test_bad_options_fail_before_tensorrt(
    fp32_onnx: Path, tmp_path: Path, kwargs: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build_engine(fp32_onnx, tmp_path / "m.engine", **kwargs)


@pytest.mark.parametrize(
    "profile", [{}, {"min_batch": 8, "opt_batch": 8, "max_batch": 16}, {"min_batch": 4}]
)
def test_dla_with_a_dynamic_profile_is_refused_before_any_probe(
    fp16_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: dict
) -> None:
    import hardnet_export.export.tensorrt as exporter

    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("TensorRT or the device was probed before the DLA profile check")

    monkeypatch.setattr(exporter, "require_tensorrt", no_probe)
    with pytest.raises(ValueError, match="DLA engines need a fixed batch profile") as info:
        build_engine(fp16_onnx, tmp_path / "m.engine", dla_core=0, **profile)
    assert "--min-batch B --opt-batch B --max-batch B" in str(info.value)
    assert not (tmp_path / "m.engine").exists()


def test_dla_with_a_fixed_profile_passes_the_profile_check() -> None:
    from hardnet_export.export.tensorrt import DLA_SUPPORT, check_dla_profile

    check_dla_profile(32, 32, 32)
    assert "11.4.1" in DLA_SUPPORT and "11.4.0 only on Windows on ARM" in DLA_SUPPORT


def test_timing_cache_folder_is_checked_before_the_build(
    fp16_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hardnet_export.export.tensorrt as exporter

    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached the TensorRT probe with an unwritable timing cache")

    monkeypatch.setattr(exporter, "require_tensorrt", no_probe)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_engine(fp16_onnx, tmp_path / "m.engine", timing_cache=tmp_path / "no" / "t.cache")
    with pytest.raises(IsADirectoryError):
        build_engine(fp16_onnx, tmp_path / "m.engine", timing_cache=tmp_path)


def test_bad_paths(fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ONNX graph not found"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "m.engine")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_engine(fp32_onnx, tmp_path / "no" / "m.engine")
    with pytest.raises(IsADirectoryError):
        build_engine(fp32_onnx, tmp_path)


def test_cli_bad_profile_is_one_sentence(fp32_onnx: Path, tmp_path: Path) -> None:
    result = run_cli(
        "trt",
        str(fp32_onnx),
        "-o",
        str(tmp_path / "m.engine"),
        "--min-batch",
        "9",
        "--opt-batch",
        "4",
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "min <= opt <= max" in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT_AND_GPU, reason="needs TensorRT")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_sidecar_and_cache_reuse(
    precision: str, fp16_onnx: Path, checkpoint: Path, parity_patches, tmp_path: Path
) -> None:
    import tensorrt as trt

    from hardnet_export._io import sha256_file
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx

    if precision == "int8":
        graph = export_onnx(
            checkpoint,
            tmp_path / "m.int8.onnx",
            variant="int8-tensorrt",
            parity_patches=parity_patches,
            int8=Int8Options(calibration_size=256),
        )
    else:
        graph = fp16_onnx
    engine, cache = tmp_path / f"m.{precision}.engine", tmp_path / "timing.cache"
    first = build_engine(graph, engine, max_batch=512, opt_batch=64, timing_cache=cache)
    assert not first.reused and engine.is_file() and cache.is_file()
    side = read_sidecar(engine)
    assert side is not None and side == first.sidecar
    side = side.to_dict()
    assert side["precision"] == precision and side["tensorrt_version"] == trt.__version__
    assert side["onnx_sha256"] == sha256_file(graph) and side["engine_sha256"] == sha256_file(
        engine
    )
    assert side["profile"]["max"] == [512, 1, 32, 32] and side["gpu_name"]
    assert "." in side["compute_capability"] and side["build_seconds"] > 0
    if precision == "int8":
        assert side["calibration_sha256"] and side["int8_target"] == "tensorrt"
    # Plain engine file: TensorRT deserialises it directly.
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(engine.read_bytes()) is not None
    again = build_engine(graph, engine, max_batch=512, opt_batch=64, timing_cache=cache)
    assert again.reused and again.sidecar.to_dict() == side
    other = build_engine(graph, engine, max_batch=256, opt_batch=64, timing_cache=cache)
    assert not other.reused
    forced = build_engine(graph, engine, max_batch=256, opt_batch=64, rebuild=True)
    assert not forced.reused


def test_reuse_needs_same_key_and_untouched_engine(fp16_onnx: Path, tmp_path: Path) -> None:
    import dataclasses

    from hardnet_export._io import sha256_file
    from hardnet_export.artifacts.metadata import read_metadata
    from hardnet_export.artifacts.sidecar import EngineSidecar
    from hardnet_export.export.tensorrt import _reusable

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    planned = EngineSidecar.plan(
        fp16_onnx, engine, onnx_sha256=sha256_file(fp16_onnx), graph=read_metadata(fp16_onnx),
        tensorrt_version="10.13.0.35", gpu_name="NVIDIA L4", compute_capability="8.9",
        device_index=0, batch=(1, 256, 1024), workspace_bytes=1 << 30, dla_core=None,
        gpu_fallback=True, version_compatible=False, hardware_compatible=False,
    )  # fmt: skip
    recorded = dataclasses.replace(planned, engine_sha256=sha256_file(engine), build_seconds=1.0)
    recorded.write(engine)
    assert _reusable(engine, planned) == recorded
    assert _reusable(engine, dataclasses.replace(planned, tensorrt_version="other")) is None
    wider = {**planned.profile, "max": [2048, 1, 32, 32]}
    assert _reusable(engine, dataclasses.replace(planned, profile=wider)) is None
    engine.write_bytes(b"another plan")
    assert _reusable(engine, planned) is None
    sidecar_path(engine).write_text("not json")
    assert _reusable(engine, planned) is None
