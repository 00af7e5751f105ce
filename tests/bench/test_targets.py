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


def test_cpu_targets_add_openvino_bf16_for_fp32_only() -> None:
    from hardnet_export.shipped import SHIPPED_ONNX

    both = ["onnxruntime", "openvino"]
    plain = targets.cpu_variant_targets("fp32", SHIPPED_ONNX, "cpu", both, bf16=False)
    assert [t.label for t in plain] == ["onnxruntime fp32", "openvino fp32"]
    with_bf16 = targets.cpu_variant_targets("fp32", SHIPPED_ONNX, "cpu", both, bf16=True)
    assert [t.label for t in with_bf16] == [
        "onnxruntime fp32",
        "openvino fp32",
        "openvino fp32 (bf16)",
    ]
    assert with_bf16[-1].options == {"inference_precision": "bf16"}
    int8 = targets.cpu_variant_targets("int8-cpu", SHIPPED_ONNX, "cpu", both, bf16=True)
    assert [t.label for t in int8] == ["onnxruntime int8-cpu", "openvino int8-cpu"]
    assert (
        targets.cpu_variant_targets("fp32", SHIPPED_ONNX, "cpu", ["onnxruntime"], bf16=True)[
            -1
        ].label
        == "onnxruntime fp32"
    )
