"""The HardNet trainer: the paper's recipe, exact resume, workers for data, DDP for scale-out.

Determinism: batch ``k`` (pairs and flip/transpose) is a function of ``(seed, k, rank,
world)``, and the torch RNG (dropout) is re-seeded from ``(seed, k, rank)`` before every
step, so the RNG state at step ``k`` is implied by the step itself. A run resumed from a
checkpoint at step ``k`` therefore computes exactly what the uninterrupted run computed
(bit-exact on CPU with the same thread count; on CUDA up to kernel non-determinism).

Stops keep that promise: SIGINT and SIGTERM are acted on between steps only (see
:class:`~hardnet_export.train.run_folder.SignalStop`), and the checkpoint then written holds
the log's running loss as well, so the resumed log matches too.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hardnet_export._io import atomic_write_text, check_folder, sha256_file
from hardnet_export._progress import progress_bar
from hardnet_export.artifacts.models import DEFAULT_LAYOUT, registered_name, resolve_model
from hardnet_export.errors import (
    HardnetError,
    InputError,
    MissingDependencyError,
    MissingFileError,
    Remedy,
    StateError,
    TrainingInterrupted,
)
from hardnet_export.host import require
from hardnet_export.model import (
    HardNet,
    checkpoint_layout,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from hardnet_export.train.config import RECIPE_FIELDS, TrainConfig, default_num_workers
from hardnet_export.train.distributed import (
    DistInfo,
    gather_with_grad,
    init_distributed,
    shutdown_distributed,
)
from hardnet_export.train.losses import distillation_loss, hardnet_loss
from hardnet_export.train.qat import QatHardNet
from hardnet_export.train.run_folder import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    LOG_NAME,
    TENSORBOARD_NAME,
    SignalStop,
    clear_run,
    ignore_stop_signals,
    owned,
    refuse_fresh_start,
    remove_stale_temporaries,
)
from hardnet_export.train.sources import PairSource, build_source, flip_transpose


class TrainingDivergedError(HardnetError, RuntimeError):
    """The loss became NaN or infinite; the message says at which step, and to lower ``lr``."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when a device is present, else CPU; explicit CUDA without one fails."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MissingDependencyError(f"device {name!r} asked for, but torch sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def learning_rate(config: TrainConfig, step: int, anchor: tuple[int, float] = (0, 0.0)) -> float:
    """The paper's schedule: linear decay from ``lr`` to 0 over all steps, set every step.

    ``anchor = (k0, lr0)`` is where the line starts: ``(0, config.lr)`` for a run that kept
    its length (the default); a run resumed with a different ``steps`` decays from the rate
    it had reached, ``lr0`` at step ``k0``, to 0 at the new end, so the rate never jumps.
    """
    k0, lr0 = anchor if anchor[0] > 0 else (0, config.lr)
    return lr0 * (config.steps - step) / (config.steps - k0)


class BatchDataset(torch.utils.data.Dataset):
    """Map-style view of the pair stream: item ``k`` is this rank's share of batch ``k``,
    augmented; the trainer's sampler walks ``k`` from the resume step on."""

    def __init__(self, source: PairSource, config: TrainConfig, dist: DistInfo) -> None:
        self.source = source
        self.batch_size = config.batch_size
        self.augment = config.augment
        self.seed = config.seed
        self.dist = dist

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        a, p = self.source.batch(k, self.batch_size, self.dist.rank, self.dist.world)
        if self.augment:
            rng = np.random.default_rng([self.seed, k, self.dist.rank, 0xF11B])
            a, p = flip_transpose(a, p, rng)
        return (
            k,
            torch.from_numpy(np.ascontiguousarray(a)),
            torch.from_numpy(np.ascontiguousarray(p)),
        )


def _worker_init(_: int) -> None:
    import cv2

    # One core per worker: OpenCV's own thread pool would fight the training process.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ignore_stop_signals()


def _batches(
    dataset: BatchDataset, start: int, stop: int, num_workers: int, pin: bool
) -> Generator[tuple[int, torch.Tensor, torch.Tensor], None, None]:
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=num_workers,
        pin_memory=pin,
        worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=4 if num_workers else None,
        # Forked workers can deadlock in OpenCV's or OpenMP's thread pools that the parent
        # already started; spawned ones start clean.
        multiprocessing_context="spawn" if num_workers else None,
    )
    yield from loader


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.default_rng([seed, step, rank, 0xD40]).integers(0, 2**62))


class _Log:
    """CSV log (continued on resume) and TensorBoard when it is installed.

    ``resume_step``: the step the run continues from. Rows after it were written by a run
    that ended before its next checkpoint; the resumed run writes them again, so they go.
    ``loss`` is the whole loss; a run with a teacher adds a ``distill`` column, the mean of
    its distillation term (unweighted) over the same steps.
    """

    FIELDS = ("step", "loss", "lr", "pairs_per_s", "elapsed_s")
    DISTILL_FIELDS = (*FIELDS, "distill")

    def __init__(
        self,
        folder: Path,
        enabled: bool,
        resume_step: int | None = None,
        *,
        distill: bool = False,
    ) -> None:
        self.enabled = enabled
        self.fields = self.DISTILL_FIELDS if distill else self.FIELDS
        self.path = folder / LOG_NAME
        self.tb: Any = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(self.fields)
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the events of the steps after the checkpoint from TensorBoard.
            purge = None if resume_step is None else resume_step + 1
            self.tb = SummaryWriter(str(folder / TENSORBOARD_NAME), purge_step=purge)
        except ImportError:
            self.tb = None

    def _truncate(self, last_step: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [
            row
            for row in rows[1:]
            if len(row) == len(self.fields) and row[0].isdigit() and int(row[0]) <= last_step
        ]
        if kept == rows[1:]:
            return
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(self.fields)
        writer.writerows(kept)
        atomic_write_text(self.path, text.getvalue())

    def row(
        self,
        step: int,
        loss: float,
        lr: float,
        pairs_per_s: float,
        elapsed: float,
        distill: float | None = None,
    ) -> None:
        if not self.enabled:
            return
        cells = [step, f"{loss:.6f}", f"{lr:.6g}", f"{pairs_per_s:.1f}", f"{elapsed:.1f}"]
        if len(self.fields) > len(self.FIELDS):
            cells.append(f"{distill:.6f}" if distill is not None else "")
        self._csv.writerow(cells)
        self._file.flush()
        if self.tb is not None:
            self.tb.add_scalar("loss", loss, step)
            if distill is not None:
                self.tb.add_scalar("distill", distill, step)
            self.tb.add_scalar("lr", lr, step)
            self.tb.add_scalar("pairs_per_s", pairs_per_s, step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self.tb is not None:
                self.tb.close()


def _progress(enabled: bool) -> Any:
    return progress_bar(
        "loss {task.fields[loss]:.4f}",
        "lr {task.fields[lr]:.3g}",
        "{task.fields[pairs_per_s]:.0f} pairs/s",
        enabled=enabled,
    )


def _load_resume(
    path: Path,
    config: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    teacher_record: dict[str, Any] | None = None,
) -> tuple[int, tuple[int, float], dict[str, Any]]:
    """Load the run's state; returns its step, the learning-rate anchor and the checkpoint's
    extra entries (the log's running loss among them)."""
    if not path.is_file():
        raise MissingFileError(f"nothing to resume: {path} does not exist")
    ckpt = read_checkpoint(path)
    saved = ckpt.meta.get("config", {})
    # The width is compared as the networks' widths: the recorded setting is None for "the
    # default", which says nothing to a user who asks for 0.5 (or for 1, the same network).
    diff = [
        f"{k}: {saved[k]!r} -> {getattr(config, k)!r}"
        for k in RECIPE_FIELDS
        if k not in ("width", "layout") and k in saved and saved[k] != config.recipe()[k]
    ]
    run_width = float(ckpt.meta.get("width") or 1.0)
    asked = config.width
    if asked is None:
        # Unset means 1, or the width of the init weights (the run's own when init agrees).
        asked = run_width if config.init is not None else 1.0
    if asked != run_width:
        default = " (the default)" if config.width is None else ""
        diff.append(f"width: {run_width:g} -> {asked:g}{default}")
    # The layout likewise, as the networks' layouts (unset: l2net, or the init's).
    run_layout = checkpoint_layout(ckpt.meta, str(path))
    asked_layout = config.layout or (run_layout if config.init is not None else DEFAULT_LAYOUT)
    if asked_layout != run_layout:
        diff.append(f"layout: {run_layout} -> {asked_layout}")
    if diff:
        raise InputError(f"cannot resume {path}: the run's settings differ ({', '.join(diff)})")
    was, now = saved.get("teacher_provenance"), teacher_record
    if isinstance(was, dict) and now is not None and was.get("sha256") != now["sha256"]:
        raise InputError(
            f"cannot resume {path}: its teacher {config.teacher} is another file now "
            f"(sha256 {str(was.get('sha256'))[:12]}... when the run began, "
            f"{now['sha256'][:12]}... now)"
        )
    if "optimizer" not in ckpt.extra:
        raise InputError(f"cannot resume {path}: it holds no optimizer state")
    step = int(ckpt.extra["step"])
    if step > config.steps:
        raise InputError(
            f"cannot resume {path} at step {step} with {{remedy}}",
            remedy=Remedy({"steps": config.steps}),
        )
    model.load_state_dict(ckpt.state_dict)
    optimizer.load_state_dict(ckpt.extra["optimizer"])
    anchor = (int(ckpt.extra.get("lr_anchor_step", 0)), float(ckpt.extra.get("lr_anchor", 0.0)))
    saved_steps = int(saved.get("steps", config.steps))
    if saved_steps != config.steps and step < config.steps:
        # A new length: decay on from the rate reached so far (see learning_rate).
        old = TrainConfig(**{**dataclasses.asdict(config), "steps": saved_steps})
        anchor = (step, learning_rate(old, step, anchor)) if step > 0 else (0, 0.0)
    return step, anchor, ckpt.extra


def train(config: TrainConfig) -> Path:
    """Train HardNet as ``config`` says; returns the path of the final weights (``final.pth``).

    Launched with ``torchrun --nproc_per_node=K`` it trains with DistributedDataParallel:
    each rank trains on its ``batch_size / K`` share of every batch.

    The run folder is locked for the run: a second trainer on it is refused, and so is a
    fresh start on a folder holding an earlier run (``resume`` continues it, ``overwrite``
    replaces it). Called from the main thread, SIGINT and SIGTERM stop the run after the
    current step with a checkpoint that ``resume`` continues bit-exactly on CPU.

    Raises:
        TrainingInterrupted: on SIGINT or SIGTERM; see there for what was written.
        MissingDependencyError: a package the data needs is not installed (checked first).
        TrainingDivergedError: the loss became NaN or infinite (a RuntimeError).
    """
    require("training", *config.packages())
    device = resolve_device(config.device)
    dist = init_distributed(device.type == "cuda")
    try:
        with SignalStop() as signals:
            return _train(config, device, dist, signals)
    finally:
        shutdown_distributed(dist)


@contextlib.contextmanager
def _claimed(
    out: Path, config: TrainConfig, dist: DistInfo, device: torch.device
) -> Iterator[None]:
    """Rank 0 takes the run folder for the run; every rank learns whether it could, or the
    others would wait in their first collective for a rank that has given up."""
    with contextlib.ExitStack() as stack:
        error: BaseException | None = None
        if dist.is_main:
            try:
                stack.enter_context(owned(out))
                # Under the lock no other trainer is writing, so any temporary is debris.
                remove_stale_temporaries(out)
                if config.overwrite:
                    clear_run(out)
                elif not config.resume:
                    refuse_fresh_start(out)
            except BaseException as exc:  # re-raised below, after the ranks agree
                error = exc
        if dist.enabled:
            ok = torch.tensor([0 if error else 1], device=device)
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
            if error is None and not int(ok.item()):
                raise StateError(f"rank 0 could not take the run folder {out}; see its error")
        if error is not None:
            raise error
        yield


def _stop_signal(signals: SignalStop, dist: DistInfo, device: torch.device) -> int | None:
    """The signal that asks this run to stop now; under DDP every rank stops at the same step
    (a Ctrl-C does not reach all ranks between the same two steps)."""
    if not dist.enabled:
        return signals.signum
    flag = torch.tensor([signals.signum or 0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item()) or None


def _train(config: TrainConfig, device: torch.device, dist: DistInfo, signals: SignalStop) -> Path:
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if config.batch_size % dist.world:
        raise InputError(
            f"batch_size {config.batch_size} must divide evenly over {dist.world} processes"
        )
    if config.batch_size // dist.world < 2 and not config.global_hardest:
        raise InputError("each process needs at least 2 pairs per step")
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} exists and is not a folder")
    check_folder(out, "run folder")
    ckpt_path = out / CHECKPOINT_NAME
    if config.resume and not ckpt_path.is_file():
        raise MissingFileError(f"nothing to resume: {ckpt_path} does not exist")
    # Everything that can be checked is checked before the run folder is made: a refused
    # start leaves nothing behind.
    start = _prepare(config, device, dist, ckpt_path)
    with _claimed(out, config, dist, device):
        return _run(config, device, dist, signals, start)


def _prepare(config: TrainConfig, device: torch.device, dist: DistInfo, ckpt_path: Path) -> _Start:
    """The pair source, the network's width and initial weights (from ``--init`` or, on
    resume, the run's own width), the teacher, and the config the checkpoints record."""
    source = build_source(config.data, config.seed)
    source.check_batch_size(config.batch_size)
    init_state = None
    width = 1.0 if config.width is None else config.width
    layout = config.layout or DEFAULT_LAYOUT
    if config.resume:
        # The run's own network: the width and layout its checkpoint holds (the recipe check
        # on loading refuses different ones).
        own = read_checkpoint(ckpt_path).meta
        width = float(own.get("width", width))
        layout = checkpoint_layout(own, str(ckpt_path))
    elif config.init:
        # The same strict loading as inference: any HardNet checkpoint format, or a name.
        init_model = load_model(config.init)
        if config.width is not None and init_model.width != config.width:
            raise InputError(
                f"{{init}} is a width {init_model.width:g} network, but width "
                f"{config.width:g} was asked for: pass {{width}} or drop it",
                remedies={
                    "init": Remedy({"init": config.init}),
                    "width": Remedy({"width": init_model.width}),
                },
            )
        if config.layout is not None and init_model.layout != config.layout:
            raise InputError(
                f"{{init}} is a {init_model.layout} network, but layout {config.layout} was "
                "asked for: pass {layout} or drop it",
                remedies={
                    "init": Remedy({"init": config.init}),
                    "layout": Remedy({"layout": init_model.layout}),
                },
            )
        width, layout = init_model.width, init_model.layout
        init_state = init_model.state_dict()
    meta_config = {**dataclasses.asdict(config), "world_size": dist.world, "device": str(device)}
    init_file = _existing_model_file(config.init)
    if init_file is not None:
        # The lineage travels with the weights: a fine-tuned model's card can say what its
        # starting point was trained on and for how long (nested for chains).
        meta_config["init_meta"] = read_checkpoint(init_file).meta
    teacher, teacher_record = None, None
    if config.teacher is not None:
        teacher, teacher_record = load_teacher(config.teacher)
        meta_config["teacher_provenance"] = teacher_record
    return _Start(source, init_state, meta_config, width, layout, teacher, teacher_record)


def _existing_model_file(model: str | None) -> Path | None:
    """The checkpoint ``model`` (a path or a registered name) is, if it exists here."""
    if model is None:
        return None
    try:
        path = resolve_model(model, "weights")
    except (InputError, MissingFileError):
        return None
    return path if path.is_file() else None


def load_teacher(teacher: str | Path) -> tuple[HardNet, dict[str, Any]]:
    """The teacher network (eval mode, no gradients) and what the student's checkpoints
    record of it: ``model`` (as given), ``name`` (the registered model, if it is one),
    ``file`` (a registered model's file name, else the path), ``sha256``, ``width``, and
    the ``data`` and ``step`` it was trained with."""
    path = resolve_model(teacher, "weights")
    model = load_model(path)
    model.requires_grad_(False)
    meta = read_checkpoint(path).meta
    name = registered_name(path)
    record = {
        "model": str(teacher),
        "name": name,
        # A registered teacher's folder is wherever the package is installed: its file name
        # and sha256 identify it on every machine.
        "file": path.name if name else str(path),
        "sha256": sha256_file(path),
        "width": model.width,
        "layout": model.layout,
        "data": meta.get("data"),
        "step": meta.get("step"),
    }
    return model.eval(), record


@dataclasses.dataclass(frozen=True)
class _Start:
    """What the run starts from, checked before the run folder is taken: the pair source,
    the network's width, layout and initial weights, the teacher, and the config its
    checkpoints record."""

    source: PairSource
    init_state: dict[str, torch.Tensor] | None
    meta_config: dict[str, Any]
    width: float = 1.0
    layout: str = DEFAULT_LAYOUT
    teacher: HardNet | None = None
    teacher_record: dict[str, Any] | None = None


@dataclasses.dataclass
class _State:
    """The run's state between steps: the step reached, the step of ``checkpoint.pth``
    (None: none yet), and what a checkpoint holds besides the weights (the optimizer, the
    learning-rate anchor and the log's running sums since its last row)."""

    model: HardNet
    optimizer: torch.optim.Optimizer
    anchor: tuple[int, float]
    step: int
    saved: int | None
    loss_sum: torch.Tensor
    distill_sum: torch.Tensor
    loss_count: int
    qat: QatHardNet | None = None

    def qat_meta(self, config: TrainConfig) -> dict[str, Any]:
        """The checkpoint metadata's ``qat`` record (empty for a run without QAT)."""
        if self.qat is None or not self.qat.observed():
            return {}
        record = self.qat.record(
            observe_steps=config.qat_observe_steps, steps=self.step, init=config.init
        )
        return {"qat": record.to_dict()}

    def checkpoint(self, path: Path, config: TrainConfig, start: _Start, dist: DistInfo) -> None:
        """Write ``checkpoint.pth`` (rank 0) at the step reached; every rank records it."""
        if dist.is_main:
            qat_extra = {} if self.qat is None else {"qat_ranges": self.qat.ranges.cpu().clone()}
            save_checkpoint(
                path,
                self.model,
                config=start.meta_config,
                step=self.step,
                data=config.data,
                meta=self.qat_meta(config),
                extra={
                    **qat_extra,
                    "optimizer": self.optimizer.state_dict(),
                    "step": self.step,
                    "lr_anchor_step": self.anchor[0],
                    "lr_anchor": self.anchor[1],
                    "log_loss_sum": self.loss_sum.detach().cpu().clone(),
                    "log_distill_sum": self.distill_sum.detach().cpu().clone(),
                    "log_loss_count": self.loss_count,
                },
            )
        self.saved = self.step

    def take_means(self, distill: bool) -> tuple[float, float | None]:
        """The mean loss (and distillation term) since the last log row; starts the next.

        Raises:
            TrainingDivergedError: the loss is NaN or infinite (the run diverged).
        """
        loss = float(self.loss_sum) / self.loss_count
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"training diverged at step {self.step} (loss {loss}); lower {{remedy}}",
                remedy=Remedy({"lr": ...}),
            )
        distill_mean = float(self.distill_sum) / self.loss_count if distill else None
        self.loss_sum.zero_()
        self.distill_sum.zero_()
        self.loss_count = 0
        return loss, distill_mean


class _Step:
    """One optimisation step on one batch: forward (and the teacher's targets), the loss,
    backward and the update, with its RNG seeded from the step alone (see the module
    docstring)."""

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        dist: DistInfo,
        net: torch.nn.Module,
        teacher: HardNet | None,
        optimizer: torch.optim.Optimizer,
        qat: QatHardNet | None = None,
    ) -> None:
        self.config, self.device, self.dist = config, device, dist
        self.net, self.teacher, self.optimizer = net, teacher, optimizer
        self.qat = qat
        # QAT's fake quantisation is exact in fp32 only (the config refuses bf16 and fp16).
        self.amp_dtype = None if qat else resolve_precision(config.precision, device)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and device.type == "cuda"
        )

    def __call__(
        self, step: int, anchors: torch.Tensor, positives: torch.Tensor, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Train on batch ``step``; returns its loss and distillation term (None without a
        teacher), detached from the graph.

        Shape:
            - anchors, positives: (B, 32, 32) uint8, this rank's share of the batch.
        """
        config, dist = self.config, self.dist
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(_step_seed(config.seed, step, dist.rank))
        if self.qat is not None:
            # "both" alternates the flavours, so each sees every other batch; the ranges
            # (shared: the same tensors) settle over the first steps, then freeze.
            self.qat.flavour = self.qat.targets[step % len(self.qat.targets)]
            self.qat.observing = step < config.qat_observe_steps
        x = torch.cat([anchors, positives]).to(self.device, non_blocking=True)[:, None]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):  # fmt: skip
            desc = self.net(x)
            if self.teacher is not None:
                # The teacher sees the same patches in the same precision.
                with torch.no_grad():
                    target = self.teacher(x)
        desc_a, desc_p = desc.float().chunk(2)
        if config.global_hardest:
            desc_a = gather_with_grad(desc_a, dist)
            desc_p = gather_with_grad(desc_p, dist)
        generator = torch.Generator().manual_seed(_step_seed(config.seed, step, dist.world + 1))
        loss = hardnet_loss(
            desc_a,
            desc_p,
            margin=config.margin,
            anchor_swap=config.anchor_swap,
            batch_reduce=config.batch_reduce,
            loss_type=config.loss_type,
            generator=generator,
        )
        distill = None
        if self.teacher is not None:
            target_a, target_p = target.float().chunk(2)
            if config.global_hardest:
                target_a = gather_with_grad(target_a, dist)
                target_p = gather_with_grad(target_p, dist)
            distill = distillation_loss(
                desc_a, desc_p, target_a, target_p, kind=config.distill_kind
            )
            loss = loss + config.distill_weight * distill
        # DDP averages gradients; with the global loss each rank holds only its part.
        scale = dist.world if config.global_hardest else 1
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * scale).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), None if distill is None else distill.detach()


def _begin(config: TrainConfig, device: torch.device, start: _Start, ckpt_path: Path) -> _State:
    """The network, its optimizer and the state to go on from: fresh (from the init weights,
    if any) or the resumed checkpoint's."""
    torch.manual_seed(config.seed)
    model = HardNet(dropout=config.dropout, width=start.width, layout=start.layout).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        dampening=config.dampening,
        weight_decay=config.weight_decay,
    )
    if start.init_state is not None:
        model.load_state_dict(start.init_state)
    qat = None
    if config.qat:
        targets = ("cpu", "tensorrt") if config.qat_target == "both" else (config.qat_target,)
        qat = QatHardNet(
            model,
            targets,
            reduce_range=config.qat_reduce_range,
            clip=config.qat_clip,
            inner_clip=config.qat_inner_clip,
            exact_input=config.qat_exact_input,
        ).to(device)
    step, anchor, saved = 0, (0, 0.0), None
    resumed: dict[str, Any] = {}
    if config.resume:
        step, anchor, resumed = _load_resume(
            ckpt_path, config, model, optimizer, start.teacher_record
        )
        saved = step
        if qat is not None:
            ranges = resumed.get("qat_ranges")
            if not isinstance(ranges, torch.Tensor) or ranges.shape != qat.ranges.shape:
                raise InputError(f"cannot resume {ckpt_path}: it holds no QAT ranges")
            qat.ranges.copy_(ranges.to(device))
    # The log's running mean over the steps since its last row is part of the state:
    # without it a run resumed between two rows would log a different first mean.
    return _State(
        model,
        optimizer,
        anchor,
        step,
        saved,
        loss_sum=resumed.get("log_loss_sum", torch.zeros(())).to(device),
        distill_sum=resumed.get("log_distill_sum", torch.zeros(())).to(device),
        loss_count=int(resumed.get("log_loss_count", 0)),
        qat=qat,
    )


def _run(
    config: TrainConfig, device: torch.device, dist: DistInfo, signals: SignalStop, start: _Start
) -> Path:
    out = Path(config.out)
    ckpt_path, final_path = out / CHECKPOINT_NAME, out / FINAL_NAME
    state: _State | None = None
    try:
        teacher = start.teacher.to(device).eval() if start.teacher is not None else None
        state = _begin(config, device, start, ckpt_path)
        first = state.step
        net: torch.nn.Module = state.qat if state.qat is not None else state.model
        if dist.enabled:
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None
            )
        train_step = _Step(config, device, dist, net, teacher, state.optimizer, state.qat)
        num_workers = default_num_workers() if config.num_workers < 0 else config.num_workers
        stop = (
            config.steps
            if config.stop_after is None
            else min(config.steps, first + config.stop_after)
        )
        log = _Log(out, dist.is_main, first if config.resume else None, distill=teacher is not None)
        dataset = BatchDataset(start.source, config, dist)
        net.train()
        t0 = time.perf_counter()
        batches = _batches(dataset, first, stop, num_workers, device.type == "cuda")
        stop_signal = None
        try:
            with _progress(config.progress and dist.is_main) as bar:
                task = bar.add_task(
                    "train", total=config.steps, completed=first, loss=math.nan, lr=config.lr,
                    pairs_per_s=0.0,
                )  # fmt: skip
                while state.step < stop:
                    # Only here, between whole steps, is the state one that resumes exactly.
                    stop_signal = _stop_signal(signals, dist, device)
                    if stop_signal is not None:
                        break
                    k, anchors, positives = next(batches)
                    if k != state.step:
                        raise RuntimeError(
                            f"data loader delivered batch {k}, expected {state.step}"
                        )
                    lr = learning_rate(config, state.step, state.anchor)
                    loss, distill = train_step(state.step, anchors, positives, lr)
                    if distill is not None:
                        state.distill_sum += distill
                    state.step += 1
                    state.loss_sum += loss
                    state.loss_count += 1
                    if state.step % config.log_every == 0 or state.step == stop:
                        mean, distill_mean = state.take_means(teacher is not None)
                        elapsed = time.perf_counter() - t0
                        rate = (state.step - first) * config.batch_size / max(elapsed, 1e-9)
                        log.row(state.step, mean, lr, rate, elapsed, distill_mean)
                        bar.update(task, loss=mean, lr=lr, pairs_per_s=rate)
                    bar.update(task, completed=state.step)
                    if state.step % config.checkpoint_every == 0 and state.step < stop:
                        state.checkpoint(ckpt_path, config, start, dist)
        finally:
            batches.close()
            log.close()
        if state.saved != state.step:
            state.checkpoint(ckpt_path, config, start, dist)
        if stop_signal is not None:
            raise TrainingInterrupted(
                stop_signal, step=state.step, steps=config.steps, checkpoint=str(ckpt_path)
            )
        if state.step == config.steps and dist.is_main:
            save_checkpoint(
                final_path, state.model, config=start.meta_config, step=state.step,
                data=config.data, meta=state.qat_meta(config),
            )  # fmt: skip
        return final_path if state.step == config.steps else ckpt_path
    except TrainingInterrupted as exc:
        if not exc.aborted:
            raise
        # A second signal, raised wherever the run was: say what is left on disk.
        raise TrainingInterrupted(
            exc.signum,
            aborted=True,
            step=None if state is None else state.step,
            steps=config.steps,
            checkpoint=str(ckpt_path) if ckpt_path.is_file() else None,
            checkpoint_step=None if state is None else state.saved,
        ) from None
