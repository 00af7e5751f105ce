"""A TensorRT engine's JSON sidecar (``X.engine.json``): one dataclass, one writer, one reader.

The engine file stays a pure TensorRT plan (any TensorRT tool reads it); what built it lives
here: TensorRT version, GPU and compute capability, the ONNX graph's hash and provenance, the
optimisation profile and build flags. The builder (:mod:`hardnet_export.export.tensorrt`)
makes one with :meth:`EngineSidecar.plan` and :meth:`EngineSidecar.write`; the runtime reads it
with :func:`read_sidecar` and checks it against the running TensorRT and GPU with
:meth:`EngineSidecar.check` before it creates any TensorRT object. Torch-free and TensorRT-free.

An engine built from an image graph (``graph_kind`` ``image``) also records the graph's
magnification, pyramid levels and smallest image side, which the runtime needs for the host
keypoint rules, and its profile is an :class:`ImageProfile` (image sides and keypoint counts)
instead of a batch range. Sidecars written before image engines have no ``graph_kind``: they
describe patch engines.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardnet_export.artifacts.metadata import GRAPH_KINDS, IMAGE_GRAPH_REMEDY
from hardnet_export.errors import InputError, Remedy
from hardnet_export.shipped import PATCH_SIZE
from hardnet_export.validate import (
    MAX_JSON_BYTES,
    check_bool,
    check_int,
    check_str,
    parse_json_object,
)

FORMAT = "hardnet-export-engine/1"
HARDWARE_COMPATIBILITY = ("none", "ampere_plus")
PATCH_SHAPE = (1, PATCH_SIZE, PATCH_SIZE)
#: Fields that must all match for an existing engine to be reused instead of rebuilt.
CACHE_KEYS = (
    "onnx_sha256",
    "precision",
    "profile",
    "tensorrt_version",
    "gpu_name",
    "compute_capability",
    "dla_core",
    "gpu_fallback",
    "version_compatible",
    "hardware_compatibility",
)


#: The keypoint input's row: (x, y, size, angle).
KEYPOINT_ROW = 4


@dataclass(frozen=True)
class ImageProfile:
    """The optimisation profile of an image engine: image sides as (height, width), the
    order of the ``image`` tensor's axes, and keypoint counts K of the (K, 4) ``keypoints``.

    Its own ``min <= opt <= max`` rules are checked here; that the sides reach the graph's
    ``min_image_side`` is the planner's check
    (:func:`hardnet_export.export.tensorrt.plan_image_profile`), which knows the graph.
    """

    min_image: tuple[int, int]
    opt_image: tuple[int, int]
    max_image: tuple[int, int]
    min_keypoints: int
    opt_keypoints: int
    max_keypoints: int

    def __post_init__(self) -> None:
        images = (self.min_image, self.opt_image, self.max_image)
        for shape in images:
            if not (
                isinstance(shape, tuple)
                and len(shape) == 2
                and all(type(v) is int and v >= 1 for v in shape)
            ):
                raise InputError(f"image profile sides must be (height, width) >= 1, got {shape!r}")
        for axis, name in ((0, "height"), (1, "width")):
            sides = [shape[axis] for shape in images]
            if not sides[0] <= sides[1] <= sides[2]:
                raise InputError(
                    f"the image profile needs min <= opt <= max {name}, got {sides} "
                    f"(min {_size(self.min_image)}, opt {_size(self.opt_image)}, max "
                    f"{_size(self.max_image)}, as WIDTHxHEIGHT)"
                )
        counts = [self.min_keypoints, self.opt_keypoints, self.max_keypoints]
        if not (all(type(v) is int for v in counts) and 1 <= counts[0] <= counts[1] <= counts[2]):
            raise InputError(
                f"the keypoint profile needs 1 <= min <= opt <= max, got min={counts[0]}, "
                f"opt={counts[1]}, max={counts[2]}"
            )

    def to_profile(self) -> dict[str, Any]:
        """The sidecar's ``profile``: per input its min, opt and max shapes."""
        return {
            "image": {
                "min": list(self.min_image),
                "opt": list(self.opt_image),
                "max": list(self.max_image),
            },
            "keypoints": {
                key: [count, KEYPOINT_ROW]
                for key, count in (
                    ("min", self.min_keypoints),
                    ("opt", self.opt_keypoints),
                    ("max", self.max_keypoints),
                )
            },
        }

    @classmethod
    def from_profile(cls, profile: dict[str, Any], source: str) -> ImageProfile:
        """Validate a sidecar's image-engine ``profile``.

        Raises:
            InputError: not the shape :meth:`to_profile` writes, or out of order.
        """
        image, keypoints = profile.get("image"), profile.get("keypoints")
        if not (isinstance(image, dict) and isinstance(keypoints, dict)):
            raise InputError(
                f"{source}: an image engine's profile needs image and keypoints entries, got "
                f"{sorted(profile)}"
            )
        sides: list[tuple[int, int]] = []
        counts: list[int] = []
        for key in ("min", "opt", "max"):
            shape = image.get(key)
            if not (isinstance(shape, list) and len(shape) == 2):
                raise InputError(f"{source}: profile image {key} must be [H, W], got {shape!r}")
            sides.append((shape[0], shape[1]))
            rows = keypoints.get(key)
            if not (
                isinstance(rows, list)
                and len(rows) == 2
                and type(rows[0]) is int
                and rows[1] == KEYPOINT_ROW
            ):
                raise InputError(
                    f"{source}: profile keypoints {key} must be [K, {KEYPOINT_ROW}], got {rows!r}"
                )
            counts.append(rows[0])
        try:
            return cls(sides[0], sides[1], sides[2], counts[0], counts[1], counts[2])
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None


def _size(shape: tuple[int, int]) -> str:
    """(height, width) -> ``"WIDTHxHEIGHT"``, the way the CLI's options write sizes."""
    return f"{shape[1]}x{shape[0]}"


class EngineMismatchError(InputError):
    """An engine built for another TensorRT version or GPU, or one TensorRT cannot read."""


def sidecar_path(engine: str | Path) -> Path:
    """``X.engine`` -> ``X.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


@dataclass(frozen=True)
class EngineSidecar:
    """What built an engine. ``profile`` is ``{"input", "min", "opt", "max"}`` (N, 1, 32, 32)
    shapes for a patch engine, :meth:`ImageProfile.to_profile` for an image engine
    (``graph_kind`` ``image``, which also records the graph's ``magnification``,
    ``pyramid_levels`` and ``min_image_side``); ``compute_capability`` is ``"major.minor"``;
    ``hardware_compatibility`` is ``none`` or ``ampere_plus``."""

    engine: str
    onnx: str
    onnx_sha256: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    device_index: int
    profile: dict[str, Any]
    workspace_bytes: int
    dla_core: int | None = None
    gpu_fallback: bool = False
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    int8_target: str | None = None
    calibration_sha256: str | None = None
    weights_sha256: str | None = None
    strongly_typed: bool = True
    producer: str = ""
    build_seconds: float | None = None
    built_at: str | None = None
    timing_cache: str | None = None
    engine_sha256: str | None = None
    graph_kind: str = "patches"
    magnification: float | None = None
    pyramid_levels: int | None = None
    min_image_side: int | None = None
    #: The registered model and width multiplier the graph's weights are (as its metadata says).
    model_name: str | None = None
    width: float | None = None
    format: str = FORMAT
    #: Fields a later writer added that this version does not know (kept, not trusted).
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def plan(
        cls,
        onnx_path: Path,
        engine: Path,
        *,
        onnx_sha256: str,
        graph: Any,
        tensorrt_version: str,
        gpu_name: str,
        compute_capability: str,
        device_index: int,
        batch: tuple[int, int, int] | None = None,
        workspace_bytes: int,
        dla_core: int | None,
        gpu_fallback: bool,
        version_compatible: bool,
        hardware_compatible: bool,
        image: ImageProfile | None = None,
    ) -> EngineSidecar:
        """The sidecar of an engine about to be built from ``onnx_path`` (``graph`` is its
        :class:`~hardnet_export.artifacts.metadata.GraphMetadata`); ``batch`` is a patch
        graph's profile (min, opt, max), ``image`` an image graph's.

        Raises:
            InputError: the profile that does not fit the graph's kind, or an image graph
                without its settings in the metadata.
        """
        from hardnet_export import __version__

        kind = graph.kind
        if kind == "image":
            if image is None or batch is not None:
                raise InputError(f"{onnx_path} is an image graph: its profile is an ImageProfile")
            if graph.magnification is None or not graph.pyramid_levels or not graph.min_image_side:
                raise InputError(
                    f"{onnx_path} is an image graph without magnification, pyramid_levels and "
                    "min_image_side metadata; export it again: {remedy}",
                    remedy=IMAGE_GRAPH_REMEDY,
                )
            profile = image.to_profile()
        else:
            if batch is None or image is not None:
                raise InputError(f"{onnx_path} is a patch graph: its profile is a batch range")
            low, opt, high = batch
            profile = {
                "input": graph.input_name,
                "min": [low, *PATCH_SHAPE],
                "opt": [opt, *PATCH_SHAPE],
                "max": [high, *PATCH_SHAPE],
            }
        return cls(
            engine=engine.name,
            onnx=str(onnx_path),
            onnx_sha256=onnx_sha256,
            precision=graph.precision,
            int8_target=graph.flavour,
            calibration_sha256=(
                graph.quantisation.calibration_sha256 if graph.quantisation is not None else None
            ),
            weights_sha256=graph.weights_sha256,
            tensorrt_version=str(tensorrt_version),
            gpu_name=gpu_name,
            compute_capability=str(compute_capability),
            device_index=device_index,
            profile=profile,
            workspace_bytes=workspace_bytes,
            dla_core=dla_core,
            gpu_fallback=bool(gpu_fallback and dla_core is not None),
            version_compatible=version_compatible,
            hardware_compatibility="ampere_plus" if hardware_compatible else "none",
            producer=f"hardnet-export {__version__}",
            graph_kind=kind,
            magnification=graph.magnification if kind == "image" else None,
            pyramid_levels=graph.pyramid_levels if kind == "image" else None,
            min_image_side=graph.min_image_side if kind == "image" else None,
            model_name=graph.model_name,
            width=graph.width,
        )

    @property
    def image_profile(self) -> ImageProfile:
        """An image engine's profile.

        Raises:
            InputError: a patch engine's sidecar.
        """
        if self.graph_kind != "image":
            raise InputError(
                f"{self.engine} is a {self.graph_kind} engine: it has no image profile"
            )
        return ImageProfile.from_profile(self.profile, f"{self.engine}.json")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        other = data.pop("other")
        return {**other, **data}

    def write(self, engine: str | Path) -> Path:
        """Write ``X.engine.json`` beside ``engine`` atomically."""
        from hardnet_export._io import atomic_write_text

        path = sidecar_path(engine)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def cache_key(self) -> dict[str, Any]:
        """The fields that decide whether an existing engine can be reused."""
        data = self.to_dict()
        return {key: data[key] for key in CACHE_KEYS}

    def rebuild_remedy(self, engine: str | Path, **profile: Any) -> Remedy:
        """How to rebuild ``engine`` here from its ONNX graph; an image engine's keeps its
        profile, with ``profile`` (:meth:`profile_options`' keywords) changed."""
        options = self.profile_options(**profile) if self.graph_kind == "image" else {}
        return rebuild_remedy(engine, self.onnx, **options)

    def profile_options(
        self,
        *,
        opt_image: tuple[int, int] | None = None,
        max_image: tuple[int, int] | None = None,
        opt_keypoints: int | None = None,
        max_keypoints: int | None = None,
    ) -> dict[str, Any]:
        """An image engine's profile as the builder's options (sizes as ``WIDTHxHEIGHT``),
        with the given (height, width) sides and keypoint counts in place of the recorded
        ones."""
        recorded = self.image_profile
        return {
            "opt_image": _size(opt_image or recorded.opt_image),
            "max_image": _size(max_image or recorded.max_image),
            "opt_keypoints": opt_keypoints or recorded.opt_keypoints,
            "max_keypoints": max_keypoints or recorded.max_keypoints,
        }

    def check(
        self, engine: str | Path, *, tensorrt_version: str, gpu_name: str, compute_capability: str
    ) -> None:
        """Check that this engine was built for this TensorRT and this GPU.

        TensorRT plans load only on the TensorRT version that built them, and on GPUs of the
        compute capability they were built for (``ampere_plus``: any 8.0+). A
        ``version_compatible`` plan also loads on any *later* TensorRT, across a major
        boundary too (10.x plans on 11.x), never on an older one: TensorRT's "Engine
        Compatibility" page (TensorRT 11.1 docs, "Version Compatibility": "engines built with
        TensorRT 10 work with TensorRT 11 ... newer versions do not work with older
        runtimes"). A different GPU model of the same compute capability is allowed with a
        warning.

        Raises:
            EngineMismatchError: another TensorRT version or GPU; the message holds the
                rebuild command.
        """
        rebuild = self.rebuild_remedy(engine)
        built, running = self.tensorrt_version, str(tensorrt_version)
        built_key, running_key = version_key(built), version_key(running)
        if self.version_compatible:
            if built_key is None or running_key is None:
                raise EngineMismatchError(
                    f"{engine}: cannot compare TensorRT versions {built!r} (built) and "
                    f"{running!r} (running): expected dotted numbers like 10.13.0.35. "
                    f"Rebuild it: {{remedy}}",
                    remedy=rebuild,
                )
            if running_key < built_key:
                raise EngineMismatchError(
                    f"{engine} is a version-compatible plan built with TensorRT {built}, but "
                    f"this is TensorRT {running}; such plans load on the same or a later "
                    f"TensorRT only, never an older one. Rebuild it: {{remedy}}",
                    remedy=rebuild,
                )
        elif not (built == running or (built_key is not None and built_key == running_key)):
            raise EngineMismatchError(
                f"{engine} was built with TensorRT {built}, but this is TensorRT {running}; "
                "engines only load on the TensorRT version that built them (a version-"
                f"compatible build also loads on later ones). Rebuild it: {{remedy}}",
                remedy=rebuild,
            )
        here = str(compute_capability)
        if self.compute_capability != here:
            if not (self.hardware_compatibility == "ampere_plus" and float(here) >= 8.0):
                raise EngineMismatchError(
                    f"{engine} was built for {self.gpu_name} (compute capability "
                    f"{self.compute_capability}), but this GPU is {gpu_name} (compute capability "
                    f"{here}). Rebuild it on this machine: {{remedy}}",
                    remedy=rebuild,
                )
        elif self.gpu_name != gpu_name:
            warnings.warn(
                f"{engine} was built on {self.gpu_name}, this GPU is {gpu_name} (same compute "
                f"capability {here}); it should run, but tactics were tuned for the other GPU. "
                f"For the best speed: {rebuild.python()}",
                RuntimeWarning,
                stacklevel=3,
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> EngineSidecar:
        """Validate a decoded sidecar.

        Raises:
            InputError: another format, a missing field or a field of the wrong type.
        """
        onnx = data.get("onnx")
        # The engine the sidecar belongs to (X.engine for X.engine.json), built again.
        rebuild = rebuild_remedy(
            source.removesuffix(".json"), onnx if isinstance(onnx, str) else None
        )
        if data.get("format") != FORMAT:
            raise InputError(
                f"{source} is not a {FORMAT} sidecar (format {data.get('format')!r}); rebuild "
                "the engine: {remedy}",
                remedy=rebuild,
            )
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "other"}
        required = [
            name
            for name, f in known.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise InputError(
                f"{source} lacks {', '.join(missing)}; rebuild the engine: {{remedy}}",
                remedy=rebuild,
            )
        # JSON null only where the field may be absent (its default is None).
        null = [
            name
            for name, f in known.items()
            if name in data and data[name] is None and f.default is not None
        ]
        if null:
            raise InputError(
                f"{source}: {', '.join(null)} must not be null; rebuild the engine: {{remedy}}",
                remedy=rebuild,
            )
        for name, kind in _FIELD_TYPES.items():
            value = data.get(name)
            if value is None:
                continue
            # bool is an int in Python: a sidecar saying "device_index": true is still wrong.
            # A whole float (0.0) is taken as the int it spells, and stored as one.
            if kind is int:
                data = {**data, name: check_int(name, value, low=0, high=1 << 62, source=source)}
            elif kind is bool:
                check_bool(name, value, source=source)
            elif kind is str:
                check_str(name, value, source=source)
            elif not isinstance(value, kind):
                raise InputError(f"{source}: {name} must be a {kind.__name__}, got {value!r}")
        check_str(
            "hardware_compatibility",
            data.get("hardware_compatibility", "none"),
            choices=HARDWARE_COMPATIBILITY,
            source=source,
        )
        capability = data["compute_capability"]
        if not re.fullmatch(r"\d{1,3}\.\d{1,3}", capability):
            raise InputError(f"{source}: compute_capability must look like 8.9, got {capability!r}")
        kind = check_str(
            "graph_kind", data.get("graph_kind", "patches"), choices=GRAPH_KINDS, source=source
        )
        magnification = data.get("magnification")
        if magnification is not None:
            if type(magnification) not in (int, float) or not 0 < magnification <= 64:
                raise InputError(
                    f"{source}: magnification must be a number in (0, 64], got {magnification!r}"
                )
            data = {**data, "magnification": float(magnification)}
        width = data.get("width")
        if width is not None:
            if type(width) not in (int, float) or not 0 < width <= 16:
                raise InputError(f"{source}: width must be a number in (0, 16], got {width!r}")
            data = {**data, "width": float(width)}
        profile = data["profile"]
        if kind == "image":
            return cls._image_from_dict(data, known, source)
        batches = []
        for key in ("min", "opt", "max"):
            shape = profile.get(key)
            if not (
                isinstance(shape, list)
                and len(shape) == 4
                and all(type(v) is int for v in shape)
                and shape[0] >= 1
                and tuple(shape[1:]) == PATCH_SHAPE
            ):
                raise InputError(
                    f"{source}: profile {key} must be [N >= 1, "
                    f"{', '.join(map(str, PATCH_SHAPE))}], got {shape!r}"
                )
            batches.append(shape[0])
        if not batches[0] <= batches[1] <= batches[2]:
            raise InputError(f"{source}: profile needs min <= opt <= max, got {batches}")
        return cls._from_checked(data, known)

    @classmethod
    def _image_from_dict(
        cls, data: dict[str, Any], known: dict[str, Any], source: str
    ) -> EngineSidecar:
        missing = [
            name
            for name in ("magnification", "pyramid_levels", "min_image_side")
            if data.get(name) is None
        ]
        if missing:
            raise InputError(
                f"{source} is an image engine's sidecar without {', '.join(missing)}; rebuild "
                "the engine"
            )
        profile = ImageProfile.from_profile(data["profile"], source)
        side = data["min_image_side"]
        if min(*profile.min_image) < side:
            raise InputError(
                f"{source}: profile image min {_size(profile.min_image)} is below the graph's "
                f"min_image_side {side}"
            )
        return cls._from_checked(data, known)

    @classmethod
    def _from_checked(cls, data: dict[str, Any], known: dict[str, Any]) -> EngineSidecar:
        values = {name: data[name] for name in known if name in data}
        other = {k: v for k, v in data.items() if k not in known}
        return cls(**values, other=other)


_FIELD_TYPES: dict[str, Any] = {
    "engine": str,
    "model_name": str,
    "onnx": str,
    "onnx_sha256": str,
    "precision": str,
    "tensorrt_version": str,
    "gpu_name": str,
    "compute_capability": str,
    "device_index": int,
    "profile": dict,
    "workspace_bytes": int,
    "dla_core": int,
    "gpu_fallback": bool,
    "version_compatible": bool,
    "hardware_compatibility": str,
    "graph_kind": str,
    "pyramid_levels": int,
    "min_image_side": int,
}


def version_key(version: str) -> tuple[int, ...] | None:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)`` for numeric comparison (as strings, "10.9" >
    "10.13"); trailing zero fields are dropped so "10.13" == "10.13.0". None when a field is
    not a number."""
    parts = str(version).strip().split(".")
    if not parts or not all(p.isdigit() for p in parts):
        return None
    key = [int(p) for p in parts]
    while len(key) > 1 and key[-1] == 0:
        key.pop()
    return tuple(key)


def read_sidecar(engine: str | Path) -> EngineSidecar | None:
    """The sidecar of ``engine``, or None when it has none (a foreign engine).

    Raises:
        InputError: a sidecar that is not valid JSON or not one this project writes.
    """
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_JSON_BYTES:
        raise InputError(f"{path} is not an engine sidecar: {path.stat().st_size:,} bytes")
    data = parse_json_object(path.read_bytes(), source=f"engine sidecar {path}")
    return EngineSidecar.from_dict(data, str(path))


def rebuild_remedy(engine: str | Path, onnx: str | None = None, **options: Any) -> Remedy:
    """Rebuilding ``engine`` from ``onnx`` (a placeholder when unknown) with the builder's
    ``options``: the ``trt`` stage, :func:`hardnet_export.export.tensorrt.build_engine`."""
    return Remedy(
        {"out": str(engine), "rebuild": True, **options},
        stage="trt",
        function="hardnet_export.export.tensorrt.build_engine",
        arguments=(str(onnx or "MODEL.onnx"),),
    )
