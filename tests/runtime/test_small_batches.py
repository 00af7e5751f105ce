"""Calls of a few patches on another backend's exact path: the policy's ``small_batches``
rules, the describer's routing of calls and chunks, and ``runtime.load`` putting them
together."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hardnet_export import get_model, runtime
from hardnet_export.artifacts.backends import get_backend
from hardnet_export.artifacts.metadata import GraphMetadata, read_metadata
from hardnet_export.artifacts.models import models
from hardnet_export.artifacts.tuning import Choice
from hardnet_export.errors import InputError
from hardnet_export.host import VNNI_FLAGS, cpu_flags, has_bf16, int8_isa, saturates
from hardnet_export.runtime.policy import (
    cpu_runners,
    rule_choice,
    small_batch_limit,
    with_small_batches,
)
from hardnet_export.shipped import SHIPPED_ONNX

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

#: hardnet-fast's layout: 1.03 M multiply-adds per patch, 3 patches in the FP32 rule's budget
#: and 5 in the INT8 rule's.
FAST = {"width": 1.0, "layout": "strided"}
SMALL = Choice("onnxruntime", {"allow_spinning": False}, max_batch=3, source="rule")
SMALL_INT8 = replace(SMALL, max_batch=5)
AVX2 = frozenset({"avx2", "fma"})
VNNI = frozenset({"avx512f", "avx512_vnni"})
BF16 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
AMX = frozenset({"amx_int8", "amx_bf16"})


@pytest.mark.parametrize(
    ("flags", "precision", "flavour", "small"),
    [
        (AVX2, "fp32", None, None),  # ONNX Runtime runs every call already
        (AVX2, "int8", "cpu", None),  # int8 products may saturate: no rule without VNNI
        (VNNI, "int8", "cpu", SMALL_INT8),
        (VNNI, "int8", None, SMALL_INT8),  # a graph that records no flavour counts as cpu
        (VNNI, "int8", "tensorrt", None),  # made for TensorRT's kernels, not these
        (BF16, "fp32", None, SMALL),
        (AMX, "fp32", None, SMALL),
        (AMX, "int8", "cpu", SMALL_INT8),
    ],
    ids=[
        "avx2-fp32", "avx2-int8", "vnni-int8", "vnni-int8-unflavoured", "vnni-int8-tensorrt",
        "bf16-fp32", "amx-fp32", "amx-int8",
    ],
)  # fmt: skip
def test_small_batch_rules_per_instruction_set(
    flags: frozenset[str], precision: str, flavour: str | None, small: Choice | None
) -> None:
    gate = read_metadata(SHIPPED_ONNX).gate_on("openvino:bf16")
    assert gate is not None
    quantisation = None
    if flavour is not None:
        int8 = read_metadata(get_model("hardnet-fast").graph("int8-cpu")).quantisation
        assert int8 is not None
        quantisation = replace(int8, flavour=flavour)
    metadata = GraphMetadata(
        precision=precision,
        inference_gates={"openvino:bf16": gate},
        quantisation=quantisation,
        **FAST,
    )
    runners = cpu_runners(SHIPPED_ONNX)
    choice = with_small_batches(
        rule_choice(metadata, runners, flags=flags), metadata, runners, flags
    )
    got = choice.small_batches
    if small is None:
        assert got is None
        return
    assert got is not None and got.why
    assert (got.backend, dict(got.options), got.max_batch) == (
        small.backend,
        dict(small.options),
        small.max_batch,
    )
    assert f"up to {small.max_batch} patches: onnxruntime (allow_spinning=False)" in (
        choice.summary()
    )
    assert Choice.from_dict(choice.to_dict()) == choice  # what a cache or a report keeps
    # A tuned choice gets one too; what the caller named does not.
    tuned = replace(choice, source="tuned", small_batches=None)
    assert with_small_batches(tuned, metadata, runners, flags).small_batches is not None
    explicit = replace(choice, source="explicit", small_batches=None)
    assert with_small_batches(explicit, metadata, runners, flags).small_batches is None


@pytest.mark.parametrize("name", [m.name for m in models()])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_small_path_takes_calls_of_little_work(name: str, precision: str) -> None:
    """Patches per call on the small path: the rule's multiply-add budget over the graph's
    per patch, so the full model (39 M each, faster on OpenVINO from one patch) has none and
    the narrowest the most."""
    (rule,) = [r for r in get_backend("onnxruntime").small_batches if precision in r.precisions]
    assert rule.max_multiply_adds is not None
    entry = get_model(name)
    metadata = GraphMetadata(precision=precision, width=entry.width, layout=entry.layout)
    limit = small_batch_limit(rule, metadata)
    assert limit == rule.max_multiply_adds // entry.multiply_adds
    assert (limit == 0) == (entry.multiply_adds > rule.max_multiply_adds)
    if name in ("hardnet", "hardnet-half"):
        assert limit == 0
    # A graph that records no width, or a layout this version does not know: no small path.
    assert small_batch_limit(rule, replace(metadata, width=None)) == 0
    assert small_batch_limit(rule, replace(metadata, layout="from-the-future")) == 0


def test_calls_and_chunks_up_to_the_small_path_s_batch_run_there(patches: np.ndarray) -> None:
    # Two different models make the route visible in the descriptors themselves.
    main = runtime.load(SHIPPED_ONNX, backend="onnxruntime", max_batch=5)
    other = get_model("hardnet-fast").file("onnx")
    small = runtime.load(other, backend="onnxruntime", max_batch=3, allow_spinning=False)
    full = runtime.load(SHIPPED_ONNX, backend="onnxruntime").describe(patches[:8])
    fast = runtime.load(other, backend="onnxruntime").describe(patches[:8])
    main.use_for_small_batches(small)
    np.testing.assert_array_equal(main.describe(patches[:3]), fast[:3])
    np.testing.assert_array_equal(main.describe(patches[:4]), full[:4])
    # 8 patches in chunks of 5: the first chunk here, the last 3 on the small path.
    got = main.describe(patches[:8])
    np.testing.assert_array_equal(got[:5], full[:5])
    np.testing.assert_array_equal(got[5:], fast[5:])
    assert main.describe(patches[:0]).shape == (0, 128)


def test_a_small_path_must_take_the_same_input() -> None:
    torch = pytest.importorskip("torch")
    del torch
    main = runtime.load(SHIPPED_ONNX, backend="onnxruntime")
    floats = runtime.load(get_model("hardnet").file("weights"), backend="torch", device="cpu")
    assert (main.input_dtype, floats.input_dtype) == ("uint8", "float32")
    with pytest.raises(InputError, match="uint8 input"):
        main.use_for_small_batches(floats)


def test_load_runs_a_few_patches_exactly_where_it_chose_bf16(patches: np.ndarray) -> None:
    fast = get_model("hardnet-fast").file("onnx")
    describer = runtime.load(fast, device="cpu")
    exact = runtime.load(fast, backend="onnxruntime")
    full = runtime.load(SHIPPED_ONNX, device="cpu")
    if not has_bf16():  # ONNX Runtime runs every call: nothing to route
        assert describer.backend == full.backend == "onnxruntime"
        assert describer.small is None and full.small is None
        return
    assert describer.backend == "openvino" and describer.small is not None
    assert (describer.small.backend, describer.small.max_batch) == ("onnxruntime", 3)
    for n in (1, 3):
        np.testing.assert_array_equal(describer.describe(patches[:n]), exact.describe(patches[:n]))
    # From 4 patches on: OpenVINO's bf16, as explicitly loaded.
    bf16 = runtime.load(fast, backend="openvino", inference_precision="bf16")
    for n in (4, 32):
        np.testing.assert_allclose(
            describer.describe(patches[:n]), bf16.describe(patches[:n]), atol=1e-5
        )
    # The full model is faster on OpenVINO's bf16 from one patch on.
    assert full.backend == "openvino" and full.small is None


def test_load_runs_a_few_patches_of_an_int8_graph_on_onnxruntime_where_int8_is_exact(
    patches: np.ndarray,
) -> None:
    graph = get_model("hardnet-fast").graph("int8-cpu")
    describer = runtime.load(graph, device="cpu")
    if saturates(int8_isa()):
        # Its 8-bit weights would clip in these int8 kernels: exact Q/DQ on ONNX Runtime.
        assert (describer.backend, describer.semantics) == ("onnxruntime", "exact-qdq")
        assert describer.small is None
        return
    assert describer.backend == "openvino"  # INT8 graphs run there on every other CPU kind
    if not any(flag in cpu_flags() for flag in VNNI_FLAGS):  # ARM: not measured
        assert describer.small is None
        return
    assert describer.small is not None
    assert (describer.small.backend, describer.small.max_batch) == ("onnxruntime", 5)
    exact = runtime.load(graph, backend="onnxruntime")
    for n in (1, 5):
        np.testing.assert_array_equal(describer.describe(patches[:n]), exact.describe(patches[:n]))
    openvino = runtime.load(graph, backend="openvino").describe(patches[:6])
    np.testing.assert_allclose(describer.describe(patches[:6]), openvino, atol=1e-5)


def test_the_spinning_option_is_checked(patches: np.ndarray) -> None:
    quiet = runtime.load(SHIPPED_ONNX, backend="onnxruntime", allow_spinning=False)
    spinning = runtime.load(SHIPPED_ONNX, backend="onnxruntime")
    np.testing.assert_array_equal(quiet.describe(patches[:4]), spinning.describe(patches[:4]))
    with pytest.raises(TypeError, match="allow_spinning must be true or false"):
        runtime.load(SHIPPED_ONNX, backend="onnxruntime", allow_spinning="no")
