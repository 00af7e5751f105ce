"""The model shipped inside the package: loads without a path and beats OpenCV SIFT."""

from __future__ import annotations

import pytest
import torch

from hardnet_export.data.stereo import stereo_pairs
from hardnet_export.evaluation.pairs import evaluate_matched_pairs
from hardnet_export.evaluation.sift import sift_describer
from hardnet_export.model import SHIPPED_WEIGHTS, load_model, read_checkpoint


def test_load_model_without_a_path_loads_the_shipped_weights() -> None:
    model = load_model()
    assert not model.training
    shipped = read_checkpoint(SHIPPED_WEIGHTS)
    # Built-in photos only (with view-change options), all the way down the fine-tuning chain.
    meta = shipped.meta
    while meta:
        assert meta["data"] and all(s.split(":")[0] == "builtin" for s in meta["data"])
        meta = meta["config"].get("init_meta")
    assert "optimizer" not in shipped.extra  # inference weights only
    assert SHIPPED_WEIGHTS.stat().st_size <= 6 * 2**20
    for key, value in model.state_dict().items():
        assert torch.equal(value, shipped.state_dict[key]), key


def test_shipped_model_beats_sift_on_stereo_pairs() -> None:
    torch.set_num_threads(1)
    model = load_model()

    def describe(patches):  # type: ignore[no-untyped-def]
        with torch.inference_mode():
            return model(torch.from_numpy(patches)[:, None]).numpy()

    # A different seed from the model card's evaluation: a fresh subset of the stereo pair.
    pairs = stereo_pairs(400, seed=7)
    ours = evaluate_matched_pairs(describe, pairs)
    sift = evaluate_matched_pairs(sift_describer(), pairs)
    assert ours["nn_accuracy"] > sift["nn_accuracy"]
    assert ours["fpr95"] < sift["fpr95"]


def test_the_torch_free_form_is_the_same_model() -> None:
    # The FP32 ONNX graph beside the checkpoint: exported from exactly these weights, with the
    # same descriptors; runtime.load() uses it where torch is missing or ONNX Runtime is asked.
    from hardnet_export import runtime
    from hardnet_export._io import sha256_file
    from hardnet_export.artifacts.metadata import read_metadata
    from hardnet_export.data.builtin import validation_pairs
    from hardnet_export.shipped import SHIPPED_ONNX

    meta = read_metadata(SHIPPED_ONNX)
    assert meta.variant == "fp32" and meta.weights_sha256 == sha256_file(SHIPPED_WEIGHTS)
    assert SHIPPED_ONNX.stat().st_size <= 6 * 2**20
    onnx_model = runtime.load(backend="onnxruntime")
    assert onnx_model.artifact == SHIPPED_ONNX and onnx_model.backend == "onnxruntime"
    patches = validation_pairs(100, seed=3).anchors
    with torch.inference_mode():
        want = load_model()(torch.from_numpy(patches)[:, None]).numpy()
    got = onnx_model.describe(patches)
    assert float((got * want).sum(1).min()) >= 0.9999


def test_shipped_graphs_are_gated_int8_graphs_of_their_model() -> None:
    # A ready-made graph (ShippedModel.graphs) has every conv in int8 (conv0 alone may stay
    # float: its one input channel gains nothing from int8 kernels, and its int8 input rounds
    # faint texture), passed its gate at a worst cosine of 0.99, and is either fine-tuned from
    # its model by quantisation-aware training or the export of the model's own weights.
    from hardnet_export._io import sha256_file
    from hardnet_export.artifacts.metadata import read_metadata
    from hardnet_export.artifacts.models import models
    from hardnet_export.errors import InputError

    for entry in models():
        for variant in entry.graphs:
            graph = read_metadata(entry.graph(variant))
            quantisation = graph.quantisation
            assert graph.variant == variant and quantisation is not None, variant
            assert set(quantisation.settings["float_layers"]) <= {"conv0"}, (entry.name, variant)
            # Fine-tuned from this model (directly, or down the chain of --init weights), or
            # exported from its own weights.
            inits, meta = [], dict(graph.weights_provenance or {})
            while meta:
                inits.append(meta.get("config", {}).get("init"))
                meta = meta.get("config", {}).get("init_meta")
            own = graph.weights_sha256 == sha256_file(entry.weights)
            assert own or entry.name in inits, (entry.name, variant, inits)
            gate = quantisation.gate
            assert gate is not None and gate.passed and gate.min_cosine >= 0.99, entry.name
            assert entry.graph(variant).name in entry.card.read_text(encoding="utf-8")
        with pytest.raises(InputError, match="ships no"):
            entry.graph("fp16")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shipped_graphs_pass_check_on_other_held_out_samples(seed: int) -> None:
    # The gate's worst patch is a statistic of its own 2000 pairs; a shipped graph must also
    # stay within its limits on other held-out samples, run the way this host runs it.
    # (hardnet-quarter's all-int8 graph fell to 0.962 on seed 2's pairs, a near-flat patch
    # whose faint texture its int8 input rounded; its graph keeps conv0 float now.)
    from hardnet_export.artifacts.models import models
    from hardnet_export.check import check_artifact

    for entry in models():
        for variant in entry.graphs:
            report = check_artifact(entry.graph(variant), seed=seed)
            assert report.passed, (entry.name, variant, seed, report.reason())


def test_check_compares_a_shipped_graph_with_its_model() -> None:
    # Its fine-tuned FP32 weights do not ship; the model it was fine-tuned from does.
    from hardnet_export.artifacts.models import models
    from hardnet_export.check import read_provenance, resolve_reference

    for entry in models():
        for variant in entry.graphs:
            graph = entry.graph(variant)
            reference = resolve_reference(graph, read_provenance(graph), None)
            assert reference in (entry.weights, entry.onnx), (entry.name, variant)
