"""A precision is one record plus its graph function (and options type): a toy one, added
from this folder only (``toy_precision.py``), exports with ``export_onnx(weights, out,
variant=..., options=...)``, loads with its precision read from the metadata, passes ``check``
and is in the benchmark's target list, without any other project file knowing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.variants import (
    Variant,
    get_variant,
    precisions,
    register_variant,
    unregister_variant,
    variant_for,
)
from hardnet_export.errors import InputError, InputTypeError

torch = pytest.importorskip("torch")
toy_precision = pytest.importorskip("toy_precision")


@pytest.fixture(scope="module")
def toy() -> Iterator[Variant]:
    """The toy variant, registered for this module only."""
    variant = register_variant(toy_precision.RECORD)
    try:
        yield variant
    finally:
        unregister_variant(variant.name)
    assert "toy" not in precisions()


@pytest.fixture(scope="module")
def toy_graph(toy: Variant, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hardnet_export.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("toy-precision") / toy.file_name()
    return export_onnx(None, out, variant=toy, options=toy_precision.ToyOptions())


def test_the_toy_is_in_the_table(toy: Variant) -> None:
    assert get_variant("toy-fp16") is toy and variant_for("toy") is toy
    assert "toy" in precisions()
    assert toy.default_options(force=True) == toy_precision.ToyOptions(force=True)
    with pytest.raises(InputError, match="a variant called 'toy-fp16' exists"):
        register_variant(toy_precision.RECORD)
    with pytest.raises(InputError, match="built-in"):
        unregister_variant("fp16")


def test_the_toy_exports_loads_and_describes(
    toy: Variant, toy_graph: Path, patches: np.ndarray
) -> None:
    from hardnet_export.export.onnx import export_onnx

    meta = read_metadata(toy_graph)
    assert meta.precision == "toy" and meta.variant == "toy-fp16" and meta.quantisation is None
    assert meta.parity is not None and meta.parity["semantics"] == "host-kernels"
    describer = runtime.load(toy_graph, device="cpu")
    assert describer.precision == "toy"
    reference = runtime.load(None, backend="onnxruntime", device="cpu").describe(patches)
    cosine = (describer.describe(patches) * reference).sum(1)
    assert cosine.min() > 0.99
    with pytest.raises(InputTypeError, match="the toy-fp16 variant takes ToyOptions"):
        export_onnx(None, toy_graph.with_name("x.onnx"), variant=toy, options=object())


def test_check_passes_the_toy(toy: Variant, toy_graph: Path) -> None:
    from hardnet_export.check import check_artifact

    report = check_artifact(toy_graph, pairs=64)
    assert report.precision == "toy" and report.passed, report.format()


def test_the_benchmark_lists_the_toy(toy: Variant, tmp_path: Path) -> None:
    from hardnet_export.benchmark.targets import BenchContext, shipped_weights, variant_targets

    # The benchmark exports the toy itself, with its default options forced past any gate.
    context = BenchContext(tmp_path, 64, shipped_weights())
    found = {t.label: t for t in variant_targets(toy, "cpu", context)}
    assert "onnxruntime toy-fp16" in found
    assert read_metadata(found["onnxruntime toy-fp16"].artifact).precision == "toy"
