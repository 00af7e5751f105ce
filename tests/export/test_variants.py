"""The variants table drives every export: each entry exports, loads and describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.variants import (
    VARIANTS,
    Variant,
    flavours,
    get_variant,
    precisions,
    variant_for,
)
from hardnet_export.errors import InputError

pytest.importorskip("torch")


def test_table_is_consistent() -> None:
    names = [v.name for v in VARIANTS]
    assert len(set(names)) == len(names) and names[0] == "fp32"
    assert set(precisions()) == {"fp32", "fp16", "int8"}
    assert set(flavours("int8")) == {"tensorrt", "cpu"}
    for variant in VARIANTS:
        assert (variant.flavour is not None) == (variant.precision == "int8")
        # Each INT8 flavour takes the INT8 options; the float variants take none.
        assert (variant.options_type() is not None) == (variant.precision == "int8")
        assert not (variant.dla and not variant.tensorrt)  # DLA engines are TensorRT engines
        assert variant.graph_function() is not None or variant.name == "fp32"
        assert get_variant(variant.name) is variant
        assert variant_for(variant.precision, variant.flavour) is variant
        assert variant.file_name() == f"model.{variant.name}.onnx"
    assert get_variant("fp32").dla is False  # DLA runs FP16 and INT8 only
    with pytest.raises(InputError, match="unknown variant 'int4'; known: fp32, fp16"):
        get_variant("int4")
    with pytest.raises(InputError, match="int8 target must be one of tensorrt, cpu"):
        variant_for("int8", "gpu")


@pytest.fixture(scope="module")
def exports(
    checkpoint: Path, parity_patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    from hardnet_export.data.types import MatchedPairs
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("variants")
    gate = MatchedPairs(parity_patches[:100], parity_patches[100:200], name="parity")
    int8 = Int8Options(calibration_size=128, gate_pairs=gate, force=True)
    return {
        v.name: export_onnx(
            checkpoint,
            folder / v.file_name(),
            variant=v,
            parity=False,
            options=int8 if v.options is not None else None,
        )
        for v in VARIANTS
    }


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_variant_exports_loads_and_describes(
    variant: Variant, exports: dict[str, Path], parity_patches: np.ndarray
) -> None:
    path = exports[variant.name]
    meta = read_metadata(path)
    assert meta.variant == variant.name and meta.precision == variant.precision
    assert meta.flavour == variant.flavour
    d = runtime.load(path, graph_optimization_level="disable")
    assert d.precision == variant.precision
    out = d.describe(parity_patches[:50])
    reference = runtime.load(exports["fp32"]).describe(parity_patches[:50])
    cosine = (out * reference).sum(1)
    assert out.shape == (50, 128) and cosine.mean() > 0.98


@pytest.mark.slow
def test_tensorrt_refuses_what_the_table_says_it_cannot_build(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    from hardnet_export.export.tensorrt import build_engine

    with pytest.raises(InputError, match="int8-cpu variant, which TensorRT does not build"):
        build_engine(exports["int8-cpu"], tmp_path / "m.engine")


def test_default_options_force_only_a_gate() -> None:
    from hardnet_export.export.int8 import Int8Options

    assert get_variant("fp16").default_options(force=True) is None
    assert get_variant("int8-cpu").default_options() == Int8Options()
    assert get_variant("int8-cpu").default_options(force=True) == Int8Options(force=True)
    assert get_variant("int8-tensorrt").check_options(None) == Int8Options()
