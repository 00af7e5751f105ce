"""The models this package ships, torch-free: name, width, cost, files and model card.

:func:`models` lists them; ``load_model(NAME)``, ``runtime.load(NAME)`` and every CLI
``--model`` take a registered name where they take a path (:func:`resolve_model`). Each entry
is three files in ``hardnet_export/weights/``: the checkpoint (``STEM.pth``), its FP32 ONNX
export (``STEM.fp32.onnx``, the torch-free form that ``runtime.load`` runs where torch is
missing; made with ``hardnet-export onnx NAME -o hardnet_export/weights/STEM.fp32.onnx``) and
its model card (``STEM.md``, which states the checkpoint's sha256, width and multiply-adds).
A new shipped variant is one :data:`MODELS` entry plus those three files (a model elsewhere:
:func:`register_model`); ``tests/test_shipped_model.py``
checks every entry (it loads safely, matches its card, its ONNX is its weights).

The widths: a width multiplier ``w`` scales the channels of every conv of the L2Net layout,
``32w, 32w, 64w, 64w, 128w, 128w`` (rounded half up, at least 1), and the final 8x8 conv maps
``128w`` to the 128-D descriptor; input conventions and the in-graph standardisation stay.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from hardnet_export.artifacts.backends import artifact_suffixes, plain_table
from hardnet_export.artifacts.describe import DESCRIPTOR_SIZE
from hardnet_export.errors import InputError, MissingFileError
from hardnet_export.host import installed
from hardnet_export.shipped import DEFAULT_MODEL, DEFAULT_STEM, PATCH_SIZE, WEIGHTS_DIR
from hardnet_export.validate import check_float

#: Output channels of the six 3x3 convs at width 1 (the L2Net layout).
BASE_CHANNELS = (32, 32, 64, 64, 128, 128)


@dataclass(frozen=True)
class Layout:
    """The shape of the conv stack at width 1: six 3x3 convs (padding 1), each followed by
    BatchNorm and ReLU, then one conv whose kernel covers the map left (a 1x1 output, the
    128-D descriptor). Every layout has the same seven convs and the same state_dict keys,
    so training, export, INT8 and QAT treat them alike.

    Attributes:
        name: what a checkpoint's metadata, ``TrainConfig.layout`` and ``--layout`` say.
        channels: the six 3x3 convs' output channels at width 1.
        strides: their strides.
        summary: one line for listings and cards.
    """

    name: str
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    summary: str

    @property
    def final_kernel(self) -> int:
        """The side of the map the six convs leave of a 32x32 patch: the last conv's kernel."""
        side = PATCH_SIZE
        for stride in self.strides:
            side = (side + 2 - 3) // stride + 1
        return side


#: The layouts, the default first. ``strided`` is shaped for CPU kernels: its first conv
#: halves the patch at once and every conv has 16 channels (one AVX-512 block), so no conv
#: runs at 32x32 and none wastes a vector on a few channels (``docs/training.md``).
#: ``stem4`` also halves the 16x16 map at once: its one conv at 16x16 was 57 % of
#: ``strided``'s multiply-adds (0.48 M against 1.03 M per patch; untrained all-int8 graphs on
#: OpenVINO ran 0.79x ``strided``'s time, since every conv also costs a fixed share).
LAYOUTS: dict[str, Layout] = {
    "l2net": Layout(
        "l2net",
        BASE_CHANNELS,
        (1, 1, 2, 1, 2, 1),
        "the paper's L2Net layout: 32, 32, 64, 64, 128, 128 channels; 32x32, 16x16 and 8x8 "
        "maps; an 8x8 final conv",
    ),
    "strided": Layout(
        "strided",
        (16, 16, 16, 16, 16, 16),
        (2, 1, 2, 1, 2, 1),
        "CPU-shaped: 16 channels throughout; 16x16, 8x8 and 4x4 maps (the first conv at "
        "stride 2); a 4x4 final conv",
    ),
    "stem4": Layout(
        "stem4",
        (16, 16, 16, 16, 16, 16),
        (2, 2, 1, 2, 1, 1),
        "CPU-shaped, lighter: 16 channels throughout; the first two convs at stride 2 (a 4x "
        "stem), one 16x16 map, two 8x8, three 4x4; a 4x4 final conv",
    ),
}
DEFAULT_LAYOUT = "l2net"


def get_layout(name: str | None) -> Layout:
    """The layout called ``name`` (None: the default, L2Net).

    Raises:
        InputError: no such layout; the message lists them.
    """
    if name is None:
        return LAYOUTS[DEFAULT_LAYOUT]
    if name not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {name!r}")
    return LAYOUTS[name]


#: Widths a model may have: more than 0, at most this.
MAX_WIDTH = 4.0
#: Which file of an entry a caller wants: the checkpoint, the FP32 ONNX graph, or ``auto``
#: (the checkpoint where torch is installed, else the ONNX graph).
FORMS = ("weights", "onnx", "auto")


class UnknownModelError(InputError):
    """A name that is neither a file nor a registered model; the message lists the names."""


def check_width(width: float) -> float:
    """``width`` as a float in (0, :data:`MAX_WIDTH`].

    Raises:
        InputTypeError: not a number.
        InputError: NaN, infinite or out of range.
    """
    return check_float("width", width, low=0.0, low_open=True, high=MAX_WIDTH)


def conv_channels(width: float = 1.0, layout: str | None = None) -> tuple[int, ...]:
    """Output channels of the six 3x3 convs at ``width`` (the layout's channels x ``width``,
    rounded half up, at least 1); the final conv maps the last of them to 128."""
    width = check_width(width)
    return tuple(max(1, math.floor(c * width + 0.5)) for c in get_layout(layout).channels)


@dataclass(frozen=True)
class ConvShape:
    """One conv of the network at some width: its channels, kernel, stride and output side."""

    c_in: int
    c_out: int
    kernel: int
    stride: int
    out_side: int

    @property
    def weights(self) -> int:
        """Weights of the conv (no bias; BatchNorm is not affine)."""
        return self.c_out * self.c_in * self.kernel * self.kernel

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds per patch: every weight once per output position."""
        return self.weights * self.out_side * self.out_side


def conv_shapes(width: float = 1.0, layout: str | None = None) -> tuple[ConvShape, ...]:
    """The seven convs (``conv0`` ... ``conv6`` of the exported graph) at ``width`` in
    ``layout`` (default L2Net), for a 32x32 patch."""
    shapes = []
    c_in, side = 1, PATCH_SIZE
    chosen = get_layout(layout)
    for c_out, stride in zip(conv_channels(width, layout), chosen.strides, strict=True):
        side = (side + 2 - 3) // stride + 1  # 3x3, padding 1
        shapes.append(ConvShape(c_in, c_out, 3, stride, side))
        c_in = c_out
    shapes.append(ConvShape(c_in, DESCRIPTOR_SIZE, side, 1, 1))
    return tuple(shapes)


def parameter_count(width: float = 1.0, layout: str | None = None) -> int:
    """Weights of the network at ``width`` (1,334,560 at width 1 in the L2Net layout)."""
    return sum(shape.weights for shape in conv_shapes(width, layout))


def multiply_adds(width: float = 1.0, layout: str | None = None) -> int:
    """Multiply-adds per 32x32 patch at ``width`` (39,092,224, about 39.1 M, at width 1 in
    the L2Net layout); BatchNorm, ReLU and the normalisations are not counted."""
    return sum(shape.multiply_adds for shape in conv_shapes(width, layout))


def width_of(first_channels: int) -> float:
    """The width whose first conv has ``first_channels`` outputs (a checkpoint without a
    recorded width: its ``features.0.weight`` rows)."""
    return first_channels / BASE_CHANNELS[0]


@dataclass(frozen=True)
class ShippedModel:
    """One registered model.

    Attributes:
        name: what ``--model`` and ``load_model`` take (``hardnet``, ``hardnet-half``, ...).
        width: the width multiplier of its conv channels.
        stem: its files' name in ``folder``: ``STEM.pth``, ``STEM.fp32.onnx``, ``STEM.md``.
        summary: one line for listings.
        folder: where its files are (``hardnet_export/weights/`` for the shipped ones).
        graphs: the variants (``int8-cpu``, ``int8-tensorrt``) shipped ready-made as
            ``STEM.VARIANT.onnx`` beside the checkpoint: graphs whose weights are not the
            checkpoint's (quantisation-aware fine-tuned from it), so no export of the
            checkpoint reproduces them, or the checkpoint's own INT8 export where the name
            runs it on the CPU (``runtime.load(NAME)`` needs no torch and no export then);
            the card says how each was made.
        layout: the conv stack's shape (:data:`LAYOUTS`).
    """

    name: str
    width: float
    stem: str
    summary: str
    folder: Path = WEIGHTS_DIR
    graphs: tuple[str, ...] = ()
    layout: str = DEFAULT_LAYOUT

    @property
    def weights(self) -> Path:
        """The checkpoint."""
        return self.folder / f"{self.stem}.pth"

    @property
    def onnx(self) -> Path:
        """The FP32 ONNX export of the checkpoint (the torch-free form)."""
        return self.folder / f"{self.stem}.fp32.onnx"

    def graph(self, variant: str) -> Path:
        """The shipped ``variant`` graph (one of :attr:`graphs`).

        Raises:
            InputError: the entry ships no such graph; the message lists those it ships.
            MissingFileError: this installation lacks the file.
        """
        if variant not in self.graphs:
            ships = ", ".join(self.graphs) or "none"
            raise InputError(
                f"model {self.name!r} ships no {variant} graph (it ships: {ships}); export "
                f"one with export_onnx({self.name!r}, out, variant={variant!r})"
            )
        path = self.folder / f"{self.stem}.{variant}.onnx"
        if not path.is_file():
            raise MissingFileError(f"the {variant} graph of {self.name!r} is missing: {path}")
        return path

    @property
    def card(self) -> Path:
        """The model card (Markdown)."""
        return self.folder / f"{self.stem}.md"

    @property
    def parameters(self) -> int:
        return parameter_count(self.width, self.layout)

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds per patch."""
        return multiply_adds(self.width, self.layout)

    def card_sha256(self) -> str | None:
        """The checkpoint sha256 the model card states (None: the card states none).

        Raises:
            MissingFileError: no card in this installation.
        """
        if not self.card.is_file():
            raise MissingFileError(f"model card of {self.name!r} not found: {self.card}")
        found = re.search(r"sha256 `([0-9a-f]{64})`", self.card.read_text(encoding="utf-8"))
        return found.group(1) if found else None

    def file(self, form: str = "weights") -> Path:
        """The entry's checkpoint (``weights``), FP32 graph (``onnx``) or, for ``auto``, the
        checkpoint where torch is installed and the graph elsewhere.

        Raises:
            InputError: an unknown form.
            MissingFileError: this installation lacks the file.
        """
        if form not in FORMS:
            raise InputError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        if form == "auto":
            form = "weights" if installed("torch") else "onnx"
        path = self.weights if form == "weights" else self.onnx
        if not path.is_file():
            raise MissingFileError(
                f"model {self.name!r} is registered but its "
                f"{'checkpoint' if form == 'weights' else 'FP32 ONNX graph'} is not in this "
                f"installation ({path} is missing)"
            )
        return path


#: The registered models, the default first. Add a variant here once its weights, FP32 graph
#: and card are in ``hardnet_export/weights/`` (never before: a name must load).
MODELS: tuple[ShippedModel, ...] = (
    ShippedModel(
        DEFAULT_MODEL,
        1.0,
        DEFAULT_STEM,
        "HardNet, width 1, trained on the built-in photos (the default)",
        # The export's INT8 graph of these weights (conv0 float; 7-bit weights, which no x86
        # int8 kernel clips), which its name runs on x86 CPUs with AVX2, VNNI or AMX (its
        # card says how it was made and how fast it runs).
        graphs=("int8-cpu",),
    ),
    ShippedModel(
        "hardnet-half",
        0.5,
        "hardnet_half_builtin",
        "HardNet, width 0.5 (3.9x fewer multiply-adds), distilled from hardnet on the built-in "
        "photos",
        # Every conv in int8 by quantisation-aware fine-tuning (its card says how).
        graphs=("int8-cpu",),
    ),
    ShippedModel(
        "hardnet-quarter",
        0.25,
        "hardnet_quarter_builtin",
        "HardNet, width 0.25 (14x fewer multiply-adds), distilled from hardnet on the built-in "
        "photos",
        # Convs 1-6 in int8 by quantisation-aware fine-tuning, conv0 float: its int8 input
        # rounded the faint texture of near-flat patches (its card says how, and why).
        graphs=("int8-cpu",),
    ),
    ShippedModel(
        "hardnet-eighth",
        0.125,
        "hardnet_eighth_builtin",
        "HardNet, width 0.125 (52x fewer multiply-adds), distilled from hardnet on the built-in "
        "photos",
    ),
    ShippedModel(
        "hardnet-fast",
        1.0,
        "hardnet_fast_builtin",
        "HardNet in the CPU-shaped strided layout (16 channels, first conv at stride 2; 38x "
        "fewer multiply-adds), distilled from hardnet on the built-in photos",
        # Every conv in int8 by quantisation-aware fine-tuning, one run per flavour (its card
        # says how).
        graphs=("int8-cpu", "int8-tensorrt"),
        layout="strided",
    ),
)


_registered: list[ShippedModel] = list(MODELS)


def models() -> tuple[ShippedModel, ...]:
    """The registered models (name, width, parameters, multiply-adds per patch, files, card):
    the shipped ones, the default first, then those :func:`register_model` added."""
    return tuple(_registered)


def register_model(entry: ShippedModel) -> ShippedModel:
    """Register a model whose files (``STEM.pth``, ``STEM.fp32.onnx``, ``STEM.md``) are in
    ``entry.folder``: its name then loads wherever a shipped model's does.

    Raises:
        InputError: the name is taken, or does not read as a model name.
    """
    if not looks_like_name(entry.name):
        raise InputError(f"model name {entry.name!r} reads as a path; use a bare word")
    if entry.name in model_names():
        raise InputError(f"a model called {entry.name!r} is registered already")
    _registered.append(entry)
    return entry


def unregister_model(name: str) -> None:
    """Remove a model :func:`register_model` added (shipped ones stay)."""
    if any(entry.name == name for entry in MODELS):
        raise InputError(f"{name!r} is a shipped model; it cannot be removed")
    _registered[:] = [entry for entry in _registered if entry.name != name]


def format_models(entries: tuple[ShippedModel, ...] | None = None) -> str:
    """A plain-text table of ``entries`` (default: every registered model): name, width,
    layout, weights, multiply-adds per patch, whether this installation has its files, its card."""
    rows = [("name", "width", "layout", "weights", "MACs/patch", "installed", "card")]
    for entry in models() if entries is None else entries:
        files = [("pth", entry.weights), ("onnx", entry.onnx)] + [
            (variant, entry.folder / f"{entry.stem}.{variant}.onnx") for variant in entry.graphs
        ]
        have = [form for form, path in files if path.is_file()]
        rows.append(
            (
                entry.name,
                f"{entry.width:g}",
                entry.layout,
                f"{entry.parameters:,}",
                f"{entry.multiply_adds / 1e6:.1f} M",
                "+".join(have) or "no",
                entry.card.name,
            )
        )
    return plain_table(rows)


def model_names() -> tuple[str, ...]:
    return tuple(entry.name for entry in models())


def get_model(name: str) -> ShippedModel:
    """The registered model called ``name``.

    Raises:
        UnknownModelError: no such model; the message lists the registered names.
    """
    for entry in models():
        if entry.name == name:
            return entry
    raise UnknownModelError(
        f"no model file or registered model named {name!r}: registered models are "
        f"{', '.join(model_names())} (or pass the path of a checkpoint or artifact)"
    )


def looks_like_name(model: str | Path) -> bool:
    """Whether ``model`` reads as a model name rather than a path: no folder part and no
    model-file suffix (``hardnet-half``, not ``./hardnet-half``, ``runs/a/final.pth`` or
    ``model.onnx``)."""
    text = str(model)
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        return False
    # A model file's suffix is one some backend reads (the backend records say which).
    return Path(text).suffix.lower() not in artifact_suffixes()


def lookup(model: str | Path) -> ShippedModel | None:
    """The registered model that ``model`` names, or None when it is a path.

    A path-looking ``model`` (a folder part, ``./hardnet`` included, or a model suffix) is
    always a path. A bare name is the registered model of that name; a file or folder of
    the same name in the working directory is then not used, and a warning says so and how
    to pick it (``./NAME``). A bare name that is no registered model is a path if such a
    file exists (a checkpoint saved without a suffix), else an error.

    ``Path("./hardnet")`` is ``Path("hardnet")``: from Python, pass the string
    ``"./hardnet"`` (or an absolute path) to mean the file.

    Raises:
        InputError: ``model`` is empty, or names a folder.
        UnknownModelError: ``model`` is no file and reads as a name (:func:`looks_like_name`)
            that is not registered; the message lists the names.
    """
    text = str(model)
    if not text.strip():
        raise InputError(
            "the model is empty: give the path of a checkpoint or artifact (.pth, .onnx, "
            f".xml, .engine) or a registered model name ({', '.join(model_names())})"
        )
    if looks_like_name(text) and text in model_names():
        if os.path.lexists(text):
            kind = "folder" if Path(text).is_dir() else "file"
            warnings.warn(
                f"{text!r} names the registered model; the {kind} {text} in the working "
                f"directory is not used: pass ./{text} to use it",
                stacklevel=2,
            )
        return get_model(text)
    if Path(text).is_dir():
        raise InputError(
            f"{text} is a folder: give the model file inside it (.pth, .onnx, .xml, .engine) "
            "or a registered model name"
        )
    if looks_like_name(text) and not Path(text).is_file():
        get_model(text)  # raises, listing the names
    return None


def resolve_model(model: str | Path | None, form: str = "weights") -> Path:
    """The file behind ``model``: a registered name's checkpoint or FP32 graph (``form``, see
    :meth:`ShippedModel.file`), the default model's for None, and a path as it is (its
    reader says when it does not exist).

    Raises:
        UnknownModelError: an unregistered name.
        MissingFileError: a registered model whose file this installation lacks.
    """
    if model is None:
        return get_model(DEFAULT_MODEL).file(form)
    entry = lookup(model)
    return as_path(model) if entry is None else entry.file(form)


def as_path(model: str | Path) -> Path:
    """``model``, which :func:`lookup` found to be a path, as a :class:`~pathlib.Path` that
    stays one: ``Path("./hardnet-half")`` drops the ``./`` and would read as the registered
    name again, so such a path becomes absolute."""
    path = Path(model)
    if looks_like_name(path) and str(path) in model_names():
        return Path(os.path.abspath(path))
    return path


def registered_name(path: str | Path) -> str | None:
    """The name of the registered model whose checkpoint or FP32 graph ``path`` is."""
    try:
        target = Path(path).resolve()
    except OSError:
        return None
    for entry in models():
        shipped = (entry.folder / f"{entry.stem}.{variant}.onnx" for variant in entry.graphs)
        for file in (entry.weights, entry.onnx, *shipped):
            if file.resolve() == target:
                return entry.name
    return None
