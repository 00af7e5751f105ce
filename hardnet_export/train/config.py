"""What a training run depends on (torch-free, so the CLI can show its defaults cheaply)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from hardnet_export.artifacts.models import check_width, get_layout
from hardnet_export.artifacts.quantisation import QAT_TARGETS
from hardnet_export.data.sources import packages, split_specs
from hardnet_export.errors import InputError, Placeholder, Remedy
from hardnet_export.validate import check_bool, check_float, check_int, check_str

BATCH_REDUCTIONS = ("min", "average", "random")
LOSS_TYPES = ("triplet_margin", "softmax", "contrastive")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: What the distillation term compares (hardnet_export.train.losses.distillation_loss).
DISTILL_KINDS = ("descriptors", "distances")
#: The options that apply to quantisation-aware training only.
QAT_OPTIONS = (
    "qat_target",
    "qat_observe_steps",
    "qat_reduce_range",
    "qat_clip",
    "qat_inner_clip",
    "qat_exact_input",
)
# Fields that define the run: a resumed run must agree on all of them.
#: Bounds far beyond any real run, so a typo fails at once instead of allocating for hours.
MAX_STEPS = 100_000_000
MAX_BATCH_SIZE = 1 << 20
RECIPE_FIELDS = (
    "data",
    "batch_size",
    "lr",
    "momentum",
    "dampening",
    "weight_decay",
    "margin",
    "anchor_swap",
    "batch_reduce",
    "loss_type",
    "augment",
    "dropout",
    "seed",
    "global_hardest",
    "init",
    "width",
    "layout",
    "teacher",
    "distill_weight",
    "distill_kind",
    "qat",
    *QAT_OPTIONS,
)


def default_num_workers() -> int:
    """Data-loader workers: one core is left to the compute (1 on a 2-core machine), at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults are the paper's recipe.

    Args:
        data: dataset specs of hardnet_export.data.sources (builtin[:KEY=VALUE...],
            phototour:ROOT/NAME, hpatches:ROOT[:SPLIT]), combined in turn.
        out: run folder: checkpoint.pth (resumable), final.pth, log.csv.
        steps: optimiser steps; the learning rate decays linearly to 0 over them.
        batch_size: pairs per step (global over DDP ranks).
        lr: SGD learning rate (10 with dampening 0.9 acts like 1 with plain momentum).
        momentum: SGD momentum.
        dampening: SGD dampening.
        weight_decay: SGD weight decay.
        margin: triplet (and contrastive) margin.
        anchor_swap: also use anchors as negatives.
        batch_reduce: negatives: min (hardest in batch), average or random.
        loss_type: triplet_margin, softmax or contrastive.
        augment: per-pair random transpose and horizontal flip, the same for both patches.
        dropout: dropout rate before the last conv.
        seed: seeds the data stream, augmentation and dropout.
        device: auto (CUDA if present), cpu, cuda or cuda:N.
        precision: auto (bf16 autocast on CUDA where supported, else fp16; fp32 on CPU),
            fp32, bf16 or fp16 (bf16 trains about 2.8x faster on CPUs with native bf16).
        num_workers: data-loader processes generating pairs; -1 picks one per spare core,
            0 generates in the training process.
        checkpoint_every: write checkpoint.pth every this many steps (and at the end).
        log_every: steps between CSV log rows.
        resume: continue from OUT/checkpoint.pth. With the same settings the result
            equals the uninterrupted run; a different steps (the one setting that may
            change) shortens or lengthens the run, the rate decaying linearly from where it
            is to 0 at the new end.
        overwrite: train afresh into an OUT that holds an earlier run, deleting its
            checkpoint.pth, final.pth, log.csv and tensorboard/ (without it such an OUT is
            refused).
        stop_after: end this run (with a checkpoint) after this many steps, for time-boxed
            jobs; --resume continues. Unset runs to steps.
        global_hardest: under torchrun, mine the hardest negatives across the global batch.
        threads: torch intra-op threads; 0 keeps torch's default.
        progress: show a progress bar.
        init: start from these weights (a checkpoint or a registered model name: fine-tuning)
            instead of a fresh initialisation.
        width: multiplier of every conv's channels (0.5: about a quarter of the
            multiply-adds, 0.25: about a fifteenth); default 1, or the width of the --init
            weights.
        layout: the conv stack's shape: l2net (the paper's), strided (CPU-shaped: the
            first conv at stride 2, 16 channels throughout, 1.0 M multiply-adds at width 1)
            or stem4 (strided with the second conv at stride 2 too, 0.48 M); default l2net,
            or the layout of the --init weights.
        teacher: distil from this model (a registered model name or a checkpoint): the loss
            gains distill_weight x the distillation term; the teacher runs in eval mode,
            without gradients, in the student's precision, and is recorded in the
            checkpoints.
        distill_weight: weight of the distillation term (with --teacher).
        distill_kind: descriptors (mean squared L2 between the student's and the teacher's
            descriptors of the same patches) or distances (mean squared difference between
            their in-batch anchor-positive distance matrices).
        qat: quantisation-aware fine-tuning of the init weights: train under the fake
            quantisation of the INT8 Q/DQ graph with every conv in int8
            (:mod:`hardnet_export.train.qat`); the checkpoints record the activation ranges,
            which an INT8 export of them takes as its scales. Needs init; runs in fp32.
        qat_target: the INT8 flavour to fake-quantise for: cpu (uint8 activations),
            tensorrt (symmetric int8 activations) or both (alternating step by step).
        qat_observe_steps: steps whose batches set the activation ranges (a moving
            average of their 99.999 % quantiles); then the ranges freeze.
        qat_reduce_range: 7-bit weights in the cpu flavour, for x86 CPUs without VNNI,
            whose 16-bit int8 pair sums would saturate.
        qat_clip: the share of each activation's values its range leaves out at each end
            (1e-5: the 99.999 % quantile, as the percentile calibration). A larger share
            resolves ordinary patches finer and clips the rare spikes of near-flat ones.
        qat_inner_clip: the share left out at the activations after the first conv (every
            later conv's input, the last conv's output); by default ``qat_clip``'s. The
            standardised patch gains from a tight range (its spikes are near-flat patches'
            noise) where the inner activations lose by one (their largest values are the
            strongest responses of the worst patches).
        qat_exact_input: the first conv reads the grey levels exactly (uint8 at scale 1) and
            the standardisation moves after it, so no rounding of the standardised patch
            remains (cpu flavour only; the export writes the graph in that form).
    """

    data: list[str] = field(default_factory=lambda: ["builtin"])
    out: str = "runs/hardnet"
    steps: int = 1000
    batch_size: int = 1024
    lr: float = 10.0
    momentum: float = 0.9
    dampening: float = 0.9
    weight_decay: float = 1e-4
    margin: float = 1.0
    anchor_swap: bool = True
    batch_reduce: str = "min"
    loss_type: str = "triplet_margin"
    augment: bool = True
    dropout: float = 0.3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    num_workers: int = -1
    checkpoint_every: int = 500
    log_every: int = 10
    resume: bool = False
    overwrite: bool = False
    stop_after: int | None = None
    global_hardest: bool = False
    threads: int = 0
    progress: bool = True
    init: str | None = None
    width: float | None = None
    layout: str | None = None
    teacher: str | None = None
    distill_weight: float = 1.0
    distill_kind: str = "descriptors"
    qat: bool = False
    qat_target: str = "both"
    qat_observe_steps: int = 50
    qat_reduce_range: bool = False
    qat_clip: float = 1e-5
    qat_inner_clip: float | None = None
    qat_exact_input: bool = False

    def __post_init__(self) -> None:
        self.data = split_specs(self.data)
        if not self.data:
            raise InputError(
                "no training data given: pass {remedy} (or a dataset spec)",
                remedy=Remedy({"data": "builtin"}),
            )
        self.out = str(self.out)
        for name in ("steps", "checkpoint_every", "log_every"):
            check_int(name, getattr(self, name), low=1, high=MAX_STEPS)
        if type(self.batch_size) is int and self.batch_size < 2:
            raise InputError(
                f"batch_size must be at least 2 (the loss needs negatives), got {self.batch_size}"
            )
        check_int("batch_size", self.batch_size, low=2, high=MAX_BATCH_SIZE)
        if self.stop_after is not None:
            check_int("stop_after", self.stop_after, low=1, high=MAX_STEPS)
        check_float("lr", self.lr, low=0.0, low_open=True, high=1e6)
        for name in ("momentum", "dampening", "dropout"):
            check_float(name, getattr(self, name), low=0.0, high=1.0, high_open=True)
        # NaN passed "< 0" and trained to a NaN model.
        check_float("weight_decay", self.weight_decay, low=0.0, high=1.0)
        check_float("margin", self.margin, low=0.0, high=1e3)
        check_int("threads", self.threads, low=0, high=4096)
        check_int("num_workers", self.num_workers, low=-1, high=256)
        for name in ("anchor_swap", "augment", "resume", "global_hardest", "progress", "overwrite"):
            check_bool(name, getattr(self, name))
        if self.batch_reduce not in BATCH_REDUCTIONS:
            raise InputError(
                f"batch_reduce must be one of {BATCH_REDUCTIONS}, got {self.batch_reduce!r}"
            )
        if self.loss_type not in LOSS_TYPES:
            raise InputError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.num_workers < -1:
            raise InputError(f"num_workers must be >= 0 (or -1 for auto), got {self.num_workers}")
        if self.resume and self.overwrite:
            raise InputError(
                "resume continues the run in OUT and overwrite replaces it: pass one of them"
            )
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        if self.width is not None:
            self.width = check_width(self.width)
        if self.layout is not None:
            self.layout = get_layout(self.layout).name
        for name in ("init", "teacher"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, check_str(name, str(value)))
        check_float("distill_weight", self.distill_weight, low=0.0, high=1e6)
        if self.distill_kind not in DISTILL_KINDS:
            raise InputError(
                f"distill_kind must be one of {DISTILL_KINDS}, got {self.distill_kind!r}"
            )
        self._check_qat()
        if self.teacher is None:
            # Without a teacher there is no distillation term: a weight or kind set for it
            # would be ignored, and the run would not be the one asked for.
            defaults = {f.name: f.default for f in fields(self)}
            for name in ("distill_weight", "distill_kind"):
                if getattr(self, name) != defaults[name]:
                    raise InputError(
                        f"{name} {getattr(self, name)!r} sets up a distillation term, which "
                        "only a run with a teacher has: give teacher too, or leave "
                        f"{name} at {defaults[name]!r}"
                    )

    def _check_qat(self) -> None:
        check_bool("qat", self.qat)
        check_bool("qat_reduce_range", self.qat_reduce_range)
        check_bool("qat_exact_input", self.qat_exact_input)
        check_int("qat_observe_steps", self.qat_observe_steps, low=1, high=MAX_STEPS)
        check_float("qat_clip", self.qat_clip, low=0.0, high=0.01)
        if self.qat_inner_clip is not None:
            check_float("qat_inner_clip", self.qat_inner_clip, low=0.0, high=0.01)
        if self.qat_target not in QAT_TARGETS:
            raise InputError(
                f"qat_target must be one of {', '.join(QAT_TARGETS)}, got {self.qat_target!r}"
            )
        if self.qat and self.qat_exact_input and self.qat_target != "cpu":
            raise InputError(
                "{qat_exact_input} is a cpu-flavour form (TensorRT's symmetric int8 holds no "
                f"grey level range at scale 1), but qat_target is {self.qat_target!r}: set "
                "{qat_target} to cpu",
                remedies={
                    "qat_exact_input": Remedy({"qat_exact_input": True}),
                    "qat_target": Remedy({"qat_target": "cpu"}),
                },
            )
        if not self.qat:
            defaults = {f.name: f.default for f in fields(self)}
            for name in QAT_OPTIONS:
                if getattr(self, name) != defaults[name]:
                    raise InputError(
                        f"{{{name}}} applies to quantisation-aware training only: add {{qat}}",
                        remedies={name: Remedy({name: ...}), "qat": Remedy({"qat": True})},
                    )
            return
        if self.init is None:
            raise InputError(
                "{qat} fine-tunes trained weights: give them with {init}",
                remedies={
                    "qat": Remedy({"qat": True}),
                    "init": Remedy({"init": Placeholder("MODEL")}),
                },
            )
        if self.precision not in ("auto", "fp32"):
            # Autocast rounds the convs' inputs to 16 bits: not the graph's int8 grid.
            raise InputError(
                f"{{qat}} trains in fp32 (the fake quantisation must be exact), not "
                f"{self.precision}: drop {{precision}} or pass fp32",
                remedies={"qat": Remedy({"qat": True}), "precision": Remedy({"precision": "fp32"})},
            )

    def packages(self) -> tuple[str, ...]:
        """The optional packages (import names) this run needs, for
        :func:`hardnet_export.host.require` before any work."""
        return ("torch", *packages(self.data))

    def recipe(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RECIPE_FIELDS}
