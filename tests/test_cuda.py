from __future__ import annotations

import sys
import types

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
