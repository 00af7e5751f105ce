"""ONNX -> TensorRT engine (TensorRT 10.x and 11.x), with a JSON sidecar and build caching.

Precision lives in the ONNX graph (FP32, FP16 conv stack, INT8 Q/DQ), so every build is
strongly typed: TensorRT 10 gets the ``STRONGLY_TYPED`` network flag, TensorRT 11 networks are
always strongly typed, and no FP16/INT8 builder flag or calibrator is ever used. The engine
file is the pure serialised plan (any TensorRT tool reads it); what built it goes to
``X.engine.json``: TensorRT version, GPU name and compute capability, ONNX sha256, precision,
calibration hash, profile, workspace, flags and build time. The runtime checks that sidecar
before it loads the plan.

A build with the same ONNX hash, profile, precision, TensorRT version, GPU and flags as an
existing engine whose sidecar matches reuses it unless ``rebuild=True``. TensorRT and a CUDA
device are probed before any TensorRT object is created.

An image graph (``hardnet-export onnx --with-extraction``) gets a profile on both its inputs
instead of a batch range: ``image`` (H, W) from the graph's ``min_image_side`` square up to
``max_image``, tuned for ``opt_image``, and ``keypoints`` (K, 4) from 1 up to
``max_keypoints``, tuned for ``opt_keypoints`` (:func:`plan_image_profile`, torch- and
TensorRT-free); the sidecar records it with the graph's magnification, pyramid levels and
smallest side.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hardnet_export._cuda import (
    device_properties,
    require_tensorrt,
    set_cuda_device,
    tensorrt_version,
)
from hardnet_export._io import atomic_write_bytes, check_writable, sha256_file
from hardnet_export.artifacts.describe import DEFAULT_MAX_BATCH
from hardnet_export.artifacts.metadata import (
    IMAGE_GRAPH_REMEDY,
    GraphMetadata,
    check_image_graph_opset,
    read_metadata,
)
from hardnet_export.artifacts.sidecar import EngineSidecar, ImageProfile, read_sidecar
from hardnet_export.artifacts.variants import VARIANTS, variant_for
from hardnet_export.errors import (
    DeviceError,
    InputError,
    MissingDependencyError,
    MissingFileError,
    Placeholder,
    Remedy,
    parameters,
)
from hardnet_export.validate import check_int

DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH = 1, 256
#: An image engine's default profile: sizes as (width, height), the way ``opt_image`` and
#: ``max_image`` take them as text (``640x480``); keypoint counts K.
DEFAULT_OPT_IMAGE = (640, 480)
DEFAULT_MAX_IMAGE = (1920, 1920)
DEFAULT_OPT_KEYPOINTS = 2000
DEFAULT_MAX_KEYPOINTS = 8000
#: Far beyond any camera; TensorRT dimensions are 32-bit, and a side beyond this is a typo.
MAX_PROFILE_SIDE = 1 << 15

ImageSize = str | tuple[int, int]


@dataclass(frozen=True)
class EngineBuild:
    """An engine on disk, its sidecar, and whether an existing engine was reused."""

    engine: Path
    sidecar: EngineSidecar
    reused: bool


@dataclass(frozen=True)
class BuildOptions:
    """How TensorRT builds an engine, apart from which graph and where to (the build
    configuration, as Polygraphy's ``CreateConfig`` holds it): the profile, memory, DLA,
    compatibility and timing cache. Precision is not here: it lives in the graph.

    Attributes:
        min_batch: the smallest batch of the optimisation profile (patch graphs).
        opt_batch: the batch TensorRT tunes for.
        max_batch: the largest batch of the optimisation profile.
        opt_image: image graphs: the image size TensorRT tunes for, ``"WIDTHxHEIGHT"`` or
            (width, height); default 640x480.
        max_image: image graphs: the largest image, as ``opt_image``; default 1920x1920. The
            smallest is the graph's ``min_image_side`` square.
        opt_keypoints: image graphs: the keypoint count TensorRT tunes for; default 2000.
        max_keypoints: image graphs: the most keypoints in one call; default 8000.
        workspace_mib: TensorRT's workspace memory pool limit.
        timing_cache: a timing cache file to load (if it exists) and save after the build.
        dla_core: build for this DLA core (Jetson); FP16 and INT8 graphs only.
        gpu_fallback: with ``dla_core``, let layers DLA cannot run fall back to the GPU.
        version_compatible: a plan that later TensorRT versions (10.x plans on 11.x too) can
            run; it carries its own lean runtime, which the loader must trust.
        hardware_compatible: a plan for every Ampere-or-newer GPU (``AMPERE_PLUS``).
    """

    min_batch: int = DEFAULT_MIN_BATCH
    opt_batch: int = DEFAULT_OPT_BATCH
    max_batch: int = DEFAULT_MAX_BATCH
    opt_image: ImageSize | None = None
    max_image: ImageSize | None = None
    opt_keypoints: int | None = None
    max_keypoints: int | None = None
    workspace_mib: int = 1024
    timing_cache: str | Path | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    version_compatible: bool = False
    hardware_compatible: bool = False

    @property
    def batch(self) -> tuple[int, int, int]:
        """(min, opt, max) of the batch profile."""
        return self.min_batch, self.opt_batch, self.max_batch

    def image_options(self) -> dict[str, ImageSize | int | None]:
        """The image-graph profile options by name, None where not given."""
        return {
            "opt_image": self.opt_image,
            "max_image": self.max_image,
            "opt_keypoints": self.opt_keypoints,
            "max_keypoints": self.max_keypoints,
        }


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    options: BuildOptions | None = None,
    *,
    device: int = 0,
    rebuild: bool = False,
    **overrides: Any,
) -> EngineBuild:
    """Build (or reuse) a TensorRT engine for an ONNX graph from :mod:`hardnet_export.export`.

    Args:
        onnx_path: an FP32, FP16 or INT8 (Q/DQ) graph, or an image graph (FP32, FP16).
        out: the engine file; the sidecar goes to ``out + ".json"``.
        options: how to build (:class:`BuildOptions`; default: its defaults).
        device: the CUDA device to build on.
        rebuild: build even when a matching engine exists.
        overrides: fields of :class:`BuildOptions` to set over ``options``
            (``build_engine(graph, out, max_batch=64)``).

    Raises:
        MissingDependencyError: no real TensorRT (10.x or 11.x) or no CUDA device.
        FileNotFoundError, ValueError: a bad path, profile or option, or a graph TensorRT
            cannot parse.
        TypeError: an override that is no field of :class:`BuildOptions`.
        RuntimeError: TensorRT failed to build the engine.
    """
    options = dataclasses.replace(options or BuildOptions(), **overrides)
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise MissingFileError(f"ONNX graph not found: {onnx_path}")
    graph = read_metadata(onnx_path)
    check_image_graph_opset(onnx_path, graph, purpose="a TensorRT engine")
    batch, image = _plan_profile(onnx_path, graph, options)
    _check_options(onnx_path, graph, out, options, device)

    trt, gpu = _open_tensorrt(device, options.hardware_compatible)
    planned = EngineSidecar.plan(
        onnx_path,
        out,
        onnx_sha256=sha256_file(onnx_path),
        graph=graph,
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu["name"],
        compute_capability=gpu["compute_capability"],
        device_index=device,
        batch=batch,
        image=image,
        workspace_bytes=options.workspace_mib << 20,
        dla_core=options.dla_core,
        gpu_fallback=options.gpu_fallback,
        version_compatible=options.version_compatible,
        hardware_compatible=options.hardware_compatible,
    )
    if not rebuild:
        existing = _reusable(out, planned)
        if existing is not None:
            return EngineBuild(out, existing, reused=True)
    return EngineBuild(out, _build_and_write(onnx_path, out, planned, options.timing_cache), False)


def _plan_profile(
    onnx_path: Path, graph: GraphMetadata, options: BuildOptions
) -> tuple[tuple[int, int, int] | None, ImageProfile | None]:
    """The engine's profile: a batch range for a patch graph, an image profile for an image
    graph; options that belong to the other kind are refused."""
    if graph.kind == "image":
        _check_no_batch_options(onnx_path, *options.batch)
        if options.dla_core is not None:
            raise InputError(
                f"{onnx_path} is an image graph: DLA has no dynamic shapes, and an image "
                "graph's image and keypoint axes change with every call; build it for the GPU "
                "(without {dla_core})",
                remedies=parameters("dla_core"),
            )
        image = plan_image_profile(
            graph,
            opt_image=options.opt_image,
            max_image=options.max_image,
            opt_keypoints=options.opt_keypoints,
            max_keypoints=options.max_keypoints,
        )
        return None, image
    given = [name for name, value in options.image_options().items() if value is not None]
    if given:
        names = ", ".join("{" + name + "}" for name in given)
        raise InputError(
            f"{names} set the profile of an image graph's engine; {onnx_path} is a patch "
            "graph, whose profile is {min_batch}, {opt_batch} and {max_batch}",
            remedies=parameters(*given, "min_batch", "opt_batch", "max_batch"),
        )
    _check_profile(*options.batch)
    return options.batch, None


def _check_options(
    onnx_path: Path, graph: GraphMetadata, out: Path, options: BuildOptions, device: int
) -> None:
    """Everything about the build that can be checked before TensorRT is touched: numbers,
    the output paths, and whether TensorRT (or DLA) builds this graph's variant."""
    check_int("workspace_mib", options.workspace_mib, low=1, high=1 << 24, parameter=True)
    if options.dla_core is not None:
        check_int("dla_core", options.dla_core, low=0, high=15, parameter=True)
        check_dla_profile(*options.batch)
    check_int("device", device, low=0, high=1023, parameter=True)
    if out.is_dir():
        raise IsADirectoryError(f"cannot write {out}: it is a folder")
    check_writable(out)
    if options.timing_cache is not None:
        # The cache is written after the build, minutes from now: a bad folder fails here.
        check_writable(options.timing_cache)
    variant = variant_for(graph.precision, graph.flavour) if graph.precision != "unknown" else None
    if variant is not None and not variant.tensorrt:
        raise InputError(
            f"{onnx_path} is the {variant.name} variant, which TensorRT does not build "
            f"({variant.summary}); export a TensorRT variant: "
            f"{', '.join(v.name for v in VARIANTS if v.tensorrt)}"
        )
    if options.dla_core is not None and not (variant is not None and variant.dla):
        dla = [v.name for v in VARIANTS if v.dla]
        raise InputError(
            f"DLA runs {', '.join(dla)} graphs only; {onnx_path} is {graph.precision}: "
            "export it again, " + " or ".join("{" + name + "}" for name in dla),
            remedies={
                name: Remedy(
                    {"variant": name},
                    stage="onnx",
                    function="hardnet_export.export.onnx.export_onnx",
                )
                for name in dla
            },
        )


def _open_tensorrt(device: int, hardware_compatible: bool) -> tuple[ModuleType, dict[str, Any]]:
    """TensorRT (10.x or 11.x) and the properties of ``device``, made current; a
    hardware-compatible plan also needs an Ampere-or-newer GPU to build on."""
    require_tensorrt(device, purpose="building a TensorRT engine")
    import tensorrt as trt

    major, _ = tensorrt_version(trt)
    if major < 10:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} is too old: engines need TensorRT 10.x or 11.x "
            "(pip install 'hardnet-export[trt]')"
        )
    set_cuda_device(device)
    gpu = device_properties(device)
    if hardware_compatible and float(gpu["compute_capability"]) < 8.0:
        raise InputError(
            f"hardware-compatible (Ampere+) engines must be built on an Ampere or newer GPU; "
            f"{gpu['name']} has compute capability {gpu['compute_capability']}"
        )
    return trt, gpu


def _build_and_write(
    onnx_path: Path, out: Path, planned: EngineSidecar, timing_cache: str | Path | None
) -> EngineSidecar:
    """Build the plan, write it to ``out`` and its sidecar (what the build measured and the
    network's input name added to ``planned``) beside it."""
    started = time.perf_counter()
    plan, input_name = _build_plan(onnx_path, planned, timing_cache=timing_cache)
    atomic_write_bytes(out, plan)
    profile = (
        planned.profile
        if planned.graph_kind == "image"
        else {**planned.profile, "input": input_name}
    )
    sidecar = dataclasses.replace(
        planned,
        profile=profile,
        build_seconds=round(time.perf_counter() - started, 3),
        built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        timing_cache=str(timing_cache) if timing_cache is not None else None,
        engine_sha256=sha256_file(out),
    )
    sidecar.write(out)
    return sidecar


#: TensorRT dimensions are 32-bit; far below that, a profile beyond this is a typo.
MAX_PROFILE_BATCH = 1 << 20


def _check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    for name, value in (
        ("min_batch", min_batch),
        ("opt_batch", opt_batch),
        ("max_batch", max_batch),
    ):
        check_int(name, value, low=1, high=MAX_PROFILE_BATCH, parameter=True)
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise InputError(
            "the batch profile needs 1 <= min <= opt <= max, got "
            f"min={min_batch}, opt={opt_batch}, max={max_batch}"
        )


def _check_no_batch_options(onnx_path: Path, low: int, opt: int, high: int) -> None:
    if (low, opt, high) != (DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH, DEFAULT_MAX_BATCH):
        raise InputError(
            f"{onnx_path} is an image graph, whose engine has no batch profile (got "
            f"min={low}, opt={opt}, max={high}); its profile is {{opt_image}}, {{max_image}}, "
            "{opt_keypoints} and {max_keypoints}",
            remedies=parameters("opt_image", "max_image", "opt_keypoints", "max_keypoints"),
        )


def parse_image_size(
    value: ImageSize, name: str = "image size", *, parameter: bool = False
) -> tuple[int, int]:
    """``"640x480"`` (WIDTHxHEIGHT, as the CLI writes it) or (640, 480) -> (480, 640), the
    (height, width) order of the image tensor. ``parameter``: ``name`` is a parameter of
    the caller (``max_image``), which the CLI names as its flag.

    Raises:
        InputError: not two positive integers, or a side beyond :data:`MAX_PROFILE_SIDE`.
    """
    remedies = parameters(name) if parameter else None
    what = "{" + name + "}" if parameter else name
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InputError(
                f"{what} must look like 640x480 (WIDTHxHEIGHT), got {value!r}", remedies=remedies
            )
        width, height = (int(p) for p in parts)
    elif isinstance(value, tuple) and len(value) == 2 and all(type(v) is int for v in value):
        width, height = value
    else:
        raise InputError(
            f"{what} must be 'WIDTHxHEIGHT' or (width, height) integers, got {value!r}",
            remedies=remedies,
        )
    for side, axis in ((width, "width"), (height, "height")):
        if not 1 <= side <= MAX_PROFILE_SIDE:
            raise InputError(
                f"{what} {width}x{height}: the {axis} must be in 1..{MAX_PROFILE_SIDE}, got {side}",
                remedies=remedies,
            )
    return height, width


def plan_image_profile(
    graph: GraphMetadata,
    *,
    opt_image: ImageSize | None = None,
    max_image: ImageSize | None = None,
    opt_keypoints: int | None = None,
    max_keypoints: int | None = None,
) -> ImageProfile:
    """The optimisation profile of an engine for image graph ``graph`` (its metadata): images
    from the graph's ``min_image_side`` square to ``max_image``, tuned for ``opt_image``;
    keypoint counts from 1 to ``max_keypoints``, tuned for ``opt_keypoints`` (None: the
    defaults, :data:`DEFAULT_OPT_IMAGE` and so on; a default above a given maximum is
    lowered to it). Torch- and TensorRT-free.

    Raises:
        InputError: a malformed size, a side below the graph's ``min_image_side``, opt above
            max, or a keypoint count outside 1..2**20; the message names the option.
    """
    side = graph.min_image_side
    if graph.kind != "image" or not side:
        raise InputError(
            "an image profile needs an image graph with min_image_side metadata ({remedy}), "
            f"got a {graph.kind} graph",
            remedy=IMAGE_GRAPH_REMEDY,
        )
    largest = parse_image_size(
        max_image if max_image is not None else DEFAULT_MAX_IMAGE, "max_image", parameter=True
    )
    if opt_image is not None:
        tuned = parse_image_size(opt_image, "opt_image", parameter=True)
    else:
        default = parse_image_size(DEFAULT_OPT_IMAGE, "opt_image", parameter=True)
        tuned = (min(default[0], largest[0]), min(default[1], largest[1]))
    for shape, name in ((largest, "max_image"), (tuned, "opt_image")):
        if min(shape) < side:
            raise InputError(
                f"{{{name}}} {shape[1]}x{shape[0]} has a side below {side}, the smallest this "
                "image graph takes (its min_image_side)",
                remedies=parameters(name),
            )
    if tuned[0] > largest[0] or tuned[1] > largest[1]:
        raise InputError(
            f"{{opt_image}} {tuned[1]}x{tuned[0]} is larger than {{max_image}} "
            f"{largest[1]}x{largest[0]} in a side; the profile needs opt <= max",
            remedies=parameters("opt_image", "max_image"),
        )
    high = check_int(
        "max_keypoints",
        max_keypoints if max_keypoints is not None else DEFAULT_MAX_KEYPOINTS,
        low=1,
        high=MAX_PROFILE_BATCH,
        parameter=True,
    )
    if opt_keypoints is None:
        opt = min(DEFAULT_OPT_KEYPOINTS, high)
    else:
        opt = check_int(
            "opt_keypoints", opt_keypoints, low=1, high=MAX_PROFILE_BATCH, parameter=True
        )
    if opt > high:
        raise InputError(
            f"{{opt_keypoints}} {opt} is above {{max_keypoints}} {high}; the profile needs "
            "1 <= opt <= max",
            remedies=parameters("opt_keypoints", "max_keypoints"),
        )
    return ImageProfile((side, side), tuned, largest, 1, opt, high)


def check_dla_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    """DLA has no dynamic dimensions: its profile must be one fixed batch.

    TensorRT's "Working with DLA" ("DLA Supported Layers and Restrictions", general
    restrictions): dynamic dimensions are not supported on DLA, so an optimisation profile's
    min, opt and max must be equal, and the batch at most ``builder.max_DLA_batch_size``
    (checked at build time, where the builder exists).

    Raises:
        InputError: a dynamic profile, naming the fixed profile to build with.
    """
    if not min_batch == opt_batch == max_batch:
        raise InputError(
            "DLA engines need a fixed batch profile (min = opt = max), got "
            f"min={min_batch}, opt={opt_batch}, max={max_batch}; build with {{remedy}}",
            remedy=FIXED_BATCH,
        )


#: A fixed batch profile, B of the user's choosing: what DLA engines are built with.
FIXED_BATCH = Remedy(dict.fromkeys(("min_batch", "opt_batch", "max_batch"), Placeholder("B")))

#: Where TensorRT runs on DLA, from TensorRT 11.4.1's "Working with DLA" page.
DLA_SUPPORT = (
    "DLA runs with TensorRT 10.x up to 10.7 on JetPack 6 (Jetson AGX Orin and Orin NX/Nano), "
    "and with TensorRT 11.4.1 or later on Jetson AGX Orin under JetPack 7.2.2 or later; "
    "TensorRT 11.0-11.3 has no DLA, 11.4.0 only on Windows on ARM (beta), and Jetson Thor "
    "has none"
)


def _reusable(out: Path, planned: EngineSidecar) -> EngineSidecar | None:
    """The existing sidecar when ``out`` is an engine built with the same key, else None."""
    if not out.is_file():
        return None
    try:
        existing = read_sidecar(out)
    except InputError:
        return None
    if existing is None or existing.cache_key() != planned.cache_key():
        return None
    if existing.engine_sha256 != sha256_file(out):
        return None  # the plan was replaced or truncated since its sidecar was written
    return existing


def _build_plan(
    onnx_path: Path, sidecar: EngineSidecar, *, timing_cache: str | Path | None
) -> tuple[bytes, str]:
    """Parse, configure and build: the plan and the network's input name. The caller has
    checked TensorRT and the device."""
    import tensorrt

    major, _ = tensorrt_version(tensorrt)
    logger = tensorrt.Logger(tensorrt.Logger.WARNING)
    builder = tensorrt.Builder(logger)
    # TensorRT 11 networks are always strongly typed; TensorRT 10 opts in with the flag.
    flags = 0 if major >= 11 else 1 << int(tensorrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    # The parser owns the graph's weights: it must outlive the build.
    parser = tensorrt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse {onnx_path}: {errors or 'no details'}")
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    per_input, input_name = _input_shapes(onnx_path, sidecar, names)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(tensorrt.MemoryPoolType.WORKSPACE, sidecar.workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, shape in per_input.items():
        profile.set_shape(
            name,
            tensorrt.Dims(shape["min"]),
            tensorrt.Dims(shape["opt"]),
            tensorrt.Dims(shape["max"]),
        )
    config.add_optimization_profile(profile)
    _configure_device(tensorrt, builder, config, sidecar)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    _load_timing_cache(config, cache_path)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DeviceError(
            f"TensorRT failed to build an engine from {onnx_path} (see its log above)"
        )
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan)), input_name


def _input_shapes(
    onnx_path: Path, sidecar: EngineSidecar, names: list[str]
) -> tuple[dict[str, Any], str]:
    """The profile's (min, opt, max) shapes by network input, and a patch graph's one input
    name ("" for an image graph), checked against the inputs TensorRT parsed."""
    shapes = sidecar.profile
    if sidecar.graph_kind == "image":
        # One profile, both inputs: (H, W) image and (K, 4) keypoints.
        per_input = {name: shapes[name] for name in ("image", "keypoints")}
        if sorted(names) != sorted(per_input):
            raise InputError(
                f"{onnx_path} is an image graph, but TensorRT sees inputs {names}, expected "
                "image and keypoints"
            )
        return per_input, ""
    if len(names) != 1:
        raise InputError(f"{onnx_path} must have one input, TensorRT sees {len(names)}")
    return {names[0]: shapes}, names[0]


def _configure_device(tensorrt: Any, builder: Any, config: Any, sidecar: EngineSidecar) -> None:
    """Where the engine runs: a DLA core (checked against this device and its batch limit)
    with or without GPU fallback, and which TensorRT versions and GPUs may load the plan."""
    dla_core = sidecar.dla_core
    if dla_core is not None:
        available = builder.num_DLA_cores
        if not 0 <= dla_core < available:
            raise InputError(
                f"DLA core {dla_core} requested, but this device has {available} DLA core(s) "
                f"with TensorRT {tensorrt.__version__} ({DLA_SUPPORT})"
            )
        batch = sidecar.profile["max"][0]
        dla_max = int(builder.max_DLA_batch_size)
        if batch > dla_max:
            raise InputError(
                f"DLA runs batches of at most {dla_max} (builder.max_DLA_batch_size), the "
                f"profile asks for {batch}; build with {{remedy}}, B <= {dla_max}",
                remedy=FIXED_BATCH,
            )
        config.default_device_type = tensorrt.DeviceType.DLA
        config.DLA_core = dla_core
        if sidecar.gpu_fallback:
            config.set_flag(tensorrt.BuilderFlag.GPU_FALLBACK)
    if sidecar.version_compatible:
        config.set_flag(tensorrt.BuilderFlag.VERSION_COMPATIBLE)
    if sidecar.hardware_compatibility == "ampere_plus":
        config.hardware_compatibility_level = tensorrt.HardwareCompatibilityLevel.AMPERE_PLUS


def _load_timing_cache(config: Any, cache_path: Path | None) -> None:
    """Give the build the timing cache at ``cache_path`` (an empty one where there is no
    file yet, or no path).

    TensorRT's ``IBuilderConfig.create_timing_cache`` returns no cache (None in Python) for
    bytes it cannot deserialise, and ``set_timing_cache`` returns False for a cache whose
    verification header (TensorRT version, device) does not match unless told to ignore it
    (TensorRT API reference, IBuilderConfig::createTimingCache and setTimingCache;
    ITimingCache: "must be generated by a TensorRT build of exact same version"); passing
    None on would raise a bare TypeError from the bindings.

    Raises:
        InputError: one line naming the file and what is wrong with it.
    """
    cache_bytes = b""
    if cache_path is not None and cache_path.exists():
        try:
            cache_bytes = cache_path.read_bytes()
        except OSError as exc:
            raise InputError(
                f"timing cache {cache_path} cannot be read ({exc.strerror or exc}); expected a "
                "TensorRT timing cache file, or a path where none exists yet"
            ) from exc
    cache = config.create_timing_cache(cache_bytes)
    if cache is None:
        raise InputError(
            f"timing cache {cache_path} ({len(cache_bytes)} bytes) is not a TensorRT timing "
            "cache this TensorRT can read (corrupt, truncated, or from another tool or "
            "version); delete it, and the build writes a new one"
        )
    if not config.set_timing_cache(cache, False):
        raise InputError(
            f"timing cache {cache_path} was made by another TensorRT version or GPU; expected "
            "one from this TensorRT and GPU: delete it, and the build writes a new one"
        )
