"""Checks for values where they enter: options, API arguments and fields read from files.

One place decides what a valid integer, number, flag or JSON document is, so the CLI, the
Python API and every reader (checkpoint metadata, ONNX metadata, engine sidecars, ``.npy``
files) refuse the same things with the same kind of sentence: what the value is, what was
expected, what came, and where it came from.

Rules that are easy to get wrong and are decided here once:
    - ``True``/``False`` are not integers or numbers here (``isinstance(True, int)`` holds
      in Python; a sidecar field ``"device_index": true`` is still an error).
    - strings are never numbers or flags: ``"false"`` read from a file is not ``False``.
    - numbers must be finite unless a check says otherwise.
    - JSON is refused before it is parsed when it is longer than a bound, and after it is
      parsed when it nests deeper than a bound (``json.loads`` would recurse without limit).

Torch-free and numpy-only, at the bottom of the house.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from hardnet_export.errors import InputError, InputTypeError, parameters

#: The longest JSON document a reader accepts (metadata, sidecars and result files are a few
#: kB; anything near this bound is not one of ours).
MAX_JSON_BYTES = 4 << 20
#: The deepest nesting of arrays and objects a reader accepts (ours nest 4 levels).
MAX_JSON_DEPTH = 32


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    source: str | None = None,
    parameter: bool = False,
) -> int:
    """``value`` as an ``int`` in ``[low, high]``; integral numpy scalars count, bools do not.
    ``parameter``: ``name`` is a parameter of the caller, which the CLI names as its flag
    (:func:`hardnet_export.errors.parameters`).

    Raises:
        InputTypeError: not an integer (a bool, a string, a float with a fraction, ...).
        InputError: outside the range.
    """
    named = {"remedies": parameters(name)} if parameter else {}
    what = f"{_where(source)}{{{name}}}" if parameter else f"{_where(source)}{name}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise InputTypeError(f"{what} must be an integer, got {_show(value)}", **named)
    number = int(value)
    if low is not None and number < low:
        raise InputError(f"{what} must be >= {low}, got {number}", **named)
    if high is not None and number > high:
        raise InputError(f"{what} must be <= {high}, got {number}", **named)
    return number


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    source: str | None = None,
) -> float:
    """``value`` as a finite ``float`` in the range (``low_open``: ``value > low``).

    Raises:
        InputTypeError: not a real number (a bool, a string, None, ...).
        InputError: NaN, infinite or outside the range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{_where(source)}{name} must be a number, got {_show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{_where(source)}{name} must be a finite number, got {number}")
    if low is not None and (number <= low if low_open else number < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise InputError(f"{_where(source)}{name} must be {bound}, got {number:g}")
    if high is not None and (number >= high if high_open else number > high):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise InputError(f"{_where(source)}{name} must be {bound}, got {number:g}")
    return number


def check_bool(name: str, value: Any, *, source: str | None = None) -> bool:
    """``value`` when it is a real ``bool`` (numpy's too); ``"true"``, ``1`` or None are not.

    Raises:
        InputTypeError: anything else.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputTypeError(f"{_where(source)}{name} must be true or false, got {_show(value)}")


def check_str(
    name: str,
    value: Any,
    *,
    choices: Sequence[str] | None = None,
    max_length: int = 4096,
    source: str | None = None,
) -> str:
    """``value`` when it is a string (one of ``choices`` when given).

    Raises:
        InputTypeError: not a string.
        InputError: not one of the choices, or longer than ``max_length``.
    """
    if not isinstance(value, str):
        raise InputTypeError(f"{_where(source)}{name} must be a string, got {_show(value)}")
    if len(value) > max_length:
        raise InputError(
            f"{_where(source)}{name} must be at most {max_length} characters, got {len(value)}"
        )
    if choices is not None and value not in choices:
        raise InputError(
            f"{_where(source)}{name} must be one of {', '.join(choices)}, got {value!r}"
        )
    return value


class Device(NamedTuple):
    """A device named the one way every stage takes: ``cpu``, ``cuda``, ``cuda:N`` (and ONNX
    Runtime's ``tensorrt[:N]``); ``index`` None is the kind's default device (0)."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


#: What ``device`` arguments take: ``"auto"`` or None (the best device here, chosen by
#: whoever runs the work), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``"tensorrt[:N]"`` for ONNX
#: Runtime), or an int N for ``cuda:N``.
DeviceLike: TypeAlias = "str | int | None"


def parse_device(device: DeviceLike) -> Device | None:
    """The one parser of ``device`` arguments: None for ``auto`` or None (the caller picks),
    else the kind and index. Which kinds a stage runs on is the stage's to check.

    Raises:
        InputTypeError: neither a string, an int nor None.
        InputError: an index that is not a non-negative integer (``cuda:x``).
    """
    if device is None or device == "auto":
        return None
    if isinstance(device, (int, np.integer)) and not isinstance(device, (bool, np.bool_)):
        return Device("cuda", check_int("device", int(device), low=0))
    if not isinstance(device, str):
        raise InputTypeError(f"device must be a string such as 'cuda:0', got {_show(device)}")
    kind, _, index = device.partition(":")
    if index and not index.isdigit():
        raise InputError(f"device index must be an integer, got {device!r}")
    return Device(kind, int(index) if index else None)


def device_name(device: DeviceLike) -> str | None:
    """``device`` written the one way (``cuda:1`` for 1), or None for ``auto`` and None.

    Raises:
        InputTypeError, InputError: as :func:`parse_device`.
    """
    parsed = parse_device(device)
    return None if parsed is None else str(parsed)


def parse_json(
    text: str | bytes,
    *,
    source: str,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Decode a JSON document read from ``source`` within size and depth bounds.

    ``NaN`` and ``Infinity`` (which Python's json accepts, but JSON does not have) are refused.

    Raises:
        InputError: too long, not UTF-8, not JSON, non-standard constants, or too deep.
    """
    if len(text) > max_bytes:
        raise InputError(
            f"{source} is not a document this project writes: {len(text):,} bytes, "
            f"at most {max_bytes:,} expected"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{source} is not UTF-8 text ({exc})") from None
    if _bracket_depth(text) > max_depth:
        raise InputError(f"{source} nests deeper than {max_depth} levels; not a file we write")

    def refuse_constant(word: str) -> Any:
        raise InputError(f"{source} holds {word}, which is not JSON")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source} is not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{source} nests too deeply to read") from None


def parse_json_object(text: str | bytes, *, source: str, **bounds: int) -> dict[str, Any]:
    """:func:`parse_json` for documents that must be a JSON object.

    Raises:
        InputError: as :func:`parse_json`, or the document is not an object.
    """
    value = parse_json(text, source=source, **bounds)
    if not isinstance(value, dict):
        raise InputError(f"{source} must be a JSON object, got {type(value).__name__}")
    return value


def _bracket_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
