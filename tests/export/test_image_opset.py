"""Image graphs stay at opset <= 19: from opset 20, GridSample's bilinear mode is written
``linear``, which TensorRT's ONNX importer runs as nearest (NVIDIA/TensorRT#4646). The export
refuses such an opset; ``build_engine`` and ``check`` refuse such a graph made elsewhere,
before TensorRT or any backend is touched."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from hardnet_export.artifacts.metadata import MAX_IMAGE_GRAPH_OPSET, graph_opset
from hardnet_export.check import check_artifact
from hardnet_export.errors import InputError
from hardnet_export.export.image_graph import export_image_graph
from hardnet_export.export.tensorrt import build_engine

WEIGHTS = Path(__file__).resolve().parents[2] / "hardnet_export" / "weights"


def test_the_cap_is_19() -> None:
    assert MAX_IMAGE_GRAPH_OPSET == 19


def test_export_refuses_opset_20(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="opset 18..19, got 20.*GridSample"):
        export_image_graph(None, tmp_path / "image.onnx", opset=20)
    assert not (tmp_path / "image.onnx").exists()


@pytest.mark.parametrize("path", sorted(WEIGHTS.glob("*.onnx")), ids=lambda p: p.name)
def test_graph_opset_reads_what_onnx_reads(path: Path) -> None:
    model = onnx.load(str(path))
    want = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert graph_opset(path) == want


def test_graph_opset_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0a\xff\xff\xff")  # a length that runs past the end
    with pytest.raises(InputError, match=f"{bad} is not a readable ONNX file"):
        graph_opset(bad)


@pytest.fixture(scope="module")
def image_graph_opset20(image_graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's image graph with its default-domain opset stamped 20 (what another
    exporter, or an older hardnet-export, would have written)."""
    model = onnx.load(str(image_graph))
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 20
    out = tmp_path_factory.mktemp("opset20") / "image.opset20.onnx"
    onnx.save_model(model, str(out))
    assert graph_opset(out) == 20 and graph_opset(image_graph) <= MAX_IMAGE_GRAPH_OPSET
    return out


def test_build_engine_refuses_it_before_tensorrt(image_graph_opset20: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        build_engine(image_graph_opset20, tmp_path / "image.engine")
    message = str(info.value)
    assert "\n" not in message
    assert str(image_graph_opset20) in message and "opset 20" in message
    assert "a TensorRT engine needs opset <= 19" in message


def test_check_refuses_it(image_graph_opset20: Path) -> None:
    with pytest.raises(InputError, match=r"opset 20; check needs opset <= 19") as info:
        check_artifact(image_graph_opset20, pairs=10)
    assert "\n" not in str(info.value)
