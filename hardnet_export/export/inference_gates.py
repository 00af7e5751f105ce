"""Gates of the arithmetic a backend may run a graph in, measured at export.

The CPU rule table (:class:`~hardnet_export.artifacts.backends.CpuRule`) may send a graph to a
backend in an arithmetic that changes its descriptors: OpenVINO with bf16 float layers, on
CPUs that compute bf16 natively, runs the shipped FP32 graph 2-4x faster than ONNX Runtime's
FP32. Whether that keeps the descriptors depends on the weights (measured on an AVX512-BF16
EPYC, worst held-out cosine over textured patches: ``hardnet`` 0.994, ``hardnet-half``
0.991, ``hardnet-quarter`` 0.993, ``hardnet-eighth`` 0.990; mean 0.9998; NN accuracy within
0.1 point), so such a rule is ``gated``: the export runs the graph that way on the
held-out built-in pairs, against the FP32 graph run exactly, with the INT8 gate's measure and
limits, and records the result in the graph's metadata (``inference_gates``). ``runtime.load``
takes a gated rule only for a graph that passed it. Gates are measured only where this CPU
has the arithmetic (another CPU's graph can be tuned there: ``hardnet-export tune``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hardnet_export.artifacts.backends import backends
from hardnet_export.artifacts.quantisation import DEFAULT_MIN_COSINE, GateResult
from hardnet_export.host import BUILTIN_PHOTO_PACKAGES, cpu_flags, installed

if TYPE_CHECKING:
    import onnx

    from hardnet_export.data.types import MatchedPairs

#: Held-out pairs each gate draws (as the INT8 gate's default).
GATE_PAIRS = 2000


def inference_gates(
    fp32: onnx.ModelProto,
    graph: onnx.ModelProto,
    precision: str,
    *,
    pairs: MatchedPairs | None = None,
    flags: frozenset[str] | None = None,
) -> dict[str, GateResult]:
    """Each gated CPU rule that applies to a ``precision`` graph on this CPU (``flags``),
    measured: ``graph`` run as the rule says against ``fp32`` run exactly on ONNX Runtime.

    Returns an empty mapping where no gated rule applies here, or the held-out photos are
    not installed (the rules then do not apply to the graph; ``tune`` can measure it).
    """
    from hardnet_export.calibration.gate import evaluate_gate
    from hardnet_export.runtime.onnxruntime_backend import ort_describe

    flags = cpu_flags() if flags is None else flags
    wanted = [
        (backend, rule)
        for backend in backends()
        if backend.gate is not None and backend.available()
        for rule in backend.cpu_rules
        if rule.gated and rule.applies(precision, flags)
    ]
    if not wanted:
        return {}
    if pairs is None:
        if not all(installed(m) for m in BUILTIN_PHOTO_PACKAGES):
            return {}
        from hardnet_export.data.builtin import validation_pairs

        pairs = validation_pairs(GATE_PAIRS)
    reference = ort_describe(fp32)
    gates: dict[str, GateResult] = {}
    for backend, rule in wanted:
        key = rule.gate_key(backend.name)
        describe_on = backend.gate_function()
        if key in gates or describe_on is None:
            continue
        gates[key] = evaluate_gate(
            reference,
            describe_on(graph, **rule.options),
            pairs,
            min_cosine=DEFAULT_MIN_COSINE,
            force=True,  # recorded, not raised: a failed gate only keeps the rule away
            label=f"{precision} on {key}",
        )
    return gates
