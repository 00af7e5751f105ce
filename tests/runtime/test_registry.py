from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hardnet_export import runtime
from hardnet_export.runtime.policy import registered_graph
from hardnet_export.runtime.registry import backend_for, backends, get_backend

BACKENDS = backends()


def test_suffix_picks_backend() -> None:
    assert backend_for("a.pth").name == "torch"
    assert backend_for("a.PT").name == "torch"
    assert backend_for("a.onnx").name == "onnxruntime"
    assert backend_for("a.engine").name == "tensorrt"
    assert backend_for("a.plan").name == "tensorrt"
    assert backend_for("a.xml").name == "openvino"
    assert {b.name for b in BACKENDS} == {"torch", "onnxruntime", "openvino", "tensorrt"}


def test_every_backend_module_imports_without_its_library() -> None:
    # Registry entries resolve to classes; importing a backend module must not need its library.
    for backend in BACKENDS:
        cls = backend.describer_class()
        assert cls.backend == backend.name


def test_unknown_suffix_and_backend(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"weights")
    with pytest.raises(ValueError, match="no backend reads"):
        runtime.load(tmp_path / "model.bin")
    with pytest.raises(FileNotFoundError, match="model not found: .*nothing.bin"):
        runtime.load(tmp_path / "nothing.bin")
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("tflite")
    with pytest.raises(ValueError, match="reads"):
        runtime.load(tmp_path / "model.onnx", backend="torch")


@pytest.mark.parametrize("name", ["model.pth", "model.onnx", "model.engine"])
def test_missing_artifact(tmp_path: Path, name: str) -> None:
    with pytest.raises(FileNotFoundError, match=name):
        runtime.load(tmp_path / name)


def test_an_unknown_option_names_the_backend_and_its_options(onnx_model: Path) -> None:
    # Was Python's bare "open() got an unexpected keyword argument 'intra_op_threads'".
    with pytest.raises(TypeError, match=r"unknown load\(\) option intra_op_threads for the "
                       r"onnxruntime backend; its options: .*intra_op_num_threads"):  # fmt: skip
        runtime.load(onnx_model, intra_op_threads=2)
    # The torch backend passes **options on to its constructor: those count as its own.
    with pytest.raises(TypeError, match=r"options fp32, half for the torch backend; its op.*fp16"):
        runtime.load("hardnet", backend="torch", half=True, fp32=True)


def test_a_name_on_the_cpu_runs_its_graph_as_the_graph_runs_there() -> None:
    pytest.importorskip("onnxruntime")
    from hardnet_export import get_model

    entry = get_model("hardnet-eighth")  # ships no other graph (see test_registered_graph)
    by_name = runtime.load(entry.name, device="cpu")
    assert by_name.artifact == entry.onnx and by_name.backend != "torch"
    assert by_name.choice == runtime.load(entry.onnx, device="cpu").choice
    # The default model likewise.
    default = runtime.load(device="cpu")
    assert default.artifact == registered_graph(get_model("hardnet")).graph
    # Naming a graph backend runs the FP32 graph there as written.
    plain = runtime.load(entry.name, backend="onnxruntime")
    assert plain.artifact == entry.onnx and plain.choice.source not in ("tuned", "rule")


def test_a_name_keeps_its_checkpoint_for_pytorch_and_its_own_options() -> None:
    pytest.importorskip("torch")
    from hardnet_export import get_model

    entry = get_model("hardnet-fast")
    named = runtime.load(entry.name, backend="torch", device="cpu")
    assert named.backend == "torch" and named.artifact == entry.weights
    # An option only PyTorch takes goes to PyTorch (which says what it needs), not to a graph
    # backend that would call it unknown.
    with pytest.raises(ValueError, match="channels_last and cuda_graph need device='cuda'"):
        runtime.load(entry.name, device="cpu", channels_last=True)


def test_tensorrt_path_none_needs_an_artifact() -> None:
    with pytest.raises(ValueError, match="needs an artifact"):
        runtime.load(backend="tensorrt")


@pytest.mark.slow
def test_onnx_inference_does_not_import_torch(onnx_model: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from hardnet_export import runtime\n"
        f"d = runtime.load({str(onnx_model)!r})\n"
        "out = d.describe(np.zeros((3, 32, 32), np.uint8))\n"
        "print(out.shape, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(3, 128) False"


# -- graph kinds: one table entry per (backend, kind) ----------------------------------------

KIND_ENTRIES = [(b.name, kind) for b in BACKENDS for kind in b.kinds]


@pytest.mark.parametrize(("name", "kind"), KIND_ENTRIES)
def test_every_kind_entry_imports_a_describer_of_its_backend(name: str, kind: str) -> None:
    from hardnet_export.artifacts.metadata import GRAPH_KINDS
    from hardnet_export.runtime.base import Describer, KeypointDescriber
    from hardnet_export.runtime.image import ImageDescriber
    from hardnet_export.runtime.registry import describer_for

    assert kind in GRAPH_KINDS
    cls = describer_for(name, kind, "model.x")
    assert isinstance(cls, type) and issubclass(cls, KeypointDescriber) and cls.backend == name
    # Patch and image describers are siblings: an image graph's shares the host rules of
    # compute() and has no describe().
    assert issubclass(cls, ImageDescriber) == (kind == "image")
    assert issubclass(cls, Describer) == (kind == "patches")
    assert get_backend(name).describer_class(kind) is cls


def test_every_backend_has_a_patches_entry_and_image_where_expected() -> None:
    kinds = {b.name: set(b.kinds) for b in BACKENDS}
    assert all("patches" in k for k in kinds.values())
    assert {n for n, k in kinds.items() if "image" in k} == {"onnxruntime", "openvino", "tensorrt"}
    assert get_backend("onnxruntime").target == get_backend("onnxruntime").kinds["patches"]


def test_a_kind_without_an_entry_names_the_kind_artifact_and_the_backends_that_open_it() -> None:
    from hardnet_export.errors import InputError
    from hardnet_export.runtime.registry import describer_for

    with pytest.raises(InputError) as info:
        describer_for("torch", "image", "/models/model.image.pth")
    message = str(info.value)
    assert "/models/model.image.pth" in message and "'image'" in message
    assert "torch backend does not open" in message
    assert "backends that open image graphs: onnxruntime, openvino, tensorrt" in message
    with pytest.raises(InputError, match="kind 'depth'.*backends that open depth graphs: none"):
        get_backend("onnxruntime").describer_class("depth")


def test_load_refuses_a_kind_the_backend_has_no_entry_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime's open reads the graph's kind and asks the table: with the image entry
    gone (as for a backend that cannot run image graphs), an image graph is refused in one
    sentence, while patch graphs still open."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import dataclasses

    from fixture_files import write_image_graph_stub

    from hardnet_export.artifacts import backends as backends_table
    from hardnet_export.errors import InputError

    path = write_image_graph_stub(tmp_path / "stub.image.onnx")
    without = tuple(
        dataclasses.replace(
            b,
            kinds={k: v for k, v in b.kinds.items() if k != "image"},
            unsupported={"image": "its kernels cannot run them"},
        )
        if b.name == "onnxruntime"
        else b
        for b in backends()
    )
    monkeypatch.setattr(backends_table, "_registered", list(without))
    with pytest.raises(InputError) as info:
        runtime.load(path, backend="onnxruntime", device="cpu")
    message = str(info.value)
    assert str(path) in message and "onnxruntime backend does not open" in message
    assert "(its kernels cannot run them)" in message and "openvino, tensorrt" in message


def test_the_backends_command_lists_every_record(capsys: pytest.CaptureFixture[str]) -> None:
    from fixture_files import run_main

    from hardnet_export.artifacts.backends import backends

    code, out, _ = run_main(["backends"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "reads", "devices", "installed"]
    for backend in backends():
        row = next(line for line in lines if line.split()[0] == backend.name)
        assert " ".join(backend.suffixes) in row and backend.summary in row
        assert (backend.version() or "no") in row if not backend.available() else True
