"""The HardNet network (L2Net layout) and its checkpoints.

The layer indices of ``HardNet.features`` are the keys of the authors' state_dict, so the
published checkpoints (``checkpoint_liberty_with_aug.pth``, ``HardNet++.pth``) load as they are.
A width multiplier scales every conv's channels (:mod:`hardnet_export.artifacts.models`); this
project's checkpoints record it, and :func:`load_model` reads it back (or infers it from the
weights' shapes for checkpoints that do not say).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hardnet_export import __version__
from hardnet_export._io import atomic_path
from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE
from hardnet_export.artifacts.models import (
    DEFAULT_LAYOUT,
    check_width,
    conv_shapes,
    get_layout,
    resolve_model,
    width_of,
)
from hardnet_export.errors import InputError, InputTypeError, MissingFileError, Remedy
from hardnet_export.shipped import PATCH_SIZE, SHIPPED_WEIGHTS, STD_EPSILON, require_shipped
from hardnet_export.validate import check_float, check_int, parse_json_object

CHECKPOINT_FORMAT = "hardnet-export/1"


def _conv_bn(c_in: int, c_out: int, *, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out, affine=False),
    ]
    if relu:
        layers.append(nn.ReLU())
    return layers


class HardNet(nn.Module):
    """HardNet: 32x32 grayscale patch -> 128-D unit descriptor.

    The per-patch standardisation runs inside ``forward`` so that every exported graph
    carries it: raw 0..255 bytes go in, unit vectors come out.

    Args:
        dropout: dropout rate before the last conv (0.3 in the current authors' code,
            0.1 in the NIPS version).
        width: multiplier of every conv's channels (in the L2Net layout 32w, 32w, 64w, 64w,
            128w, 128w; the final 8x8 conv maps 128w to 128). Width 1 is the paper's network.
        layout: the conv stack's shape (:data:`~hardnet_export.artifacts.models.LAYOUTS`):
            ``l2net`` (the paper's, the default), ``strided`` or ``stem4`` (CPU-shaped).
            Every layout has the same modules in the same order, so the state_dict keys are
            the same.

    Shape:
        - Input: (N, 1, 32, 32), uint8 (0..255) or floating point.
        - Output: (N, 128) float32, unit L2 norm.
    """

    def __init__(
        self, dropout: float = 0.3, width: float = 1.0, layout: str = DEFAULT_LAYOUT
    ) -> None:
        super().__init__()
        self.width = check_width(width)
        self.layout = get_layout(layout).name
        *convs, final = conv_shapes(self.width, self.layout)
        layers: list[nn.Module] = []
        for shape in convs:
            layers += _conv_bn(shape.c_in, shape.c_out, stride=shape.stride)
        self.features = nn.Sequential(
            *layers,
            nn.Dropout(dropout),
            nn.Conv2d(final.c_in, DESCRIPTOR_SIZE, kernel_size=final.kernel, bias=False),
            nn.BatchNorm2d(DESCRIPTOR_SIZE, affine=False),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.orthogonal_(module.weight, gain=0.6)

    @staticmethod
    def patch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each patch's mean and (unbiased) standard deviation plus ``STD_EPSILON``, the
        divisor of :meth:`standardize`; detached.

        Shape:
            - Input: (N, 1, H, W) float.
            - Output: two (N, 1, 1, 1).
        """
        flat = x.reshape(x.shape[0], -1)
        mean = flat.mean(dim=1).detach()
        std = flat.std(dim=1).detach()
        return mean[:, None, None, None], std[:, None, None, None] + STD_EPSILON

    @staticmethod
    def standardize(x: torch.Tensor) -> torch.Tensor:
        """Per-patch zero mean, unit (unbiased) std over all pixels; statistics detached.

        Shape:
            - Input: (N, 1, H, W) float.
            - Output: same.
        """
        mean, spread = HardNet.patch_statistics(x)
        return (x - mean) / spread

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.describe(patches)

    def describe(
        self,
        patches: torch.Tensor,
        *,
        compute_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ) -> torch.Tensor:
        """Descriptors of ``patches`` (what ``forward`` computes, with the options of the
        PyTorch runtime backend; every export traces ``forward``).

        Args:
            patches: raw grey levels.
            compute_dtype: run the conv stack in this dtype (``torch.float16`` for a
                ``.half()`` model on CUDA); standardisation and the L2 norm stay float32.
            channels_last: feed the convs channels-last tensors (faster on tensor cores).
        """
        if patches.ndim != 4 or tuple(patches.shape[1:]) != (1, PATCH_SIZE, PATCH_SIZE):
            raise InputError(
                f"HardNet expects patches of shape (N, 1, {PATCH_SIZE}, {PATCH_SIZE}), "
                f"got {tuple(patches.shape)}"
            )
        if not (patches.dtype == torch.uint8 or patches.is_floating_point()):
            raise InputTypeError(f"HardNet expects uint8 or float patches, got {patches.dtype}")
        x = self.standardize(patches.float())
        if compute_dtype is not None:
            x = x.to(compute_dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.features(x).float().reshape(x.shape[0], DESCRIPTOR_SIZE)
        return y / torch.sqrt((y * y).sum(dim=1, keepdim=True) + 1e-10)


@dataclass
class Checkpoint:
    """A checkpoint as read from disk: the weights and what produced them."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = CHECKPOINT_FORMAT


class CheckpointError(InputError):
    """A file that is not a checkpoint this project can read safely; the message names it."""


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint safely (``weights_only=True``) in any supported format.

    Formats: this project's (``{'format': 'hardnet-export/1', 'state_dict', 'meta', ...}``),
    the authors' (``{'epoch', 'state_dict'}``) and a bare state_dict. Every field this
    project reads back (``meta`` JSON, the resume step and learning-rate anchor) is checked.

    Raises:
        MissingFileError: no such file.
        CheckpointError: not a checkpoint, not one that loads without running code from the
            file, or a malformed field; the message names the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    obj = _load_tensors_only(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} is not a checkpoint: expected a dict, found {type(obj).__name__}"
        )
    if obj.get("format") == CHECKPOINT_FORMAT:
        state = obj.get("state_dict")
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"{path} is a {CHECKPOINT_FORMAT} checkpoint without a state_dict"
            )
        meta_text = obj.get("meta", "{}")
        if not isinstance(meta_text, str):
            raise CheckpointError(
                f"{path}: meta must be a JSON string, got {type(meta_text).__name__}"
            )
        meta = parse_json_object(meta_text, source=f"{path} (its meta)")
        extra = {k: v for k, v in obj.items() if k not in ("format", "state_dict", "meta")}
        _check_resume_fields(extra, str(path))
        return Checkpoint(_tensors(state, path), meta, extra)
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        meta = {"source": "authors' checkpoint", "epoch": obj.get("epoch")}
        return Checkpoint(_tensors(obj["state_dict"], path), meta, format="authors")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Checkpoint(_tensors(obj, path), {"source": "bare state_dict"}, format="state_dict")
    raise CheckpointError(
        f"{path} is not a HardNet checkpoint: expected a 'state_dict' entry, "
        f"found keys {sorted(map(str, obj))[:8]}"
    )


def _load_tensors_only(path: Path) -> Any:
    import warnings

    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols while refusing; the refusal is what counts.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ...
        # torch's own message advises weights_only=False, i.e. running the file's code: never
        # pass that on for a file of unknown origin. Its other messages ("101", "invalid load
        # key") do not say what the file is; the file's own bytes do.
        raise CheckpointError(_why_unreadable(path, exc)) from None


#: What common files that are no checkpoint start with, for the error that says so.
_FOREIGN_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"<?xml", "an XML file"),
)
#: The first pickle of a legacy (non-zip) ``torch.save`` file: its magic number, protocol 2.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
#: Pickles read ahead of the object in a legacy file (magic, protocol, system info).
_LEGACY_HEADER_PICKLES = 3
#: Opcodes read at most when looking for what a refused pickle names (about a second).
_MAX_PICKLE_OPS = 2_000_000


def _why_unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in one sentence: a file that is
    no checkpoint at all (named by what its first bytes are), one whose pickle names code
    (named), or a damaged one."""
    import zipfile

    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if reason.startswith("Weights only load failed"):
        reason = "torch's safe loader refused it"
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:  # not the content: the file cannot be read at all
        return f"cannot read {path}: {exc.strerror or exc}"
    if not head:
        return f"{path} is empty (0 bytes), not a PyTorch checkpoint"
    expected = "expected a zip archive or legacy pickle written by torch.save"
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        # torch.save's zip archive without its directory at the end: cut short.
        return f"{path} is not a readable PyTorch checkpoint (a truncated zip archive)"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
                if not pickles:
                    return f"{path} is a zip archive but not a PyTorch checkpoint ({expected})"
                with archive.open(pickles[0]) as stream:
                    names = _pickle_globals(stream, 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as damaged:
            return f"{path} is not a readable PyTorch checkpoint (a damaged zip archive: {damaged})"
    elif head[:1] == b"\x80" and 2 <= head[1] <= 5:
        legacy = head.startswith(_LEGACY_MAGIC)
        with open(path, "rb") as stream:
            names = _pickle_globals(stream, _LEGACY_HEADER_PICKLES + 1 if legacy else 1)
        if not legacy and not _code(names):
            return (
                f"{path} is a plain Python pickle, not a PyTorch checkpoint ({expected}; "
                "re-save the weights with torch.save)"
            )
    else:
        return f"{path} is not a PyTorch checkpoint: it is {_what_file(head)} ({expected})"
    code = _code(names)
    if code:
        return (
            f"{path} is not a safe checkpoint: it holds Python objects beyond tensors, numbers "
            f"and strings ({', '.join(code[:3])}), and reading it would run code from the "
            "file. Re-save the weights from their source with "
            "torch.save(model.state_dict(), path)"
        )
    return f"{path} is not a readable PyTorch checkpoint (truncated or damaged: {reason})"


def _what_file(head: bytes) -> str:
    for magic, what in _FOREIGN_MAGIC:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"a file starting with the bytes {head[:8].hex(' ')}"
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        return f"a text file starting {text[:24]!r}"
    return f"a file starting with the bytes {head[:8].hex(' ')}"


def _code(names: list[str]) -> list[str]:
    """The globals among ``names`` that torch's safe loader does not allow: what loading
    would import and call."""
    allowed: set[str] = set()
    try:
        from torch import _weights_only_unpickler as safe

        allowed = set(safe._get_allowed_globals())
        from torch.serialization import get_safe_globals

        for entry in get_safe_globals():  # a function or class, or (it, "module.name")
            allowed.add(
                entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"
            )
    except (ImportError, AttributeError):  # private API: without it, name what is not torch's
        return [n for n in names if not n.startswith(("torch.", "collections.OrderedDict"))]
    # Protocol 2 spells Python 3's builtins the Python 2 way; torch reads them as builtins.
    return [n for n in names if n.replace("__builtin__.", "builtins.", 1) not in allowed]


def _pickle_globals(stream: Any, count: int) -> list[str]:
    """The ``module.name`` of every global the first ``count`` pickles in ``stream`` name,
    read opcode by opcode without unpickling anything (up to where a damaged one breaks)."""
    import collections
    import pickletools

    names: list[str] = []
    text_ops = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                "BINSTRING", "STRING"}  # fmt: skip
    budget = _MAX_PICKLE_OPS  # a huge pickle is not read to its end for an error message
    try:
        for _ in range(count):
            memo: dict[Any, Any] = {}
            # The last values pushed, as far as a name can be among them (a global's module
            # and name are the last two).
            pushed: collections.deque[Any] = collections.deque(maxlen=2)
            for opcode, arg, _pos in pickletools.genops(stream):
                budget -= 1
                if budget < 0:
                    return names
                if opcode.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL":
                    module, name = pushed if len(pushed) == 2 else (None, None)
                    names.append(f"{module}.{name}" if module and name else "an unnamed global")
                elif opcode.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = pushed[-1] if pushed else None
                elif opcode.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(arg))
                elif opcode.name in text_ops:
                    pushed.append(arg)
                elif opcode.name not in ("PROTO", "FRAME"):
                    pushed.append(None)
    except Exception:  # a damaged or truncated stream: what was read so far still counts
        pass
    return names


def _tensors(state: Mapping[Any, Any], path: Path) -> dict[str, torch.Tensor]:
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(
            f"{path}: state_dict entries must map names to tensors; not so for {bad[:5]}"
        )
    return dict(state)


def _check_resume_fields(extra: Mapping[str, Any], source: str) -> None:
    if "step" in extra:
        check_int("step", extra["step"], low=0, source=source)
    if "lr_anchor_step" in extra:
        check_int("lr_anchor_step", extra["lr_anchor_step"], low=0, source=source)
    if "lr_anchor" in extra:
        check_float("lr_anchor", extra["lr_anchor"], low=0.0, source=source)
    if "optimizer" in extra and not isinstance(extra["optimizer"], Mapping):
        raise CheckpointError(f"{source}: optimizer must be a state dict")


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` that hold NaN or inf."""
    return [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def load_model(path: str | Path | None = None, *, dropout: float = 0.3) -> HardNet:
    """Build HardNet at the checkpoint's width and load its weights strictly; returns the
    model in eval mode.

    Args:
        path: a checkpoint in this project's or the authors' format, or the name of a
            registered model (:func:`hardnet_export.models`: ``hardnet``, ...); ``None``
            loads the default model this project ships inside the package.

    Raises:
        MissingFileError: no such file, or a registered model whose file is not installed.
        UnknownModelError: a name that is no file and no registered model.
        CheckpointError: not HardNet weights (see :func:`read_checkpoint`), or weights that
            do not fit the architecture at their width.
    """
    if path is None:
        path = require_shipped(SHIPPED_WEIGHTS, "pass a checkpoint path")
    path = resolve_model(path, "weights")
    checkpoint = read_checkpoint(path)
    state = {k.removeprefix("module."): v for k, v in checkpoint.state_dict.items()}
    width, how = checkpoint_width(checkpoint.meta, state, str(path))
    layout = checkpoint_layout(checkpoint.meta, str(path))
    model = HardNet(dropout=dropout, width=width, layout=layout)
    missing, unexpected = _key_mismatch(model, state)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not hold HardNet weights: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}"
        )
    broken = non_finite_tensors(state)
    if broken:
        # A diverged run's weights export and run, but every descriptor is NaN.
        raise CheckpointError(
            f"{path} holds NaN or inf in {len(broken)} tensors ({', '.join(broken[:3])}); "
            "the run that wrote it diverged: use an earlier checkpoint or retrain with a lower "
            "{remedy}",
            remedy=Remedy({"lr": ...}),
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"{path} does not fit the HardNet architecture at width {width:g} ({how}), layout "
            f"{layout}: {reason}"
        ) from None
    return model.eval()


def checkpoint_layout(meta: Mapping[str, Any], source: str) -> str:
    """The layout a checkpoint's metadata records (``l2net`` where it records none: the
    authors' checkpoints and this project's before layouts).

    Raises:
        CheckpointError: a recorded layout that is not one of
            :data:`~hardnet_export.artifacts.models.LAYOUTS`.
    """
    try:
        return get_layout(meta.get("layout")).name
    except InputError as exc:
        raise CheckpointError(f"{source}: meta {exc}") from None


def checkpoint_width(
    meta: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: str
) -> tuple[float, str]:
    """The width of a checkpoint's network and how it is known: the width its metadata
    records (this project's checkpoints), else the one its first conv's rows imply
    (the authors' and other foreign checkpoints: 32 rows, width 1).

    Raises:
        CheckpointError: a recorded width that is not a valid one, or a first conv whose
            row count gives none.
    """
    if meta.get("width") is not None:
        try:
            return check_width(meta["width"]), "recorded in its metadata"
        except (InputError, InputTypeError) as exc:
            raise CheckpointError(f"{source}: meta {exc}") from None
    first = state.get("features.0.weight")
    if first is None or first.ndim != 4:
        return 1.0, "the default"  # the key check names what is missing
    try:
        width = check_width(width_of(int(first.shape[0])))
    except InputError:
        raise CheckpointError(
            f"{source}: features.0.weight has {first.shape[0]} output channels, which no "
            "width gives"
        ) from None
    return width, f"inferred from features.0.weight's {first.shape[0]} output channels"


def _key_mismatch(model: nn.Module, state: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    # Old saves lack num_batches_tracked; BatchNorm fills it in, so it is not required.
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    return sorted(expected - given), sorted(given - expected)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    config: Mapping[str, Any] | None = None,
    step: int | None = None,
    data: str | list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write weights atomically with what produced them (config, step, data).

    ``extra`` holds more tensors or plain values (optimizer state for resuming); ``meta``
    more JSON-ready entries of the checkpoint's metadata (a QAT run's ``qat`` record);
    everything stays loadable with ``weights_only=True``.
    """
    # DistributedDataParallel wraps the model; save the inner module's keys.
    inner = getattr(model, "module", model)
    module = inner if isinstance(inner, nn.Module) else model
    meta = {
        "producer": f"hardnet-export {__version__}",
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dict(config or {}),
        "step": step,
        "data": data,
        # The width and layout travel with the weights: load_model builds the network from them.
        "width": getattr(module, "width", 1.0),
        "layout": getattr(module, "layout", DEFAULT_LAYOUT),
        **dict(meta or {}),
    }
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "meta": json.dumps(meta, default=str),
        **dict(extra or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
