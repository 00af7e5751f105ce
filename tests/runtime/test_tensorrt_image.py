"""Image engines on TensorRT (built from an image graph): compute() equals ONNX Runtime's
image graph, shapes outside the engine's profile are refused with the rebuild flags. On a GPU
with TensorRT only; the profile planning and the sidecar are tested on any machine in
tests/export/test_tensorrt.py and tests/artifacts/test_sidecar.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.cli import flag
from hardnet_export.errors import InputError, StateError
from hardnet_export.runtime.base import patch_describer

#: A small profile: builds fast, and the crop (160x200) and its 150 keypoints fit inside.
PROFILE = {
    "opt_image": "200x160",
    "max_image": "320x240",
    "opt_keypoints": 64,
    "max_keypoints": 256,
}


def _has_tensorrt() -> bool:
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Builder")


def _build(graph: Path, out: Path) -> Path:
    if not _has_tensorrt():
        pytest.skip("needs TensorRT")
    from hardnet_export.export.tensorrt import build_engine

    build_engine(graph, out, **PROFILE)
    return out


@pytest.fixture(scope="module")
def image_engine(image_graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(image_graph, tmp_path_factory.mktemp("image-engines") / "image.fp32.engine")


@pytest.fixture(scope="module")
def reference(image_graph: Path) -> runtime.Describer:
    return runtime.load(image_graph, backend="onnxruntime", device="cpu")


def _cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())


@pytest.mark.gpu
def test_image_engine_is_opened_by_the_kind_table(image_engine: Path) -> None:
    from hardnet_export.runtime.tensorrt_image import TensorRTImageDescriber

    trt = runtime.load(image_engine)
    assert isinstance(trt, TensorRTImageDescriber) and trt.device == "cuda:0"
    assert (trt.magnification, trt.pyramid_levels, trt.min_image_side) == (12.0, 3, 5)
    assert trt.image_profile == ((5, 5), (240, 320)) and trt.keypoint_profile == (1, 256)
    assert trt.sidecar.graph_kind == "image" and trt.precision == "fp32"
    # An image describer is the patch describer's sibling: it has no describe().
    assert not hasattr(trt, "describe")
    with pytest.raises(InputError, match=r"compute\(image, keypoints\)"):
        patch_describer(trt)
    with pytest.raises(InputError, match="without a CUDA graph"):
        runtime.load(image_engine, cuda_graph=True)


@pytest.mark.gpu
@pytest.mark.parametrize("k", [1, 150])
def test_image_engine_matches_onnxruntime(
    image_engine: Path,
    reference: runtime.Describer,
    photo_crop: np.ndarray,
    crop_keypoints: np.ndarray,
    k: int,
) -> None:
    trt = runtime.load(image_engine)
    kps = crop_keypoints[:k]
    _, got = trt.compute(photo_crop, kps)
    _, want = reference.compute(photo_crop, kps)
    assert got.shape == (k, 128) and _cosine_min(got, want) >= 0.999


@pytest.mark.gpu
def test_buffers_grow_and_shapes_change_between_calls(
    image_engine: Path,
    reference: runtime.Describer,
    photo_crop: np.ndarray,
    crop_keypoints: np.ndarray,
) -> None:
    trt = runtime.load(image_engine)
    small = np.ascontiguousarray(photo_crop[:90, :130])
    inside = crop_keypoints[(crop_keypoints[:, 0] < 100) & (crop_keypoints[:, 1] < 60)][:9]
    bgr = np.ascontiguousarray(np.repeat(photo_crop[:, :, None], 3, axis=2))
    far = np.array([[1e4, 10.0, 2.0, 0.0]], np.float32)
    for image, kps in ((small, inside), (bgr, crop_keypoints), (small, inside)):
        kps = np.concatenate([kps, far])
        _, got = trt.compute(image, kps, out_of_bounds="zero")
        _, want = reference.compute(image, kps, out_of_bounds="zero")
        assert not got[-1].any()  # the out-of-bounds row is zero
        assert _cosine_min(got[:-1], want[:-1]) >= 0.999
    assert trt._buffers["image"].nbytes >= photo_crop.nbytes


@pytest.mark.gpu
def test_shapes_outside_the_profile_name_the_rebuild_flags(
    image_engine: Path, photo_crop: np.ndarray, crop_keypoints: np.ndarray
) -> None:
    trt = runtime.load(image_engine)
    wide = np.zeros((200, 400), np.uint8)
    with pytest.raises(InputError, match=r"from 5x5 to 320x240 pixels.*got 400x200") as info:
        trt.compute(wide, np.array([[100.0, 100.0, 4.0, 0.0]]))
    cli = info.value.render(flag)
    assert f"hardnet-export trt {trt.sidecar.onnx} -o {image_engine} --rebuild" in cli
    assert "--max-image 400x240" in cli and "max_image='400x240'" in str(info.value)
    many = np.concatenate([crop_keypoints, crop_keypoints])  # 300 > 256
    with pytest.raises(InputError, match="1 to 256 keypoints per call, got 300") as info:
        trt.compute(photo_crop, many)
    assert "--max-keypoints 300" in info.value.render(flag)


@pytest.mark.gpu
def test_close_frees_the_engine(
    image_engine: Path, photo_crop: np.ndarray, crop_keypoints: np.ndarray
) -> None:
    trt = runtime.load(image_engine)
    trt.compute(photo_crop, crop_keypoints[:5])
    trt.close()
    assert trt.context is None and trt.engine is None and not trt._buffers
    trt.close()  # twice is fine
    with pytest.raises(StateError, match="was closed"):
        trt.compute(photo_crop, crop_keypoints[:5])


@pytest.mark.gpu
def test_fp16_image_engine_within_a_cosine_of_0_99(
    image_graph_fp16: Path,
    reference: runtime.Describer,
    photo_crop: np.ndarray,
    crop_keypoints: np.ndarray,
    tmp_path: Path,
) -> None:
    engine = _build(image_graph_fp16, tmp_path / "image.fp16.engine")
    trt = runtime.load(engine)
    assert trt.precision == "fp16"
    _, got = trt.compute(photo_crop, crop_keypoints)
    _, want = reference.compute(photo_crop, crop_keypoints)  # the FP32 graph
    assert _cosine_min(got, want) >= 0.99


# -- on any machine: the describer's data path against a simulated engine -------------------
#
# The engine below follows the documented TensorRT 10 calls the describer makes
# (get_tensor_profile_shape, set_input_shape returning False outside the profile,
# get_tensor_shape, set_tensor_address, execute_async_v3) and computes with ONNX Runtime on
# the image graph; "device memory" is host memory, so the copies, shapes, addresses, buffer
# growth, profile errors and close() run here as they would on a GPU.


class _Enum:
    def __init__(self, **members: int) -> None:
        self.__dict__.update(members)


class _FakeContext:
    def __init__(self, engine: _FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.shape_calls = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shape_calls += 1
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.shapes["keypoints"][0], 128)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        import ctypes

        def view(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
            n = int(np.prod(shape)) * np.dtype(dtype).itemsize
            raw = (ctypes.c_uint8 * n).from_address(self.addresses[name])
            return np.frombuffer(raw, dtype).reshape(shape)

        image = view("image", self.shapes["image"], np.uint8)
        kps = view("keypoints", self.shapes["keypoints"], np.float32)
        (out,) = self.engine.session.run(None, {"image": image.copy(), "keypoints": kps.copy()})
        view("descriptors", out.shape, np.float32)[:] = out
        return True


class _FakeEngine:
    num_io_tensors = 3
    names = ("image", "keypoints", "descriptors")

    def __init__(self, session: object, profile: dict[str, tuple[tuple[int, ...], ...]]) -> None:
        self.session = session
        self.profile = profile

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> int:
        return 1 if name == "descriptors" else 0

    def get_tensor_dtype(self, name: str) -> str:
        return "UINT8" if name == "image" else "FLOAT"

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, ...], ...]:
        return self.profile[name]

    def create_execution_context(self) -> _FakeContext:
        return _FakeContext(self)


@pytest.fixture
def simulated(
    image_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> runtime.Describer:
    import ctypes
    import sys
    import types

    from hardnet_export._io import sha256_file
    from hardnet_export.artifacts.metadata import read_metadata
    from hardnet_export.artifacts.sidecar import EngineSidecar
    from hardnet_export.export.tensorrt import plan_image_profile
    from hardnet_export.runtime import cudart
    from hardnet_export.runtime.onnxruntime_backend import ort_session
    from hardnet_export.runtime.tensorrt_backend import LoadedEngine
    from hardnet_export.runtime.tensorrt_image import TensorRTImageDescriber

    fake_trt = types.ModuleType("tensorrt")
    fake_trt.DataType = _Enum(UINT8="UINT8", FLOAT="FLOAT")  # type: ignore[attr-defined]
    fake_trt.TensorIOMode = _Enum(INPUT=0, OUTPUT=1)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)

    class HostBuffer:  # cudart.DeviceBuffer's interface, in host memory
        live: list[HostBuffer] = []

        def __init__(self, nbytes: int) -> None:
            self.nbytes = nbytes
            self.memory = np.zeros(max(nbytes, 1), np.uint8)
            self.ptr = self.memory.ctypes.data
            HostBuffer.live.append(self)

        def free(self) -> None:
            self.ptr = 0
            HostBuffer.live.remove(self)

    class HostStream:
        def __int__(self) -> int:
            return 7

        def synchronize(self) -> None:
            pass

        def destroy(self) -> None:
            self.destroyed = True

    copies: list[str] = []

    def memcpy_async(dst: int, src: int, nbytes: int, kind: str, stream: int) -> None:
        assert stream == 7, "a copy off the describer's stream"
        copies.append(kind)
        ctypes.memmove(dst, src, nbytes)

    monkeypatch.setattr(cudart, "DeviceBuffer", HostBuffer)
    monkeypatch.setattr(cudart, "Stream", HostStream)
    monkeypatch.setattr(cudart, "memcpy_async", memcpy_async)
    monkeypatch.setattr(cudart, "set_device", lambda index: None)

    graph = read_metadata(image_graph)
    planned = plan_image_profile(graph, opt_image="200x160", max_image="320x240", max_keypoints=64)
    engine_path = tmp_path / "sim.image.engine"
    sidecar = EngineSidecar.plan(
        image_graph, engine_path, onnx_sha256=sha256_file(image_graph), graph=graph,
        tensorrt_version="10.13.0.35", gpu_name="simulated", compute_capability="9.0",
        device_index=0, image=planned, workspace_bytes=1 << 30, dla_core=None,
        gpu_fallback=False, version_compatible=False, hardware_compatible=False,
    )  # fmt: skip
    profile = {
        "image": (planned.min_image, planned.opt_image, planned.max_image),
        "keypoints": tuple((k, 4) for k in (1, planned.opt_keypoints, planned.max_keypoints)),
    }
    engine = _FakeEngine(ort_session(image_graph), profile)
    loaded = LoadedEngine(engine_path, engine, sidecar, 0, None, ())
    describer = TensorRTImageDescriber.from_engine(loaded, max_batch=None, cuda_graph=None)
    describer.copies = copies  # type: ignore[attr-defined]
    describer.live = HostBuffer.live  # type: ignore[attr-defined]
    return describer


def test_simulated_engine_data_path(
    simulated: runtime.Describer,
    reference: runtime.Describer,
    photo_crop: np.ndarray,
    crop_keypoints: np.ndarray,
) -> None:
    trt = simulated
    kps = crop_keypoints[:40]
    _, got = trt.compute(photo_crop, kps)
    _, want = reference.compute(photo_crop, kps)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # One copy in of the image, one of the keypoints, one copy out.
    assert trt.copies == ["h2d", "h2d", "d2h"]  # type: ignore[attr-defined]
    # A smaller call reuses the buffers and sets only the shapes; a larger image grows one.
    calls = trt.context.shape_calls
    small = np.ascontiguousarray(photo_crop[:90, :130])
    inside = kps[(kps[:, 0] < 100) & (kps[:, 1] < 60)][:5]
    _, got = trt.compute(small, inside)
    np.testing.assert_allclose(got, reference.compute(small, inside)[1], atol=1e-6)
    assert trt.context.shape_calls == calls + 2 and len(trt.live) == 3  # type: ignore[attr-defined]
    _, got = trt.compute(small, inside)
    assert trt.context.shape_calls == calls + 2  # same shapes: not set again
    bigger = np.zeros((240, 320), np.uint8)
    bigger[:160, :200] = photo_crop
    trt.compute(bigger, kps)
    assert trt._buffers["image"].nbytes == bigger.nbytes and len(trt.live) == 3  # type: ignore[attr-defined]


def test_simulated_engine_profile_errors_and_close(
    simulated: runtime.Describer, photo_crop: np.ndarray, crop_keypoints: np.ndarray
) -> None:
    trt = simulated
    with pytest.raises(
        InputError, match=r"from 5x5 to 320x240 pixels \(WIDTHxHEIGHT\), got 330x100"
    ):
        trt.compute(np.zeros((100, 330), np.uint8), np.array([[50.0, 50.0, 4.0, 0.0]]))
    with pytest.raises(InputError, match="1 to 64 keypoints per call, got 150") as info:
        trt.compute(photo_crop, crop_keypoints)
    assert (
        "--opt-image 200x160 --max-image 320x240 --opt-keypoints 64 --max-keypoints 150"
        in info.value.render(flag)
    )
    assert not trt.copies  # type: ignore[attr-defined]  # refused before any copy
    # An image describer is the patch describer's sibling: it has no describe().
    assert not hasattr(trt, "describe")
    with pytest.raises(InputError, match=r"compute\(image, keypoints\)"):
        patch_describer(trt)
    trt.compute(photo_crop, crop_keypoints[:3])
    trt.close()
    assert not trt.live and trt.context is None and trt.stream.destroyed  # type: ignore[attr-defined]
    trt.close()
    with pytest.raises(StateError, match="was closed"):
        trt.compute(photo_crop, crop_keypoints[:3])
