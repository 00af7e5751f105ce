"""Fuzzing ``extract_patches`` and ``Describer.compute`` with hostile input.

Any image (shape, 1xN, dtype, not an array at all), any keypoints (every float including
NaN, inf and huge values, any shape and dtype, ``cv2.KeyPoint`` lists), any magnification
and ``out_of_bounds``: the call returns the documented shape and dtype or raises a
ValueError/TypeError, never anything else and never a warning, and each example finishes
within the deadline, a hang guard (far-out keypoints once took minutes).

Each argument is well-formed most of the time, so that many examples get past validation
to the sampling and the model, where the values (near, across and far beyond the border)
are what is being fuzzed.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any, TypeVar

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from hardnet_export import runtime
from hardnet_export.geometry import extract_patches, keypoints_in_bounds
from hardnet_export.runtime.base import Describer

pytestmark = pytest.mark.slow

T = TypeVar("T")

# A generous per-example bound on 2 slow, shared cores: a guard against hangs, not a timing.
HANG_GUARD = timedelta(seconds=5)


def mostly(sane: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``sane`` four times in five, else ``hostile``."""
    return st.sampled_from([True] * 4 + [False]).flatmap(lambda ok: sane if ok else hostile)


SPECIAL = [0.0, -0.0, -1.0, 1e-300, 5e-324, 1e9, -1e9, 1e30, -1e30, 3e38, 1e300, -1e300]
NUMBERS = mostly(
    st.floats(-60.0, 120.0),  # near a small image: in-bound keypoints are common
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL)),
)
ODD_KEYPOINT_DTYPES = ["float16", "longdouble", "int64", "int16", "uint8", "bool", "complex128"]


@st.composite
def images(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["gray"] * 4 + ["colour"] * 2 + ["odd", "huge", "not an array"]))
    if kind == "not an array":
        return draw(st.sampled_from([None, "image.png", [[1, 2], [3, 4]], 3.0]))
    if kind == "huge":
        shape: tuple[int, ...] = draw(st.sampled_from([(1, 32767), (32767, 1), (1, 32766)]))
    else:
        side = st.one_of(st.just(1), st.integers(1, 48))
        height, width = draw(side), draw(side)
        if kind == "gray":
            shape = (height, width)
        elif kind == "colour":
            shape = (height, width, draw(mostly(st.sampled_from([1, 3, 4]), st.just(2))))
        else:
            shape = draw(npst.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    dtype = draw(mostly(st.just("uint8"), st.sampled_from(["uint16", "int8", "float32", "bool"])))
    # Pixel values are not what is fuzzed here; shapes and dtypes are.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(0, 256, shape).astype(dtype)


@st.composite
def keypoints(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["array"] * 6 + ["cv2", "mixed", "junk"]))
    if kind == "junk":
        return draw(st.sampled_from([None, "kps", [[1, "a"]], [[1, 2], [3]], {"x": 1}, 7]))
    if kind in ("cv2", "mixed"):
        rows = draw(st.lists(st.tuples(*[st.floats(width=32)] * 4), max_size=5))
        found: list[Any] = [cv2.KeyPoint(*row) for row in rows]
        return [*found, (1.0, 2.0)] if kind == "mixed" else found
    shape = draw(
        mostly(
            st.tuples(st.integers(0, 8), st.sampled_from([2, 4])),
            npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        )
    )
    values = draw(npst.arrays(np.float64, shape, elements=NUMBERS))
    dtype = draw(
        mostly(st.sampled_from(["float64", "float32"]), st.sampled_from(ODD_KEYPOINT_DTYPES))
    )
    with np.errstate(all="ignore"):  # the cast's own overflow is part of the input
        return values.astype(dtype)


MAGNIFICATIONS = mostly(
    st.one_of(st.floats(0.5, 64.0), st.just(None)),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-3, 100),
        st.sampled_from(["12", True, np.float32(6.0), np.int64(8), 1e-9, 64.0000001]),
    ),
)
MODES = mostly(st.sampled_from(["reject", "zero"]), st.sampled_from(["clip", None, 0]))


def count(keypoints: Any) -> int:
    return len(keypoints) if isinstance(keypoints, list) else int(np.shape(keypoints)[0])


def geometry_args(magnification: Any, mode: Any) -> dict[str, Any]:
    # extract_patches has a default of its own; None there is one more wrong value.
    return {
        "magnification": 12.0 if magnification is None else magnification,
        "out_of_bounds": mode,
    }


@settings(
    max_examples=500,
    deadline=HANG_GUARD,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(image=images(), kps=keypoints(), magnification=MAGNIFICATIONS, mode=MODES)
# Found by this test: an empty colour image reached cvtColor, which raised cv2.error.
@example(
    image=np.zeros((0, 0, 3), np.uint8), kps=np.zeros((0, 2)), magnification=1.0, mode="reject"
)
def test_extract_patches_returns_patches_or_a_value_or_type_error(
    image: Any, kps: Any, magnification: Any, mode: Any
) -> None:
    args = geometry_args(magnification, mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            out = extract_patches(image, kps, **args)
        except (ValueError, TypeError):
            return
        valid = keypoints_in_bounds(image.shape, kps, magnification=args["magnification"])
    assert out.dtype == np.uint8 and out.shape == (count(kps), 32, 32)
    assert valid.dtype == np.bool_ and valid.shape == (len(out),)
    assert mode == "zero" or valid.all()
    assert not out[~valid].any()


@pytest.fixture(scope="module")
def describer() -> Describer:
    return runtime.load(backend="onnxruntime", device="cpu")


@settings(
    max_examples=200,
    deadline=HANG_GUARD,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(image=images(), kps=keypoints(), magnification=MAGNIFICATIONS, mode=MODES)
def test_compute_returns_descriptors_or_a_value_or_type_error(
    describer: Describer, image: Any, kps: Any, magnification: Any, mode: Any
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            given_back, desc = describer.compute(
                image, kps, magnification=magnification, out_of_bounds=mode
            )
        except (ValueError, TypeError):
            return
    assert given_back is kps
    assert desc.dtype == np.float32 and desc.shape == (count(kps), 128)
    norms = np.linalg.norm(desc, axis=1)
    real = norms > 0
    np.testing.assert_allclose(norms[real], 1.0, atol=1e-3)
    assert mode == "zero" or real.all()
