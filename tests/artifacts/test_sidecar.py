"""The engine sidecar round trip on a CPU: what the builder writes, the runtime accepts, and a
changed field is refused with the rebuild command. No TensorRT needed: the builder's own
planning function (the one ``build_engine`` calls) makes the sidecar."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from hardnet_export._io import sha256_file
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.sidecar import (
    CACHE_KEYS,
    FORMAT,
    EngineMismatchError,
    EngineSidecar,
    read_sidecar,
    rebuild_remedy,
    sidecar_path,
    version_key,
)
from hardnet_export.cli import flag
from hardnet_export.errors import InputError

HERE = {"tensorrt_version": "10.13.0.35", "gpu_name": "NVIDIA L4", "compute_capability": "8.9"}


def planned(graph: Path, engine: Path, **changes: object) -> EngineSidecar:
    values: dict[str, object] = {
        "onnx_sha256": sha256_file(graph),
        "graph": read_metadata(graph),
        "device_index": 0,
        "batch": (1, 256, 1024),
        "workspace_bytes": 1 << 30,
        "dla_core": None,
        "gpu_fallback": True,
        "version_compatible": False,
        "hardware_compatible": False,
        **HERE,
        **changes,
    }
    return EngineSidecar.plan(graph, engine, **values)  # type: ignore[arg-type]


def test_written_sidecar_is_accepted(fp16_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "model.fp16.engine"
    side = planned(fp16_onnx, engine)
    side.write(engine)
    read = read_sidecar(engine)
    assert read == side
    read.check(engine, **HERE)
    assert read.precision == "fp16" and read.profile["max"] == [1024, 1, 32, 32]
    assert read.weights_sha256 == read_metadata(fp16_onnx).weights_sha256
    assert json.loads(sidecar_path(engine).read_text())["format"] == FORMAT
    assert (read.model_name, read.width) == (None, read_metadata(fp16_onnx).width)


def test_sidecar_names_the_registered_model(tmp_path: Path) -> None:
    from hardnet_export import models

    entry = next(m for m in models() if m.width < 1)
    engine = tmp_path / "small.fp32.engine"
    planned(entry.file("onnx"), engine).write(engine)
    read = read_sidecar(engine)
    assert read is not None and (read.model_name, read.width) == (entry.name, entry.width)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "tensorrt_version",
            "11.4.0.6",
            r"built with TensorRT 11\.4\.0\.6, but this is TensorRT 10",
        ),
        ("compute_capability", "8.7", r"compute capability 8\.7\).*NVIDIA L4"),
    ],
)
def test_changed_field_is_refused_with_the_rebuild_command(
    fp16_onnx: Path, tmp_path: Path, field: str, value: str, message: str
) -> None:
    engine = tmp_path / "model.fp16.engine"
    planned(fp16_onnx, engine, **{field: value}).write(engine)
    with pytest.raises(EngineMismatchError, match=message) as info:
        read_sidecar(engine).check(engine, **HERE)  # type: ignore[union-attr]
    # The library says it in Python; the CLI renders the same remedy as its command.
    assert f"build_engine('{fp16_onnx}', out='{engine}', rebuild=True)" in str(info.value)
    assert f"hardnet-export trt {fp16_onnx} -o {engine} --rebuild" in info.value.render(flag)


def test_compatible_engines(fp16_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "e.engine"
    side = planned(fp16_onnx, engine, tensorrt_version="10.8.0.43", version_compatible=True)
    side.check(engine, **HERE)  # same major, version compatible
    side = planned(fp16_onnx, engine, compute_capability="8.6", hardware_compatible=True)
    side.check(engine, **HERE)  # Ampere+ plan on an 8.9 GPU
    with pytest.warns(RuntimeWarning, match="tactics were tuned"):
        planned(fp16_onnx, engine, gpu_name="NVIDIA L40").check(engine, **HERE)


def test_reader_refuses_what_no_writer_produces(fp16_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "e.engine"
    good = planned(fp16_onnx, engine).to_dict()
    for bad, message in (
        ({**good, "format": "other/1"}, "not a hardnet-export-engine/1 sidecar"),
        ({k: v for k, v in good.items() if k != "gpu_name"}, "lacks gpu_name"),
        ({**good, "device_index": "0"}, "device_index must be an integer"),
        # bool is an int in Python; not in a sidecar
        ({**good, "device_index": True}, "device_index must be an integer"),
        ({**good, "version_compatible": "false"}, "version_compatible must be true or false"),
        ({**good, "profile": {**good["profile"], "max": [1024]}}, r"profile max must be \[N >= 1"),
        ({**good, "profile": {**good["profile"], "min": [2048, 1, 32, 32]}}, "min <= opt <= max"),
        ({**good, "compute_capability": "nine"}, "compute_capability must look like"),
        ({**good, "width": "0.5"}, r"width must be a number in \(0, 16\]"),
        ({**good, "width": True}, "width must be a number"),
        ({**good, "model_name": 3}, "model_name"),
        # JSON null where a field may not be absent (found by tests/fuzz: it slipped past the
        # type checks as None, or crashed on profile.get).
        ({**good, "profile": None}, "profile must not be null"),
        ({**good, "device_index": None}, "device_index must not be null"),
        ({**good, "compute_capability": None}, "compute_capability must not be null"),
        ({**good, "workspace_bytes": None}, "workspace_bytes must not be null"),
        ({**good, "version_compatible": None}, "version_compatible must not be null"),
    ):
        sidecar_path(engine).write_text(json.dumps(bad))
        with pytest.raises((InputError, TypeError), match=message):
            read_sidecar(engine)
    # A sidecar of another format or without a field: rebuild the engine it belongs to.
    sidecar_path(engine).write_text(json.dumps({**good, "format": "other/1"}))
    with pytest.raises(InputError) as info:
        read_sidecar(engine)
    assert str(info.value).endswith(
        f"rebuild the engine: build_engine({str(fp16_onnx)!r}, out={str(engine)!r}, rebuild=True)"
    )
    assert info.value.render(flag).endswith(
        f"rebuild the engine: hardnet-export trt {fp16_onnx} -o {engine} --rebuild"
    )
    sidecar_path(engine).write_text("[" * 1000 + "]" * 1000)
    with pytest.raises(InputError, match="nests deeper"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_sidecar(engine)
    sidecar_path(engine).unlink()
    assert read_sidecar(engine) is None  # a foreign engine: TensorRT itself judges it


def test_cache_key_and_unknown_fields(fp16_onnx: Path, tmp_path: Path) -> None:
    engine = tmp_path / "e.engine"
    side = planned(fp16_onnx, engine)
    assert set(side.cache_key()) == set(CACHE_KEYS)
    later = {**side.to_dict(), "written_by_a_later_version": 1}
    sidecar_path(engine).write_text(json.dumps(later))
    read = read_sidecar(engine)
    assert read is not None and read.other == {"written_by_a_later_version": 1}
    assert dataclasses.replace(read, other={}) == side
    remedy = rebuild_remedy("x.engine")
    assert remedy.render(flag) == "hardnet-export trt MODEL.onnx -o x.engine --rebuild"
    assert remedy.python() == "build_engine('MODEL.onnx', out='x.engine', rebuild=True)"


@pytest.mark.parametrize(
    ("built", "running", "compatible", "loads"),
    [
        ("10.8.0.43", "10.13.0.35", True, True),  # a later runtime of the same major
        ("10.9.0.34", "10.13.0.35", True, True),  # numeric, not string, order ("10.9" > "10.13")
        ("10.13.0.35", "11.4.1.2", True, True),  # TensorRT 11 runs 10.x version-compatible plans
        ("10.13.0.35", "10.13.0.35", True, True),
        ("10.13.0.35", "10.8.0.43", True, False),  # never an older runtime
        ("11.4.1.2", "10.13.0.35", True, False),
        ("10.13.0.35", "10.13.0.35", False, True),  # a plain plan: exactly its version
        ("10.13", "10.13.0", False, True),
        ("10.8.0.43", "10.13.0.35", False, False),
        ("10.13.0.35", "11.4.1.2", False, False),
    ],
)
def test_version_rule(
    fp16_onnx: Path, tmp_path: Path, built: str, running: str, compatible: bool, loads: bool
) -> None:
    engine = tmp_path / "e.engine"
    side = planned(fp16_onnx, engine, tensorrt_version=built, version_compatible=compatible)
    here = {**HERE, "tensorrt_version": running}
    if loads:
        side.check(engine, **here)
        return
    with pytest.raises(EngineMismatchError, match=f"TensorRT {re.escape(built)}") as info:
        side.check(engine, **here)
    assert "rebuild=True" in str(info.value) and "--rebuild" in info.value.render(flag)
    if compatible:
        assert "never an older one" in str(info.value)


def test_version_key() -> None:
    assert version_key("10.13.0.35") == (10, 13, 0, 35)
    assert version_key("10.13.0") == version_key("10.13") == (10, 13)
    assert version_key("10.9") < version_key("10.13")  # type: ignore[operator]
    assert version_key("10.x") is None and version_key("") is None


def test_unparseable_version_of_a_compatible_plan_is_refused(
    fp16_onnx: Path, tmp_path: Path
) -> None:
    engine = tmp_path / "e.engine"
    side = planned(fp16_onnx, engine, tensorrt_version="10.13-custom", version_compatible=True)
    with pytest.raises(EngineMismatchError, match="expected dotted numbers"):
        side.check(engine, **HERE)


# -- image engines ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    from fixture_files import write_image_graph_stub

    return write_image_graph_stub(tmp_path_factory.mktemp("image-stub") / "m.image.onnx")


def image_planned(graph: Path, engine: Path) -> EngineSidecar:
    from hardnet_export.artifacts.sidecar import ImageProfile

    profile = ImageProfile((5, 5), (240, 320), (480, 640), 1, 64, 256)
    return planned(graph, engine, batch=None, image=profile)


def test_image_engine_sidecar_round_trip(image_stub: Path, tmp_path: Path) -> None:
    engine = tmp_path / "m.image.engine"
    side = image_planned(image_stub, engine)
    side.write(engine)
    read = read_sidecar(engine)
    assert read == side
    read.check(engine, **HERE)
    assert (read.graph_kind, read.magnification, read.pyramid_levels, read.min_image_side) == (
        "image",
        12.0,
        3,
        5,
    )
    assert read.image_profile.max_image == (480, 640) and read.image_profile.max_keypoints == 256
    assert "--max-image 640x480 --opt-keypoints 64" in read.rebuild_remedy(engine).render(flag)


def test_patch_sidecars_from_before_image_engines_still_read(
    fp16_onnx: Path, tmp_path: Path
) -> None:
    engine = tmp_path / "model.fp16.engine"
    old = planned(fp16_onnx, engine).to_dict()
    for key in ("graph_kind", "magnification", "pyramid_levels", "min_image_side"):
        del old[key]
    sidecar_path(engine).write_text(json.dumps(old))
    read = read_sidecar(engine)
    assert read is not None and read.graph_kind == "patches" and read.magnification is None
    with pytest.raises(InputError, match="no image profile"):
        _ = read.image_profile


def test_image_sidecars_the_builder_never_writes_are_refused(
    image_stub: Path, tmp_path: Path
) -> None:
    engine = tmp_path / "m.image.engine"
    good = image_planned(image_stub, engine).to_dict()
    profile = good["profile"]
    for bad, message in (
        ({**good, "graph_kind": "video"}, "graph_kind must be one of"),
        ({**good, "magnification": None}, "without magnification"),
        ({**good, "magnification": "12"}, r"magnification must be a number in \(0, 64\]"),
        ({**good, "profile": {"min": [1, 1, 32, 32]}}, "needs image and keypoints entries"),
        (
            {**good, "profile": {**profile, "keypoints": {**profile["keypoints"], "max": [9, 3]}}},
            r"profile keypoints max must be \[K, 4\]",
        ),
        (
            {**good, "profile": {**profile, "image": {**profile["image"], "opt": [900, 320]}}},
            "min <= opt <= max height",
        ),
        (
            {**good, "profile": {**profile, "image": {**profile["image"], "min": [2, 2]}}},
            "below the graph's min_image_side 5",
        ),
    ):
        sidecar_path(engine).write_text(json.dumps(bad))
        with pytest.raises(InputError, match=message):
            read_sidecar(engine)


def test_the_profile_must_fit_the_graph_kind(
    image_stub: Path, fp16_onnx: Path, tmp_path: Path
) -> None:
    from hardnet_export.artifacts.sidecar import ImageProfile

    engine = tmp_path / "e.engine"
    with pytest.raises(InputError, match="image graph: its profile is an ImageProfile"):
        planned(image_stub, engine)  # a batch profile
    profile = ImageProfile((5, 5), (5, 5), (5, 5), 1, 1, 1)
    with pytest.raises(InputError, match="patch graph: its profile is a batch range"):
        planned(fp16_onnx, engine, batch=None, image=profile)
    with pytest.raises(InputError, match="keypoint profile needs 1 <= min <= opt <= max"):
        ImageProfile((5, 5), (5, 5), (5, 5), 1, 9, 8)
