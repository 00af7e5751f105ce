"""Which of its shipped graphs a registered model's name runs on the CPU: the variants'
``name_rules`` without tuning, the measured speeds with it, and ``runtime.load(NAME)``
following them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import get_model, runtime
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.artifacts.models import models
from hardnet_export.artifacts.tuning import Choice, write_choice
from hardnet_export.artifacts.variants import get_variant
from hardnet_export.host import cpu_flags
from hardnet_export.runtime.policy import registered_graph

AVX2 = frozenset({"avx2", "fma"})
VNNI = frozenset({"avx512f", "avx512_vnni"})
BF16 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
AMX = frozenset({"amx_int8", "amx_bf16"})
ARM = frozenset({"asimd", "asimddp", "bf16"})

#: The shipped models whose name runs their INT8 graph on VNNI/AMX CPUs: every conv in int8
#: (hardnet-fast, hardnet-half), or a wide model (hardnet, 39.1 M multiply-adds per patch).
#: hardnet-quarter's keeps conv0 float at 2.7 M; hardnet-eighth ships none.
BY_RULE = {"hardnet", "hardnet-fast", "hardnet-half"}
#: ... and on AVX2 CPUs, whose int8 kernels clip 8-bit weights: the wide model's graph, made
#: with 7-bit weights (the all-int8 graphs have 8-bit ones).
BY_RULE_AVX2 = {"hardnet"}


@pytest.mark.parametrize("entry", models(), ids=lambda e: e.name)
@pytest.mark.parametrize(
    ("flags", "int8_cpu"),
    [(AVX2, "avx2"), (ARM, ""), (VNNI, "vnni"), (BF16, "vnni"), (AMX, "vnni")],
    ids=["avx2", "arm", "vnni", "vnni-bf16", "amx"],
)
def test_without_tuning_a_name_runs_its_int8_graph_where_int8_kernels_compute_it(
    entry, flags: frozenset[str], int8_cpu: str, tmp_path: Path
) -> None:
    pick = registered_graph(entry, flags, cache_dir=tmp_path)
    chosen = {"vnni": BY_RULE, "avx2": BY_RULE_AVX2, "": set()}[int8_cpu]
    if entry.name in chosen:
        assert pick.graph == entry.graph("int8-cpu") and pick.source == "rule"
        assert pick.why.startswith(f"{entry.name} runs {pick.graph.name}: ")
    else:
        assert pick.graph == entry.onnx and pick.why == ""


def test_a_mixed_graph_needs_a_wide_model() -> None:
    _, wide = get_variant("int8-cpu").name_rules
    metadata = read_metadata(get_model("hardnet").graph("int8-cpu"))
    assert metadata.quantisation is not None
    assert metadata.quantisation.settings["float_layers"]  # conv0 float
    assert wide.holds(metadata, AMX, get_model("hardnet").multiply_adds)
    assert not wide.holds(metadata, AMX, get_model("hardnet-quarter").multiply_adds)
    assert not wide.holds(metadata, AMX, None)  # unknown: not taken
    # Its 7-bit weights fit AVX2's saturating kernels; the same graph with 8-bit ones would not.
    assert metadata.made_for == "avx2"
    assert wide.holds(metadata, AVX2, get_model("hardnet").multiply_adds)
    eight_bit = dataclasses.replace(
        metadata, quantisation=dataclasses.replace(metadata.quantisation, isa="amx-int8")
    )
    assert wide.holds(eight_bit, AMX, get_model("hardnet").multiply_adds)
    assert not wide.holds(eight_bit, AVX2, get_model("hardnet").multiply_adds)
    assert not wide.holds(metadata, ARM, get_model("hardnet").multiply_adds)  # not measured
    quarter = read_metadata(get_model("hardnet-quarter").graph("int8-cpu"))
    assert not any(r.holds(quarter, AMX, 2_700_000) for r in get_variant("int8-cpu").name_rules)


def test_the_rule_needs_every_conv_int8_and_every_gate_passed_at_its_bar() -> None:
    rule, _ = get_variant("int8-cpu").name_rules
    metadata = read_metadata(get_model("hardnet-fast").graph("int8-cpu"))
    assert rule.holds(metadata, AMX) and not rule.holds(metadata, AVX2)
    quantisation = metadata.quantisation
    assert quantisation is not None

    def changed(**fields: object) -> object:
        return dataclasses.replace(
            metadata, quantisation=dataclasses.replace(quantisation, **fields)
        )

    float_conv0 = {**quantisation.settings, "float_layers": {"conv0": "fp32"}}
    assert not rule.holds(changed(settings=float_conv0), AMX)
    gate = next(iter(quantisation.gates.values()))
    low = {**quantisation.gates, "openvino": dataclasses.replace(gate, min_cosine=0.985)}
    assert not rule.holds(changed(gates=low), AMX)
    failed = {**quantisation.gates, "onnxruntime": dataclasses.replace(gate, passed=False)}
    assert not rule.holds(changed(gates=failed), AMX)
    assert not rule.holds(changed(gates={}), AMX)  # never gated: not taken
    assert not rule.holds(dataclasses.replace(metadata, quantisation=None), AMX)


def _tuned(path: Path, patches_per_s: float, cache: Path) -> None:
    choice = Choice("onnxruntime", source="tuned", patches_per_s=patches_per_s, why="test")
    write_choice(path, choice, [], cache)


def test_measured_speeds_decide_once_every_graph_was_tuned(tmp_path: Path) -> None:
    entry = get_model("hardnet-fast")
    fp32, int8 = entry.onnx, entry.graph("int8-cpu")
    # One graph tuned: the rule still decides (the INT8 graph where VNNI, else FP32).
    _tuned(fp32, 1000.0, tmp_path)
    assert registered_graph(entry, AVX2, tmp_path).graph == fp32
    assert registered_graph(entry, AMX, tmp_path).graph == int8
    # Both: the faster, whatever the rule would say.
    _tuned(int8, 900.0, tmp_path)
    pick = registered_graph(entry, AMX, tmp_path)
    assert pick.graph == fp32 and pick.source == "tuned"
    assert "1,000 patches/s" in pick.why and "900" in pick.why
    _tuned(int8, 1500.0, tmp_path)
    assert registered_graph(entry, AVX2, tmp_path).graph == int8


def test_load_by_name_runs_the_picked_graph_and_says_why() -> None:
    pytest.importorskip("onnxruntime")
    for name in ("hardnet-fast", "hardnet-quarter"):
        entry = get_model(name)
        pick = registered_graph(entry)
        by_name = runtime.load(name, device="cpu")
        assert by_name.artifact == pick.graph
        as_graph = runtime.load(pick.graph, device="cpu").choice
        assert by_name.choice.backend == as_graph.backend
        assert by_name.choice.options == as_graph.options
        assert by_name.choice.why.endswith(as_graph.why) and pick.why in by_name.choice.why
        # Whichever graph runs, the descriptors are the model's.
        patches = np.random.default_rng(1).integers(0, 256, (16, 32, 32), dtype=np.uint8)
        exact = runtime.load(entry.onnx, backend="onnxruntime").describe(patches)
        assert float((by_name.describe(patches) * exact).sum(1).min()) > 0.98
    # On this CPU: the rule's answer for its flags.
    fast = get_model("hardnet-fast")
    expected = (
        fast.graph("int8-cpu")
        if cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}
        else fast.onnx
    )
    assert registered_graph(fast, cache_dir=Path("/nonexistent-cache")).graph == expected


def test_what_the_caller_names_runs_the_fp32_graph() -> None:
    pytest.importorskip("openvino")
    entry = get_model("hardnet-fast")
    assert runtime.load(entry.name, backend="openvino").artifact == entry.onnx
    forced = runtime.load(entry.name, device="cpu", inference_precision="f32")
    assert forced.artifact == entry.onnx and forced.choice.options["inference_precision"] == "f32"


def test_models_lists_the_graph_each_name_runs_here(tmp_path: Path) -> None:
    from hardnet_export.runtime.policy import format_registered_graphs

    text = format_registered_graphs(AMX, tmp_path)
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert set(lines) == {entry.name for entry in models()}
    assert lines["hardnet-fast"] == [get_model("hardnet-fast").graph("int8-cpu").name, "rule"]
    assert lines["hardnet-eighth"] == [get_model("hardnet-eighth").onnx.name, "default"]
    on_avx2 = format_registered_graphs(AVX2, tmp_path)
    assert on_avx2.count("int8") == 1 and get_model("hardnet").graph("int8-cpu").name in on_avx2
    assert format_registered_graphs(ARM, tmp_path).count("int8") == 0


def test_a_shipped_graph_missing_from_the_installation_is_no_candidate(tmp_path: Path) -> None:
    import shutil

    entry = get_model("hardnet-fast")
    shutil.copyfile(entry.onnx, tmp_path / entry.onnx.name)
    slim = dataclasses.replace(entry, folder=tmp_path)
    assert registered_graph(slim, AMX, tmp_path / "cache").graph == slim.onnx
    shutil.copyfile(entry.graph("int8-cpu"), tmp_path / entry.graph("int8-cpu").name)
    assert registered_graph(slim, AMX, tmp_path / "cache").graph == slim.graph("int8-cpu")


def test_check_of_a_name_checks_the_graph_the_name_runs() -> None:
    pytest.importorskip("onnxruntime")
    from hardnet_export.check import check_artifact

    entry = get_model("hardnet-fast")
    report = check_artifact(entry.name, device="cpu", pairs=32)
    assert Path(report.artifact) == registered_graph(entry).graph
    assert report.passed and report.gate.min_cosine > 0.98
