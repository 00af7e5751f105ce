"""The one module that decides what valid integers, numbers, flags and JSON documents are."""

from __future__ import annotations

import numpy as np
import pytest

from hardnet_export.validate import (
    check_bool,
    check_float,
    check_int,
    check_str,
    device_name,
    parse_device,
    parse_json,
    parse_json_object,
)


@pytest.mark.parametrize("value", [3, np.int64(3), 3.0, np.uint8(3)])
def test_integers(value) -> None:
    assert check_int("n", value, low=1, high=5) == 3
    assert type(check_int("n", value)) is int


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (True, TypeError, r"n must be an integer, got True \(bool\)"),
        ("3", TypeError, "must be an integer, got '3'"),
        (3.5, TypeError, "must be an integer"),
        (float("nan"), TypeError, "must be an integer"),
        (None, TypeError, "must be an integer"),
        (0, ValueError, "n must be >= 1, got 0"),
        (6, ValueError, "n must be <= 5, got 6"),
    ],
)
def test_not_integers(value, error, message) -> None:
    with pytest.raises(error, match=message):
        check_int("n", value, low=1, high=5, source=None)


def test_errors_name_the_source() -> None:
    with pytest.raises(ValueError, match=r"^model.onnx: n must be >= 1, got 0$"):
        check_int("n", 0, low=1, source="model.onnx")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (False, "must be a number"),
        ("0.5", "must be a number"),
        (0.0, "must be > 0"),
        (2.5, "must be <= 2"),
    ],
)
def test_not_numbers_in_range(value, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        check_float("x", value, low=0.0, low_open=True, high=2.0)


def test_numbers() -> None:
    assert check_float("x", np.float32(0.5), low=0.0, high=1.0) == 0.5
    assert check_float("x", 1, low=0.0) == 1.0


@pytest.mark.parametrize("value", ["true", "false", "False", 1, 0, None, "yes"])
def test_strings_and_numbers_are_not_flags(value) -> None:
    with pytest.raises(TypeError, match="must be true or false"):
        check_bool("flag", value)


def test_flags() -> None:
    assert check_bool("flag", np.bool_(True)) is True
    assert check_bool("flag", False) is False


def test_strings() -> None:
    assert check_str("kind", "cpu", choices=("cpu", "tensorrt")) == "cpu"
    with pytest.raises(ValueError, match="kind must be one of cpu, tensorrt, got 'gpu'"):
        check_str("kind", "gpu", choices=("cpu", "tensorrt"))
    with pytest.raises(TypeError, match="must be a string"):
        check_str("kind", 3)
    with pytest.raises(ValueError, match="at most 10 characters"):
        check_str("kind", "x" * 11, max_length=10)


def test_json_bounds() -> None:
    assert parse_json('{"a": [1, {"b": "[[[["}]}', source="f.json") == {"a": [1, {"b": "[[[["}]}
    with pytest.raises(ValueError, match="f.json nests deeper than 32 levels"):
        parse_json("[" * 40 + "]" * 40, source="f.json")
    # Deep enough to crash json.loads with RecursionError, refused before parsing.
    with pytest.raises(ValueError, match="nests deeper"):
        parse_json("[" * 100_000 + "]" * 100_000, source="f.json")
    with pytest.raises(ValueError, match="at most 100 expected"):
        parse_json(" " * 101, source="f.json", max_bytes=100)
    with pytest.raises(ValueError, match="holds Infinity, which is not JSON"):
        parse_json('{"a": Infinity}', source="f.json")
    with pytest.raises(ValueError, match="f.json is not valid JSON"):
        parse_json("{", source="f.json")
    with pytest.raises(ValueError, match="is not UTF-8"):
        parse_json(b"\xff\xfe", source="f.json")
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        parse_json_object("[]", source="f.json")


@pytest.mark.parametrize(
    ("device", "parsed", "name"),
    [
        (None, None, None),
        ("auto", None, None),
        ("cpu", ("cpu", None), "cpu"),
        ("cuda", ("cuda", None), "cuda"),
        ("cuda:1", ("cuda", 1), "cuda:1"),
        ("tensorrt:0", ("tensorrt", 0), "tensorrt:0"),
        (2, ("cuda", 2), "cuda:2"),
        (np.int64(0), ("cuda", 0), "cuda:0"),
    ],
)
def test_one_device_convention(device, parsed, name) -> None:  # type: ignore[no-untyped-def]
    assert parse_device(device) == parsed and device_name(device) == name


def test_bad_devices() -> None:
    with pytest.raises(ValueError, match="device index must be an integer, got 'cuda:x'"):
        parse_device("cuda:x")
    with pytest.raises(ValueError, match="device must be >= 0"):
        parse_device(-1)
    with pytest.raises(TypeError, match="device must be a string"):
        parse_device(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="device must be a string"):
        parse_device(1.5)  # type: ignore[arg-type]
