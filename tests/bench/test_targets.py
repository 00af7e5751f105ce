"""The per-frame benchmark's default image graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hardnet_export.benchmark import targets


def test_image_graph_targets_are_fp32_and_fp16_image_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    asked: list[tuple[str, bool]] = []

    def export(weights: Path, variant: Any, cache: Path, *, with_extraction: bool) -> Path:
        # Exporting two 8-level image graphs takes minutes: record what is asked for.
        asked.append((variant.name, with_extraction))
        return cache / variant.file_name("hardnet.image")

    monkeypatch.setattr(targets, "exported_onnx", export)
    found = targets.image_graph_targets("cpu", tmp_path)
    assert asked == [("fp32", True), ("fp16", True)]
    assert [t.label for t in found] == [
        "onnxruntime fp32 image graph",
        "onnxruntime fp16 image graph",
    ]
    assert all(t.backend == "onnxruntime" and t.device == "cpu" for t in found)
    assert found[0].artifact == tmp_path / "hardnet.image.fp32.onnx"
    assert targets.image_graph_targets("cuda", tmp_path) == []


def test_cpu_targets_add_openvino_bf16_for_fp32_only(tmp_path: Path) -> None:
    from hardnet_export.artifacts.variants import get_variant
    from hardnet_export.shipped import SHIPPED_ONNX, SHIPPED_WEIGHTS

    class Exported(targets.BenchContext):
        def graph(self, variant: object) -> Path:
            return SHIPPED_ONNX  # the hooks' labels and options, not an export, are tested

    both = ["onnxruntime", "openvino"]
    plain = Exported(tmp_path, 64, SHIPPED_WEIGHTS, bf16=False)
    with_bf16 = Exported(tmp_path, 64, SHIPPED_WEIGHTS, bf16=True)
    fp32, int8 = get_variant("fp32"), get_variant("int8-cpu")
    found = targets.variant_targets(fp32, "cpu", plain, both)
    assert [t.label for t in found] == ["onnxruntime fp32", "openvino fp32"]
    found = targets.variant_targets(fp32, "cpu", with_bf16, both)
    assert [t.label for t in found] == [
        "onnxruntime fp32",
        "openvino fp32",
        "openvino fp32 (bf16)",
    ]
    assert found[-1].options == {"inference_precision": "bf16"}
    found = targets.variant_targets(int8, "cpu", with_bf16, both)
    assert [t.label for t in found] == ["onnxruntime int8-cpu", "openvino int8-cpu"]
    only_ort = targets.variant_targets(fp32, "cpu", with_bf16, ["onnxruntime"])
    assert [t.label for t in only_ort] == ["onnxruntime fp32"]
    assert targets.variant_targets(fp32, "cuda", with_bf16, both) == []
