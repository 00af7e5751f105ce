"""A uint8 graph input feeds exactly one node, a Cast, in every graph the project makes or
ships: TensorRT's ONNX parser wants nothing else beside that Cast (NVIDIA/TensorRT#3985), and
torch's exporter reads the batch size and image sides with ``Shape`` straight from the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hardnet_export.calibration.dataset import CalibrationSet
from hardnet_export.errors import InputError
from hardnet_export.export.common import cast_uint8_inputs_once, uint8_input_consumers
from hardnet_export.export.int8 import quantize_qdq

WEIGHTS = Path(__file__).resolve().parents[2] / "hardnet_export" / "weights"
SHIPPED = sorted(WEIGHTS.glob("*.onnx"))


def assert_one_cast(model: onnx.ModelProto, what: str) -> None:
    readers = uint8_input_consumers(model)
    assert readers, f"{what}: no uint8 input"
    for name, nodes in readers.items():
        assert [n.op_type for n in nodes] == ["Cast"], (what, name, [n.op_type for n in nodes])


def test_the_shipped_graphs_are_there() -> None:
    # The walk below must not pass by walking nothing.
    assert len(SHIPPED) >= 5, SHIPPED
    assert any(".int8-" in p.name for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_graphs(path: Path) -> None:
    assert_one_cast(onnx.load(str(path)), path.name)


def test_patch_graphs_of_every_precision(
    onnx_model: Path,
    fp16_onnx: Path,
    fp32_graph: onnx.ModelProto,
    calibration: CalibrationSet,
) -> None:
    assert_one_cast(onnx.load(str(onnx_model)), "fp32")
    assert_one_cast(onnx.load(str(fp16_onnx)), "fp16")
    for target, isa in (("tensorrt", None), ("cpu", "avx512-vnni")):
        graph = quantize_qdq(fp32_graph, calibration, target=target, method="minmax", isa=isa)
        assert_one_cast(graph, f"int8-{target}")


def test_image_graphs(image_graph: Path, image_graph_fp16: Path) -> None:
    for path in (image_graph, image_graph_fp16):
        model = onnx.load(str(path))
        assert_one_cast(model, path.name)
        # The shape readers now read the Cast's output: the graph still runs and checks.
        onnx.checker.check_model(model, full_check=True)


def _toy(readers: list[str]) -> onnx.ModelProto:
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)]
    outputs = [helper.make_tensor_value_info("xf", TensorProto.FLOAT, ["n", 4])]
    for i, op in enumerate(readers):
        nodes.insert(0, helper.make_node(op, ["x"], [f"r{i}"]))
        kind, shape = {"Neg": (TensorProto.UINT8, ["n", 4]), "Shape": (TensorProto.INT64, [2])}.get(
            op, (TensorProto.INT64, [])
        )
        outputs.append(helper.make_tensor_value_info(f"r{i}", kind, shape))
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.UINT8, ["n", 4])], outputs
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_shape_readers_move_onto_the_cast_in_topological_order() -> None:
    import onnxruntime as ort

    model = _toy(["Shape", "Size"])
    cast_uint8_inputs_once(model)
    assert_one_cast(model, "toy")
    onnx.checker.check_model(model, full_check=True)
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    _, shape, size = session.run(None, {"x": x})
    assert list(shape) == [3, 4] and int(size) == 12


@pytest.mark.parametrize(
    ("readers", "casts"), [(["Neg"], 1), ([], 0)], ids=["value-reader", "no-cast"]
)
def test_other_readers_are_refused(readers: list[str], casts: int) -> None:
    model = _toy(readers)
    if not casts:
        del model.graph.node[-1]
        del model.graph.output[0]
    with pytest.raises(InputError, match="uint8 input 'x' is read by"):
        cast_uint8_inputs_once(model)
