"""A backend, a precision and a model are each one record plus their own file(s).

This test adds a toy of each from this folder only (``toy_backend.py`` and the records below)
and runs them through ``runtime.load``, ``describe``, ``check``, the benchmark's target list
and the export, without any other project file knowing about them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.backends import backend_for, register_backend, unregister_backend
from hardnet_export.artifacts.models import ShippedModel, register_model, unregister_model

torch = pytest.importorskip("torch")
toy_backend = pytest.importorskip("toy_backend")

TOY_MODEL = "toy-hardnet"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedModel]:
    """The toy backend and the toy model, registered for this module only."""
    from hardnet_export.export.onnx import export_onnx
    from hardnet_export.model import HardNet, save_checkpoint

    folder = tmp_path_factory.mktemp("toy-model")
    torch.manual_seed(3)
    weights = save_checkpoint(folder / "toy.pth", HardNet(width=0.0625).eval())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "toy.md").write_text(f"# toy-hardnet\n\nsha256 `{digest}`, width 0.0625\n")
    entry = register_model(
        ShippedModel(TOY_MODEL, 0.0625, "toy", "a toy HardNet, width 1/16", folder=folder)
    )
    register_backend(toy_backend.RECORD)
    try:
        export_onnx(TOY_MODEL, entry.onnx, parity=False)
        yield entry
    finally:
        unregister_backend("toy")
        unregister_model(TOY_MODEL)


def test_the_toy_backend_loads_and_describes_by_its_suffix(
    toy: ShippedModel, tmp_path: Path, patches: np.ndarray
) -> None:
    graph = tmp_path / "model.toy"
    graph.write_bytes(toy.onnx.read_bytes())
    assert backend_for(graph).name == "toy"
    with runtime.load(graph, threads=2, max_batch=7) as describer:
        assert describer.backend == "toy" and describer.precision == "fp32"
        out = describer.describe(patches)
    reference = runtime.load(toy.onnx, backend="onnxruntime", device="cpu").describe(patches)
    assert out.shape == (len(patches), 128)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    with pytest.raises(TypeError, match="for the toy backend; its options: threads"):
        runtime.load(graph, num_threads=2)


def test_the_toy_model_loads_by_name_everywhere(toy: ShippedModel, patches: np.ndarray) -> None:
    from hardnet_export.model import load_model

    assert load_model(TOY_MODEL).width == 0.0625
    # On the CPU a name runs its FP32 graph the way runtime.load runs that graph there.
    by_name = runtime.load(TOY_MODEL, device="cpu")
    assert by_name.artifact == toy.onnx
    assert by_name.choice == runtime.load(toy.onnx, device="cpu").choice
    checkpoint = runtime.load(TOY_MODEL, backend="torch", device="cpu")
    assert checkpoint.backend == "torch" and checkpoint.artifact == toy.weights
    graph = runtime.load(TOY_MODEL, backend="onnxruntime", device="cpu")
    np.testing.assert_allclose(checkpoint.describe(patches), graph.describe(patches), atol=1e-4)


def test_check_finds_the_toy_models_reference_for_a_toy_artifact(
    toy: ShippedModel, tmp_path: Path
) -> None:
    from hardnet_export.check import check_artifact

    graph = tmp_path / "exported.toy"
    graph.write_bytes(toy.onnx.read_bytes())
    report = check_artifact(graph, pairs=64)
    assert report.backend == "toy" and report.reference == str(toy.weights)
    assert report.passed, report.format()


def test_the_benchmark_lists_the_toy_backend(toy: ShippedModel, tmp_path: Path) -> None:
    from hardnet_export.artifacts.variants import get_variant
    from hardnet_export.benchmark.run import load_target
    from hardnet_export.benchmark.targets import BenchContext, variant_targets

    context = BenchContext(tmp_path, 64, toy.weights)
    found = variant_targets(get_variant("fp32"), "cpu", context)
    toys = [t for t in found if t.backend == "toy"]
    assert [t.label for t in toys] == ["toy fp32"] and toys[0].artifact.suffix == ".toy"
    with load_target(toys[0], max_batch=64, threads=1) as describer:
        assert describer.backend == "toy"
