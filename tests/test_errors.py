"""Errors carry their remedy as data: Python in the library, flags in the CLI only."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest

import hardnet_export
from hardnet_export.cli import flag
from hardnet_export.errors import InputError, MissingFileError, Placeholder, Remedy, parameters

ROOT = Path(hardnet_export.__file__).parent


def test_a_remedy_reads_as_python_in_the_library_and_as_flags_in_the_cli() -> None:
    error = InputError(
        "3 keypoints are out of bounds ({remedy} keeps them)",
        remedy=Remedy({"out_of_bounds": "zero", "pipeline": False}),
    )
    assert (
        str(error)
        == "3 keypoints are out of bounds (out_of_bounds='zero', pipeline=False keeps them)"
    )
    assert (
        error.render(flag)
        == "3 keypoints are out of bounds (--out-of-bounds zero --no-pipeline keeps them)"
    )
    assert isinstance(error, ValueError) and error.remedy is not None
    assert repr(error).startswith("InputError(") and "{remedy}" not in repr(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_a_stage_to_run_again_is_a_call_or_a_command() -> None:
    remedy = Remedy(
        {"out": "m.engine", "max_image": "640x480", "rebuild": True},
        stage="trt",
        function="hardnet_export.export.tensorrt.build_engine",
        arguments=("m.onnx",),
    )
    error = MissingFileError("no engine: {remedy}", remedy=remedy)
    assert str(error) == (
        "no engine: build_engine('m.onnx', out='m.engine', max_image='640x480', rebuild=True)"
    )
    assert error.render(flag) == (
        "no engine: hardnet-export trt m.onnx -o m.engine --max-image 640x480 --rebuild"
    )
    # Without a placeholder the remedy follows the sentence.
    assert InputError("bad", remedy=Remedy({"seed": 1})).render(flag) == "bad; --seed 1"


def test_context_keeps_the_type_and_the_remedy() -> None:
    error = InputError("out of bounds ({remedy})", remedy=Remedy({"out_of_bounds": "zero"}))
    wrapped = error.prefixed("a.png: ")
    assert type(wrapped) is InputError and wrapped.remedy == error.remedy
    assert str(wrapped) == "a.png: out of bounds (out_of_bounds='zero')"
    assert wrapped.render(flag) == "a.png: out of bounds (--out-of-bounds zero)"
    with pytest.raises(InputError):
        raise wrapped


def test_a_switch_of_the_command_line_chooses_the_function() -> None:
    # `onnx --with-extraction` is export_image_graph(): the switch is the CLI's alone.
    from hardnet_export.runtime.image import IMAGE_GRAPH_REMEDY

    assert IMAGE_GRAPH_REMEDY.python() == "export_image_graph()"
    assert IMAGE_GRAPH_REMEDY.render(flag) == "hardnet-export onnx --with-extraction"


def test_parameters_alone_and_values_to_choose() -> None:
    # A bad value names its parameter; a value the user picks is written as its name.
    error = InputError(
        "{opt_image} 2000x100 is larger than {max_image} 1000x1000; build with {remedy}",
        remedies={
            **parameters("opt_image", "max_image"),
            "remedy": Remedy({"min_batch": Placeholder("B"), "max_batch": Placeholder("B")}),
        },
    )
    assert str(error) == (
        "opt_image 2000x100 is larger than max_image 1000x1000; build with min_batch=B, max_batch=B"
    )
    assert error.render(flag) == (
        "--opt-image 2000x100 is larger than --max-image 1000x1000; build with --min-batch B "
        "--max-batch B"
    )


def test_checked_parameters_name_their_flags() -> None:
    from hardnet_export.validate import check_int

    with pytest.raises(InputError) as info:
        check_int("max_keypoints", 0, low=1, parameter=True)
    assert str(info.value) == "max_keypoints must be >= 1, got 0"
    assert info.value.render(flag) == "--max-keypoints must be >= 1, got 0"
    with pytest.raises(InputError) as info:
        check_int("max_keypoints", 0, low=1)
    assert info.value.render(flag) == "max_keypoints must be >= 1, got 0"


def test_renamed_flags_render_as_the_cli_spells_them() -> None:
    # export_onnx(variant=...) is onnx --precision (with --int8-target where it is not the
    # default); an Int8Options field may have a shorter flag.
    assert flag("variant", "fp16") == "--precision fp16"
    assert flag("variant", "int8-tensorrt") == "--precision int8"
    assert flag("variant", "int8-cpu") == "--precision int8 --int8-target cpu"
    assert flag("max_nn_accuracy_loss", ...) == "--max-nn-loss"
    assert flag("keep_float", ("conv0", "conv1")) == "--keep-float conv0,conv1"


def test_the_cli_prints_the_flag_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from fixture_files import run_main

    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), np.full((64, 64), 128, np.uint8))
    keypoints = tmp_path / "k.npy"
    np.save(keypoints, np.array([[500.0, 500.0, 8.0, 0.0]], np.float32))
    code, out, err = run_main(
        ["describe", str(image), "--keypoints", str(keypoints), "-o", str(tmp_path / "f.npz")],
        capsys,
    )
    assert code == 1 and "--out-of-bounds zero keeps them" in err, err
    assert "out_of_bounds='zero'" not in err


#: Flag text (``--name``, ``hardnet-export CMD``) in string constants outside cli.py, docstrings
#: aside, would be a remedy written as a command line: an error says its remedy with
#: :class:`~hardnet_export.errors.Remedy` instead. Report titles name the command that wrote
#: them on purpose (``benchmark/report.py``, ``demo.py``).
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+|hardnet-export [a-z]+")
TITLES = {"benchmark/report.py", "demo.py"}


def flag_text() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name == "cli.py" or name in TITLES:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        found += [
            f"{name}:{node.lineno}: {node.value.strip()[:70]}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and FLAG.search(node.value)
        ]
    return found


def test_no_library_string_spells_a_flag() -> None:
    found = flag_text()
    assert not found, "say these with a Remedy:\n" + "\n".join(found)
