"""The image graph: patch extraction and HardNet in one ONNX graph.

``image`` (H, W) uint8 and ``keypoints`` (K, 4) float32 (x, y, size, angle, OpenCV's
conventions) go in, ``descriptors`` (K, 128) float32 come out; H, W and K are dynamic. The
graph cuts the patches the way :func:`hardnet_export.geometry.extract_patches` does:

- a Gaussian pyramid of :data:`PYRAMID_LEVELS` levels, each ``cv2.pyrDown`` of the one
  before (5-tap [1 4 6 4 1] / 16, reflect-101 borders, rounded to grey levels as uint8
  pyramids are);
- per level the pre-blurred copies of ``geometry.PYRAMID_BLURS``, with the fixed-point
  kernels OpenCV's 8-bit ``GaussianBlur`` uses (:func:`blur_kernels`): pyramid and blurs are
  OpenCV's bit for bit;
- all (level, blur) images in one single-channel atlas (:func:`_atlas`), and per keypoint
  the level ``min(floor(log2(s)), last level)`` and the blur nearest to
  ``antialias_blur(s / 2**level)``, with ``s = magnification * size / 32``, chosen as the
  host chooses them, which name its tile;
- sampling coordinates folded into the tile by ``BORDER_REFLECT_101`` (:func:`_reflect`),
  then one bilinear ``GridSample`` (``align_corners=1``) over the atlas cuts every patch.
  Sampling each level with all its blurs as channels cost ``levels x blurs`` samplings of
  every patch: on an 800x640 frame, 2 CPU cores (Xeon, AMX), ONNX Runtime, 300 keypoints
  took 1.03 s that way and take 0.38 s now, 2000 keypoints 5.7 s and 1.75 s (1.5 s of it
  the convolutions).

Borders of the pyramid and the blurs are padded by gathering folded indices (not ``Pad``'s
reflect mode, which needs a side longer than the pad), so any image of at least 2x2 pixels
works at any level; but torch's exporter specialises a side of 1, so every level keeps at
least 2 pixels: sides of at least ``2**(levels - 1) + 1`` (129 for the default 8 levels;
:func:`min_image_side`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardnet_export._io import check_writable
from hardnet_export.artifacts.metadata import (
    IMAGE_GRAPH_REMEDY,
    MAX_IMAGE_GRAPH_OPSET,
    GraphMetadata,
)
from hardnet_export.artifacts.variants import VARIANTS, Variant, get_variant
from hardnet_export.errors import InputError, Remedy
from hardnet_export.export.common import (
    MIN_OPSET,
    OUTPUT_NAME,
    check_opset,
    finish_export,
    fold_batchnorm,
    name_layers,
    producer,
    quiet_exporter,
    resolve_weights,
    variant_graph,
    weights_model_name,
    write_graph,
)
from hardnet_export.geometry import (
    DEFAULT_MAGNIFICATION,
    PATCH_SIZE,
    PYRAMID_BLURS,
    check_magnification,
)
from hardnet_export.host import require
from hardnet_export.validate import check_int

if TYPE_CHECKING:
    import onnx
    import torch

    from hardnet_export.model import HardNet

IMAGE_INPUT = "image"
KEYPOINTS_INPUT = "keypoints"
#: Pyramid levels in the graph (level L halves the image L times): keypoints with
#: ``magnification * size / 32 >= 2**PYRAMID_LEVELS`` need a deeper level than the graph has.
PYRAMID_LEVELS = 8
#: OpenCV keeps 8-bit Gaussian kernels in fixed point with this many fraction bits.
_BLUR_FRACTION_BITS = 8
_PYR_KERNEL = (1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16)


def blur_kernels() -> list[np.ndarray]:
    """The 1-D kernels ``cv2.GaussianBlur(uint8, (0, 0), sigma)`` uses for each pre-blur, as
    its 8-bit path has them: fixed point with 8 fraction bits, rounded from the outside in
    with the error carried to the next tap, the centre tap taking what makes the sum 1
    (OpenCV's ``getGaussianKernelFixedPoint_ED``); zero end taps dropped.

    With these, both passes are exact in float32 (an 8-bit pixel times an 8-bit fraction,
    twice, stays within 24 bits) and one round half up at the end gives OpenCV's output bit
    for bit (``tests/export/test_image_graph.py`` checks it).

    Shape:
        - Output: one (2r + 1,) float64 kernel per entry of ``PYRAMID_BLURS`` ((1,) for 0).
    """
    one = 1 << _BLUR_FRACTION_BITS
    kernels = []
    for sigma in PYRAMID_BLURS.tolist():
        if sigma == 0.0:
            kernels.append(np.ones(1))
            continue
        # OpenCV's size rule for 8-bit images: round(6 sigma + 1), made odd.
        ksize = int(round(sigma * 6 + 1)) | 1
        offsets = np.arange(ksize) - (ksize - 1) / 2.0
        exact = np.exp(-0.5 * (offsets / sigma) ** 2)
        exact /= exact.sum()
        taps = np.zeros(ksize)
        carried = 0.0
        for i in range(ksize // 2):
            wanted = exact[i] * one + carried
            taps[i] = taps[ksize - 1 - i] = np.rint(wanted)
            carried = wanted - taps[i]
        taps[ksize // 2] = one - 2 * taps[: ksize // 2].sum()
        while taps[0] == 0:
            taps = taps[1:-1]
        kernels.append(taps / one)
    return kernels


def _fold_index(x: torch.Tensor, dim: int, pad: int) -> torch.Tensor:
    """Indices ``-pad .. n - 1 + pad`` along ``dim`` of ``x`` (side ``n``) reflected
    (BORDER_REFLECT_101) into ``0 .. n - 1``; a side of 1 maps all to 0.

    Shape:
        - x: (H, W).
        - Output: (n + 2 pad,) int64.
    """
    import torch

    index = torch.arange(-pad, x.shape[dim] + pad, device=x.device, dtype=torch.int64)
    # The period as a tensor from the data: a Python expression of the symbolic side would
    # make the exporter specialise on it.
    # Maximum, not clamp: TensorRT's ONNX parser takes Clip in float types only
    # (onnx-tensorrt docs/operators.md, TensorRT 10).
    doubled = 2 * (_side(x, dim) - 1)
    period = torch.maximum(doubled, torch.ones_like(doubled))
    folded = torch.remainder(index, period)
    return torch.minimum(folded, period - folded)


def _side(x: torch.Tensor, dim: int) -> torch.Tensor:
    # The side as a tensor computed from the data, so the exporter keeps it dynamic.
    import torch

    return torch.ones_like(x.select(1 - dim, 0), dtype=torch.int64).sum()


def _filter(x: torch.Tensor, kernel: list[float], dim: int, stride: int) -> torch.Tensor:
    """Correlate the rows (dim 1) or columns (dim 0) of ``x`` with ``kernel``, reflect-101
    borders, keeping every ``stride``-th output.

    Shape:
        - x: (H, W) float32.
        - Output: (H, ceil(W / stride)) for dim 1, (ceil(H / stride), W) for dim 0.
    """
    import torch

    pad = len(kernel) // 2
    padded = torch.index_select(x, dim, _fold_index(x, dim, pad))
    out = None
    for tap, weight in enumerate(kernel):
        piece = padded.narrow(dim, tap, padded.shape[dim] - 2 * pad)
        if stride > 1:
            piece = piece[::stride] if dim == 0 else piece[:, ::stride]
        term = piece * weight
        out = term if out is None else out + term
    assert out is not None
    return out


def _round(x: torch.Tensor) -> torch.Tensor:
    # OpenCV's fixed-point uint8 filters round half up.
    import torch

    return torch.floor(x + 0.5)


def _reflect(coord: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Sampling coordinates folded into ``0 .. side - 1`` by BORDER_REFLECT_101 (about the
    outer pixel centres); bilinear weights of a folded coordinate equal those of reflected
    neighbour indices, so this is the host's border rule.

    Shape:
        - coord: (K, 32, 32) float32; side: (K, 1, 1) float32, at least 2.
        - Output: like ``coord``.
    """
    import torch

    period = 2.0 * (side - 1.0)
    folded = torch.remainder(coord, period)
    return torch.minimum(folded, period - folded)


def _atlas(
    pyramid: list[torch.Tensor], blurs: list[list[float]], levels: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (level, blur) image in one single-channel atlas, so one ``GridSample`` cuts
    all patches (one per level and blur cost ``levels x blurs`` samplings of every patch).

    Layout: band 0 holds level 0's blurs side by side; band 1, below it, holds levels
    1.. side by side, each as its blurs side by side, padded to level 1's height. Both bands
    are padded to ``blurs x (W + levels)`` columns, a bound on band 1's width (the sides of
    levels 1.. add up to at most ``W + levels - 1``).

    Shape:
        - pyramid: ``levels`` float32 images (h_l, w_l), level 0 (H, W).
        - Output: atlas (H + h_1, blurs x (W + levels)); per level the atlas column and row
          of its first blur, and its width and height: (levels,) int64 each.
    """
    import torch

    def blurred(source: torch.Tensor) -> torch.Tensor:
        copies = []
        for kernel in blurs:
            if len(kernel) == 1:
                copies.append(source)
            else:
                copies.append(_round(_filter(_filter(source, kernel, 1, 1), kernel, 0, 1)))
        return torch.cat(copies, dim=1)

    count = len(blurs)
    height, width = pyramid[0].shape
    atlas_width = count * (width + levels)
    band0 = torch.nn.functional.pad(blurred(pyramid[0]), (0, atlas_width - count * width))
    widths = [_side(level, 1) for level in pyramid]
    heights = [_side(level, 0) for level in pyramid]
    zero = torch.zeros_like(widths[0])
    origin_x = [zero]
    origin_y = [zero]
    rows = [band0]
    if levels > 1:
        band_height = pyramid[1].shape[0]
        groups = []
        column = zero
        used = 0
        for index in range(1, levels):
            level = pyramid[index]
            origin_x.append(column)
            origin_y.append(heights[0])
            groups.append(
                torch.nn.functional.pad(blurred(level), (0, 0, 0, band_height - level.shape[0]))
            )
            column = column + count * widths[index]
            used = used + count * level.shape[1]
        band1 = torch.cat(groups, dim=1)
        rows.append(torch.nn.functional.pad(band1, (0, atlas_width - used)))
    atlas = torch.cat(rows, dim=0)
    return (
        atlas,
        torch.stack(origin_x),
        torch.stack(origin_y),
        torch.stack(widths),
        torch.stack(heights),
    )


def image_module(model: HardNet, magnification: float, levels: int = PYRAMID_LEVELS) -> Any:
    """A torch module: (image, keypoints) -> descriptors, cutting patches as the host does.

    Shape:
        - image: (H, W) uint8, H, W >= 2.
        - keypoints: (K, 4) float32 (x, y, size, angle), all in bounds, K >= 1.
        - Output: (K, 128) float32.
    """
    import torch
    from torch import nn

    blurs = [k.tolist() for k in blur_kernels()]
    blur_values = torch.tensor(PYRAMID_BLURS, dtype=torch.float32)

    class ImageHardNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = fold_batchnorm(model)
            grid = torch.arange(PATCH_SIZE, dtype=torch.float32) - (PATCH_SIZE - 1) / 2.0
            self.register_buffer("grid", grid, persistent=False)
            self.register_buffer("blur_values", blur_values, persistent=False)

        def forward(self, image: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
            kps = keypoints.to(torch.float32)
            x, y, size, angle = kps.unbind(1)
            scale = magnification * size / PATCH_SIZE
            wanted = torch.floor(torch.log2(torch.clamp(scale, min=1.0)))
            level = image.to(torch.float32)
            pyramid = [level]
            for _ in range(levels - 1):
                level = _round(_filter(_filter(level, list(_PYR_KERNEL), 1, 2), _PYR_KERNEL, 0, 2))
                pyramid.append(level)
            # The host stops halving once a side is below 2 pixels: the deepest level it has.
            deepest = torch.zeros((), dtype=torch.float32)
            for index in range(1, levels):
                above = pyramid[index - 1]
                small = torch.minimum(_side(above, 0), _side(above, 1))
                deepest = deepest + (small >= 2).to(torch.float32)
            chosen = torch.minimum(wanted, deepest)
            factor = torch.pow(2.0, chosen)
            residual = scale / factor
            sigma = 0.5 * torch.sqrt(torch.clamp(residual * residual - 1.0, min=0.0))
            blur = torch.argmin(torch.abs(sigma[:, None] - self.blur_values[None, :]), dim=1)
            theta = torch.where(angle < 0, torch.zeros_like(angle), torch.deg2rad(angle))
            cos = (residual * torch.cos(theta))[:, None, None]
            sin = (residual * torch.sin(theta))[:, None, None]
            u = self.grid[None, None, :]
            v = self.grid[None, :, None]
            atlas, origin_x, origin_y, widths, heights = _atlas(pyramid, blurs, levels)
            at = chosen.to(torch.int64)
            tile_w = widths[at].to(torch.float32)[:, None, None]
            tile_h = heights[at].to(torch.float32)[:, None, None]
            tile_x = (origin_x[at] + blur * widths[at]).to(torch.float32)[:, None, None]
            tile_y = origin_y[at].to(torch.float32)[:, None, None]
            cx = (x / factor)[:, None, None]
            cy = (y / factor)[:, None, None]
            sx = _reflect(cx + cos * u - sin * v, tile_w)
            sy = _reflect(cy + sin * u + cos * v, tile_h)
            atlas_h = _side(atlas, 0).to(torch.float32)
            atlas_w = _side(atlas, 1).to(torch.float32)
            # align_corners: -1 and 1 are the atlas's outer pixel centres.
            gx = 2.0 * (tile_x + sx) / (atlas_w - 1.0) - 1.0
            gy = 2.0 * (tile_y + sy) / (atlas_h - 1.0) - 1.0
            grid = torch.stack([gx, gy], dim=-1).reshape(1, -1, PATCH_SIZE, 2)
            sampled = torch.nn.functional.grid_sample(
                atlas[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True
            )  # (1, 1, K * 32, 32)
            out = sampled.reshape(-1, PATCH_SIZE, PATCH_SIZE)
            patches = torch.clamp(_round(out), 0.0, 255.0)[:, None]
            return self.net(patches)

    return ImageHardNet().eval()


def min_image_side(levels: int = PYRAMID_LEVELS) -> int:
    """The smallest image side a graph of ``levels`` pyramid levels takes: every level must
    keep a side of 2 pixels (torch's exporter specialises sides of 1)."""
    return 2 ** (levels - 1) + 1


def image_graph(
    model: HardNet, *, magnification: float, opset: int, levels: int = PYRAMID_LEVELS
) -> onnx.ModelProto:
    """The FP32 image graph from ``torch.onnx.export(dynamo=True)``; H, W and K dynamic, sides
    at least :func:`min_image_side`."""
    import torch
    from torch.export import Dim

    module = image_module(model, magnification, levels)
    side = min_image_side(levels)
    image = torch.zeros((side + 31, side + 63), dtype=torch.uint8)
    keypoints = torch.tensor([[20.0, 20.0, 4.0, 0.0], [10.0, 30.0, 8.0, 45.0]])
    with quiet_exporter():
        program = torch.onnx.export(
            module,
            (image, keypoints),
            dynamo=True,
            input_names=[IMAGE_INPUT, KEYPOINTS_INPUT],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes={
                "image": {0: Dim("height", min=side), 1: Dim("width", min=side)},
                "keypoints": {0: Dim("keypoints")},
            },
            external_data=False,
            optimize=False,
            verbose=False,
        )
    proto = finish_export(program, opset)
    name_layers(proto)
    return proto


def export_image_graph(
    weights: str | Path | HardNet | None,
    out: str | Path,
    *,
    variant: str | Variant = "fp32",
    opset: int = MIN_OPSET,
    magnification: float | None = None,
    pyramid_levels: int | None = None,
) -> Path:
    """Export HardNet as the image graph of one variant (inputs ``image`` (H, W) uint8 and
    ``keypoints`` (K, 4) float32, patches cut in the graph) to one ONNX file, written
    atomically to ``out``; no PyTorch parity report (``runtime`` tests compare it with the
    host's patch extraction).

    Args:
        weights: as :func:`hardnet_export.export.onnx.export_onnx` takes them.
        out: the ``.onnx`` file to write (its folder must exist).
        variant: one whose record allows an image graph (``image``: ``fp32``, ``fp16``), or
            its name.
        opset: ONNX opset, 18 to 19 (``MAX_IMAGE_GRAPH_OPSET``): from opset 20 on,
            TensorRT runs GridSample's bilinear mode as nearest.
        magnification: the support region in units of ``KeyPoint.size`` (default
            :data:`hardnet_export.geometry.DEFAULT_MAGNIFICATION`).
        pyramid_levels: pyramid levels, 1..15 (default :data:`PYRAMID_LEVELS`): keypoint
            sizes below ``2**levels * 32 / magnification``, image sides of at least
            ``2**(levels - 1) + 1``.

    Returns:
        ``out`` as a Path.
    """
    chosen = variant if isinstance(variant, Variant) else get_variant(variant)
    if not chosen.image:
        allowed = " or ".join(v.name for v in VARIANTS if v.image)
        raise InputError(
            f"an image graph ({{image}}) is {allowed}, got the {chosen.name} variant; export it "
            "as a patch graph ({patch})",
            remedies={
                "image": IMAGE_GRAPH_REMEDY,
                "patch": Remedy(
                    {"variant": chosen.name},
                    stage="onnx",
                    function="hardnet_export.export.onnx.export_onnx",
                ),
            },
        )
    check_opset(opset)
    if opset > MAX_IMAGE_GRAPH_OPSET:
        raise InputError(
            f"an image graph is exported at opset {MIN_OPSET}..{MAX_IMAGE_GRAPH_OPSET}, got "
            f"{opset}: from opset 20 GridSample's bilinear mode is 'linear', which TensorRT's "
            "ONNX importer runs as nearest (NVIDIA/TensorRT#4646)"
        )
    scale = check_magnification(DEFAULT_MAGNIFICATION if magnification is None else magnification)
    levels = check_int(
        "pyramid_levels",
        PYRAMID_LEVELS if pyramid_levels is None else pyramid_levels,
        low=1,
        high=15,
    )
    require("an ONNX export", "torch", "onnx", "onnxscript")
    out = Path(out)
    check_writable(out)

    model, weights_sha, provenance = resolve_weights(weights)
    fp32 = image_graph(model, magnification=scale, opset=opset, levels=levels)
    proto, extra = variant_graph(fp32, chosen, chosen.check_options(None))
    side = min_image_side(levels)
    metadata = GraphMetadata(
        producer=producer(),
        precision=chosen.precision,
        input={
            "name": IMAGE_INPUT,
            "dtype": "uint8",
            "shape": ["height", "width"],
            "range": [0, 255],
            "keypoints": {
                "name": KEYPOINTS_INPUT,
                "dtype": "float32",
                "shape": ["keypoints", 4],
                "columns": ["x", "y", "size", "angle"],
            },
            "normalisation": "patches cut and standardised inside the graph",
        },
        output={"name": OUTPUT_NAME, "dtype": "float32", "shape": ["keypoints", 128]},
        weights_sha256=weights_sha,
        weights_provenance=provenance,
        graph_kind="image",
        magnification=scale,
        pyramid_levels=levels,
        min_image_side=side,
        model_name=weights_model_name(weights),
        width=model.width,
        layout=model.layout,
        **extra,
    )
    return write_graph(proto, metadata, out)
