from __future__ import annotations

from pathlib import Path

import pytest
from fixture_files import run_cli

from hardnet_export._cuda import cuda_device_count, tensorrt_status
from hardnet_export.artifacts.metadata import GraphMetadata
from hardnet_export.artifacts.sidecar import read_sidecar, sidecar_path
from hardnet_export.export.tensorrt import BuildOptions, build_engine

HAVE_TENSORRT_AND_GPU = tensorrt_status()[0] is not None and cuda_device_count() > 0


@pytest.mark.slow
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


def test_build_options_and_keyword_overrides_are_one_configuration(
    fp32_onnx: Path, tmp_path: Path
) -> None:
    # Keywords set fields over the options given: the profile checked is the merged one.
    options = BuildOptions(min_batch=4, opt_batch=8, max_batch=16)
    assert options.batch == (4, 8, 16) and BuildOptions().batch == (1, 256, 1024)
    with pytest.raises(ValueError, match="min=4, opt=8, max=2"):
        build_engine(fp32_onnx, tmp_path / "m.engine", options, max_batch=2)
    with pytest.raises(TypeError, match="max_batches"):
        build_engine(fp32_onnx, tmp_path / "m.engine", max_batches=2)


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
    assert "build with min_batch=B, opt_batch=B, max_batch=B" in str(info.value)
    from hardnet_export.cli import flag

    assert "build with --min-batch B --opt-batch B --max-batch B" in info.value.render(flag)
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


@pytest.mark.slow
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
            options=Int8Options(calibration_size=256),
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


# -- image graphs: the profile on image and keypoints, planned and checked on any machine ----


@pytest.fixture(scope="module")
def image_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixture_files import write_image_graph_stub

    return write_image_graph_stub(tmp_path_factory.mktemp("image-stub") / "m.image.onnx")


def _image_meta(levels: int = 3) -> GraphMetadata:
    return GraphMetadata(
        producer="hardnet-export test",
        precision="fp32",
        graph_kind="image",
        magnification=12.0,
        pyramid_levels=levels,
        min_image_side=2 ** (levels - 1) + 1,
    )


def test_image_profile_planning() -> None:
    from hardnet_export.artifacts.sidecar import ImageProfile
    from hardnet_export.export.tensorrt import parse_image_size, plan_image_profile

    assert parse_image_size("640x480") == (480, 640) and parse_image_size((640, 480)) == (480, 640)
    assert parse_image_size(" 1920X1080 ") == (1080, 1920)
    # Defaults: 640x480 tuned, up to 1920x1920; 2000 of up to 8000 keypoints; min = side.
    assert plan_image_profile(_image_meta()) == ImageProfile(
        (5, 5), (480, 640), (1920, 1920), 1, 2000, 8000
    )
    planned = plan_image_profile(
        _image_meta(8), opt_image="800x600", max_image=(1280, 1024), opt_keypoints=500,
        max_keypoints=4000,
    )  # fmt: skip
    assert planned == ImageProfile((129, 129), (600, 800), (1024, 1280), 1, 500, 4000)
    # A default above a given maximum is lowered to it.
    small = plan_image_profile(_image_meta(), max_image="320x240", max_keypoints=100)
    assert small.opt_image == (240, 320) and small.opt_keypoints == 100
    assert small.to_profile() == {
        "image": {"min": [5, 5], "opt": [240, 320], "max": [240, 320]},
        "keypoints": {"min": [1, 4], "opt": [100, 4], "max": [100, 4]},
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_image": "640*480"}, r"^max_image must look like 640x480 \(WIDTHxHEIGHT\)"),
        ({"opt_image": "0x480"}, "^opt_image 0x480: the width must be in 1..32768"),
        ({"max_image": "100000x100"}, "width must be in 1..32768"),
        ({"max_image": "640x4"}, "^max_image 640x4 has a side below 5"),
        ({"opt_image": "2000x100", "max_image": "1000x1000"}, "larger than max_image 1000x1000"),
        ({"opt_keypoints": 9000}, "^opt_keypoints 9000 is above max_keypoints 8000"),
        ({"max_keypoints": 0}, "^max_keypoints must be >= 1"),
        ({"opt_image": [640, 480]}, "must be 'WIDTHxHEIGHT' or"),
    ],
)
def test_bad_image_profiles_are_one_sentence(options: dict, message: str) -> None:
    from hardnet_export.cli import flag
    from hardnet_export.export.tensorrt import plan_image_profile

    with pytest.raises(ValueError, match=message) as info:
        plan_image_profile(_image_meta(), **options)
    # The command line names the same parameters as its flags.
    pythonic = message.lstrip("^").replace(r"\(", "(").replace(r"\)", ")")
    for name in ("opt_image", "max_image", "opt_keypoints", "max_keypoints"):
        pythonic = pythonic.replace(name, "--" + name.replace("_", "-"))
    assert pythonic in info.value.render(flag)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_image": "4x4"}, "has a side below 5"),
        ({"max_batch": 64}, r"image graph, whose engine has no batch profile.*is opt_image, "),
        ({"dla_core": 0}, "DLA has no dynamic shapes"),
    ],
)
def test_image_graph_options_fail_before_tensorrt(
    image_stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict, message: str
) -> None:
    import hardnet_export.export.tensorrt as exporter

    def no_probe(*args: object, **kw: object) -> None:
        raise AssertionError("TensorRT or the device was probed before the profile check")

    monkeypatch.setattr(exporter, "require_tensorrt", no_probe)
    with pytest.raises(ValueError, match=message):
        build_engine(image_stub, tmp_path / "m.engine", **kwargs)


def test_image_options_on_a_patch_graph_are_refused(fp32_onnx: Path, tmp_path: Path) -> None:
    from hardnet_export.cli import flag

    with pytest.raises(
        ValueError, match=r"^max_image, max_keypoints set the profile of an image"
    ) as info:
        build_engine(fp32_onnx, tmp_path / "m.engine", max_image="640x480", max_keypoints=10)
    assert str(info.value).endswith("whose profile is min_batch, opt_batch and max_batch")
    assert info.value.render(flag).startswith("--max-image, --max-keypoints set the profile")
    assert info.value.render(flag).endswith("profile is --min-batch, --opt-batch and --max-batch")


def test_a_good_image_profile_reaches_the_probe_and_plans_the_sidecar(
    image_stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything build_engine checks before TensorRT passes, and the sidecar it would write
    holds the graph's settings and the planned profile."""
    import hardnet_export.export.tensorrt as exporter
    from hardnet_export._io import sha256_file
    from hardnet_export.artifacts.metadata import read_metadata
    from hardnet_export.artifacts.sidecar import EngineSidecar
    from hardnet_export.export.tensorrt import plan_image_profile

    class Probed(Exception):
        pass

    def probe(*args: object, **kw: object) -> None:
        raise Probed

    monkeypatch.setattr(exporter, "require_tensorrt", probe)
    with pytest.raises(Probed):
        build_engine(image_stub, tmp_path / "m.engine", opt_image="320x240", max_keypoints=512)
    graph = read_metadata(image_stub)
    profile = plan_image_profile(graph, opt_image="320x240", max_keypoints=512)
    side = EngineSidecar.plan(
        image_stub, tmp_path / "m.engine", onnx_sha256=sha256_file(image_stub), graph=graph,
        tensorrt_version="10.13.0.35", gpu_name="NVIDIA L4", compute_capability="8.9",
        device_index=0, image=profile, workspace_bytes=1 << 30, dla_core=None,
        gpu_fallback=True, version_compatible=False, hardware_compatible=False,
    )  # fmt: skip
    assert (side.graph_kind, side.magnification, side.pyramid_levels, side.min_image_side) == (
        "image",
        12.0,
        3,
        5,
    )
    assert side.profile["image"] == {"min": [5, 5], "opt": [240, 320], "max": [1920, 1920]}
    assert side.profile["keypoints"]["max"] == [512, 4] and side.image_profile == profile
    from hardnet_export.cli import flag

    assert (
        side.rebuild_remedy("m.engine")
        .render(flag)
        .endswith(
            "-o m.engine --rebuild --opt-image 320x240 --max-image 1920x1920 "
            "--opt-keypoints 512 --max-keypoints 512"
        )
    )


@pytest.mark.slow
def test_cli_bad_image_profile_is_one_sentence(image_stub: Path, tmp_path: Path) -> None:
    result = run_cli("trt", str(image_stub), "-o", str(tmp_path / "m.engine"), "--max-image", "4x4")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--max-image 4x4 has a side below 5" in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--max-keypoints", "100"],
            "error: --max-keypoints set the profile of an image graph's engine; ",
        ),
        (["--max-keypoints", "100"], "whose profile is --min-batch, --opt-batch and --max-batch"),
        (["--dla-core", "0"], "build with --min-batch B --opt-batch B --max-batch B\n"),
        (
            ["--dla-core", "0", "--min-batch", "8", "--opt-batch", "8", "--max-batch", "8"],
            "export it again, hardnet-export onnx --precision fp16 or hardnet-export onnx "
            "--precision int8\n",
        ),
        (["--opt-batch", "0"], "error: --opt-batch must be >= 1, got 0\n"),
    ],
)
def test_the_trt_command_names_its_flags(
    fp32_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list, message: str
) -> None:
    # The library's errors name build_engine's parameters; the command renders its flags.
    from fixture_files import run_main

    code, _, err = run_main(
        ["trt", str(fp32_onnx), "-o", str(tmp_path / "m.engine"), *options], capsys
    )
    assert code == 1 and message in err, err
    assert "_batch" not in err and "_keypoints" not in err


# -- a corrupt or foreign timing cache (issue 26, item 6) ----------------------------------


class _Config:
    """A stand-in for IBuilderConfig's two timing-cache calls: what TensorRT returns for a
    cache it cannot deserialise (None) or whose header does not match (False)."""

    def __init__(self, created: object, accepted: bool) -> None:
        self.created, self.accepted, self.given = created, accepted, None

    def create_timing_cache(self, data: bytes) -> object:
        self.given = data
        return self.created

    def set_timing_cache(self, cache: object, ignore_mismatch: bool) -> bool:
        if cache is None:  # what the real bindings do with None
            raise TypeError("set_timing_cache(): incompatible function arguments")
        assert ignore_mismatch is False
        return self.accepted


@pytest.mark.parametrize(
    ("created", "accepted", "message"),
    [
        (None, True, r"\(9 bytes\) is not a TensorRT timing cache this TensorRT can read"),
        (object(), False, "was made by another TensorRT version or GPU"),
    ],
    ids=["unreadable", "foreign"],
)
def test_a_bad_timing_cache_is_one_line_naming_it(
    tmp_path: Path, created: object, accepted: bool, message: str
) -> None:
    from hardnet_export.export.tensorrt import _load_timing_cache

    cache = tmp_path / "model.timing.cache"
    cache.write_bytes(b"not a tc!")
    config = _Config(created, accepted)
    with pytest.raises(ValueError, match=message) as info:
        _load_timing_cache(config, cache)
    assert config.given == b"not a tc!"
    assert str(cache) in str(info.value) and "\n" not in str(info.value)


def test_no_timing_cache_file_yet_gives_an_empty_cache(tmp_path: Path) -> None:
    from hardnet_export.export.tensorrt import _load_timing_cache

    config = _Config(object(), True)
    _load_timing_cache(config, tmp_path / "new.cache")
    assert config.given == b""
    _load_timing_cache(config, None)
    assert config.given == b""


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT_AND_GPU, reason="needs TensorRT")
def test_build_with_a_corrupt_timing_cache_says_which_file(fp32_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "garbage.cache"
    cache.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(ValueError, match="garbage.cache") as info:
        build_engine(fp32_onnx, tmp_path / "m.engine", max_batch=8, opt_batch=8, timing_cache=cache)
    assert "\n" not in str(info.value)
