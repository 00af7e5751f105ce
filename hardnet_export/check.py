"""``hardnet-export check``: does this artifact, on this machine, still match its FP32 model?

Run on the deployment machine (a robot, a server): the artifact is loaded with the backend and
device it would use there (ONNX Runtime on this CPU's int8 kernels, TensorRT on this GPU),
compared with the FP32 reference on held-out built-in pairs by the INT8 gate's own measure
(:func:`hardnet_export.calibration.gate.evaluate_gate`), and judged against the limits stored
in the artifact's metadata (the gate's defaults when it has none). The reference is the FP32
model the artifact's metadata names: the registered model whose weights hash matches (its
checkpoint, or its FP32 ONNX form where torch is not installed); otherwise the caller must
give one. Artifact and reference may be registered models' names (``hardnet``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.backends import backend_for
from hardnet_export.artifacts.provenance import Provenance
from hardnet_export.artifacts.quantisation import (
    DEFAULT_MAX_FPR95_LOSS,
    DEFAULT_MAX_NN_ACCURACY_LOSS,
    DEFAULT_MIN_COSINE,
    GateResult,
)
from hardnet_export.artifacts.tuning import Choice
from hardnet_export.errors import InputError, MissingFileError, Remedy
from hardnet_export.validate import check_int

DEFAULT_PAIRS = 2000


@dataclass(frozen=True)
class CheckReport:
    """The artifact against its reference on this machine."""

    artifact: str
    backend: str
    device: str
    precision: str
    semantics: str
    reference: str
    gate: GateResult
    host: dict[str, Any]
    #: How ``runtime.load`` ran it here (:meth:`hardnet_export.artifacts.tuning.Choice.to_dict`).
    choice: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return self.gate.passed

    def reason(self) -> str:
        """One sentence: why it failed (empty when it passed)."""
        failures = self.gate.failures()
        if not failures:
            return ""
        return (
            f"{Path(self.artifact).name} on {self.device} ({self.semantics}) is not within its "
            f"limits against {self.reference}: {'; '.join(failures)}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def format(self) -> str:
        """A short plain-text report for the terminal."""
        g = self.gate
        cpu = self.host.get("cpu", {})
        gpus = self.host.get("gpus") or []
        libraries = self.host.get("libraries", {})
        versions = ", ".join(f"{k} {v}" for k, v in libraries.items() if v)
        lines = [
            f"artifact   {self.artifact} ({self.precision}, {self.backend} on {self.device}, "
            f"{self.semantics})",
            f"reference  {self.reference}",
            *([f"path       {Choice.from_dict(self.choice).summary()}"] if self.choice else []),
            f"host       {cpu.get('model', 'unknown CPU')}, int8 kernels "
            f"{cpu.get('int8_isa', 'unknown')}"
            + "".join(f"; GPU {gpu.get('name')}" for gpu in gpus),
            f"libraries  {versions}",
            f"pairs      {g.pairs} held-out pairs from {g.source}",
            f"cosine     worst {g.min_cosine:.4f} (limit {g.min_cosine_limit:g}), "
            f"mean {g.mean_cosine:.5f}; NN agreement {g.nn_agreement:.4f}",
            f"FPR95      {g.fpr95_reference:.2f}% -> {g.fpr95_candidate:.2f}% "
            f"({g.fpr95_loss_pp:+.2f} pp, limit {g.max_fpr95_loss_pp:g})",
            f"NN acc     {g.nn_accuracy_reference:.2f}% -> {g.nn_accuracy_candidate:.2f}% "
            f"({-g.nn_accuracy_loss_pp:+.2f} pp, limit -{g.max_nn_accuracy_loss_pp:g})",
            "PASSED" if self.passed else f"FAILED: {self.reason()}",
        ]
        return "\n".join(lines)


def read_provenance(path: Path) -> Provenance:
    """The provenance of an artifact, read as the record of the backend that opens it says.

    Raises:
        MissingFileError: no artifact.
        InputError: unreadable metadata or sidecar, or a suffix no backend reads.
    """
    if not path.is_file():
        raise MissingFileError(f"artifact not found: {path}")
    provenance: Provenance = backend_for(path).read_provenance(path)
    return provenance


def resolve_reference(artifact: Path, provenance: Provenance, reference: Path | None) -> Path:
    """The FP32 model to compare ``artifact`` with: ``reference`` (a path or a registered
    model's name), else the registered model whose checkpoint has the artifact's weights hash,
    else, for a ready-made graph a registered model ships (``ShippedModel.graphs``: weights
    fine-tuned from it by QAT, which do not ship), that model.

    Raises:
        InputError: no ``reference`` given and the artifact's weights are not a shipped
            model's (or it does not say whose they are).
    """
    from hardnet_export.artifacts.models import models, resolve_model

    if reference is not None:
        return resolve_model(reference, "auto")
    from hardnet_export._io import sha256_file
    from hardnet_export.host import installed

    weights = provenance.weights_sha256
    for entry in models():
        if weights and entry.weights.is_file() and weights == sha256_file(entry.weights):
            # The same FP32 weights either way; the ONNX form runs where torch is not installed.
            torch_here = installed("torch")
            return entry.weights if torch_here or not entry.onnx.is_file() else entry.onnx
    for entry in models():
        shipped = [entry.folder / f"{entry.stem}.{variant}.onnx" for variant in entry.graphs]
        if artifact.resolve() in {path.resolve() for path in shipped}:
            return entry.weights if installed("torch") or not entry.onnx.is_file() else entry.onnx
    named = f"weights sha256 {weights[:12]}..." if weights else "no weights hash"
    raise InputError(
        f"{artifact.name} carries {named}, which is not the shipped model (nor another "
        "registered one): pass the FP32 model it was exported from as {remedy} (a .pth "
        "checkpoint or an fp32 .onnx)",
        remedy=Remedy({"reference": ...}),
    )


def gate_limits(gate: GateResult | None) -> dict[str, float]:
    """The limits ``gate`` was judged by (the gate's defaults for None), as
    :func:`~hardnet_export.calibration.gate.evaluate_gate` takes them."""
    if gate is None:
        return {
            "max_fpr95_loss": DEFAULT_MAX_FPR95_LOSS,
            "max_nn_accuracy_loss": DEFAULT_MAX_NN_ACCURACY_LOSS,
            "min_cosine": DEFAULT_MIN_COSINE,
        }
    return {
        "max_fpr95_loss": gate.max_fpr95_loss_pp,
        "max_nn_accuracy_loss": gate.max_nn_accuracy_loss_pp,
        "min_cosine": gate.min_cosine_limit,
    }


def check_artifact(
    artifact: str | Path,
    reference: str | Path | None = None,
    *,
    device: str | None = None,
    pairs: int = DEFAULT_PAIRS,
    seed: int = 0,
    **options: Any,
) -> CheckReport:
    """Compare ``artifact``, run as this machine would run it, with its FP32 reference.

    Args:
        artifact: an ``.onnx``, ``.engine`` or ``.pth`` file, or a registered model's name:
            on the CPU with no options the graph ``runtime.load(name)`` runs here
            (:func:`~hardnet_export.runtime.policy.registered_graph`), elsewhere its
            checkpoint where torch is installed, else its FP32 graph.
        reference: the FP32 model (a path or a registered name); default: the registered
            model whose weights hash the artifact's matches.
        device: the artifact's device (``runtime.load``'s); None = what it would pick.
        pairs: held-out built-in pairs to compare on.
        seed: seed of those pairs.
        options: backend options for the artifact (``intra_op_num_threads``, ...).

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable artifact or reference, or no
            reference where one is needed.
    """
    from hardnet_export import runtime
    from hardnet_export.artifacts.models import as_path, lookup
    from hardnet_export.benchmark.machine import cpu_info, gpu_info, library_versions
    from hardnet_export.calibration.gate import evaluate_gate
    from hardnet_export.data.builtin import validation_pairs
    from hardnet_export.runtime.base import patch_describer
    from hardnet_export.runtime.policy import on_cpu, registered_graph

    entry = lookup(artifact)
    if entry is None:
        artifact = as_path(artifact)
    elif not options and on_cpu(device):
        # What a load of the name runs here, so the check speaks for it.
        artifact = registered_graph(entry).graph
    else:
        artifact = entry.file("auto")
    check_int("pairs", pairs, low=2, high=1_000_000)
    check_int("seed", seed, low=0, high=2**63 - 1)
    provenance = read_provenance(artifact)
    if artifact.suffix == ".onnx":
        from hardnet_export.artifacts.metadata import check_image_graph_opset, read_metadata

        check_image_graph_opset(artifact, read_metadata(artifact), purpose="check")
    reference_path = resolve_reference(
        artifact, provenance, None if reference is None else Path(reference)
    )
    # check compares descriptors of the same patches: an image graph cannot take them.
    candidate = patch_describer(runtime.load(artifact, device=device, **options), "check")
    # The reference runs as written, by its suffix's own backend: never a tuned path.
    exact = backend_for(reference_path).name
    reference_model = patch_describer(
        runtime.load(reference_path, backend=exact, device="cpu"), "a reference"
    )
    if reference_model.precision not in ("fp32", "unknown"):
        raise InputError(
            f"the reference must be an FP32 model, but {reference_path.name} is "
            f"{reference_model.precision}"
        )
    semantics = candidate.semantics
    gate = evaluate_gate(
        reference_model.describe,
        candidate.describe,
        validation_pairs(pairs, seed),
        force=True,
        semantics=semantics,
        **gate_limits(provenance.gate),
    )
    return CheckReport(
        artifact=str(artifact),
        backend=candidate.backend,
        device=candidate.device,
        precision=candidate.precision,
        semantics=semantics,
        reference=str(reference_path),
        gate=gate,
        host={"cpu": cpu_info(), "gpus": gpu_info(), "libraries": library_versions()},
        choice=None if candidate.choice is None else candidate.choice.to_dict(),
    )
