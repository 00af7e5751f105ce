"""Quantisation-aware fine-tuning: HardNet with the fake quantisation of its INT8 Q/DQ graph.

:class:`QatHardNet` runs a :class:`~hardnet_export.model.HardNet` the way the exported Q/DQ
graph with every conv in int8 computes it (:mod:`hardnet_export.export.int8`), so that
training sees the graph's rounding and clipping:

- BatchNorm is folded into the conv before its weights are quantised, with the running
  statistics, as the export folds it (:func:`hardnet_export.export.common.fold_batchnorm`):
  the graph has no BatchNorm node. The statistics stay frozen during QAT (the BatchNorm
  layers run in eval mode), or the folded weights training sees would not be the graph's.
- Weights: per output channel, symmetric int8, ``scale = max|w| / 127`` (``/ 64`` for the
  ``cpu`` flavour's 7-bit weights), as ONNX Runtime's quantiser makes them with
  ``WeightSymmetric``. ``cpu`` biases are int32 at ``input scale x weight scale``;
  ``tensorrt`` biases stay float (TensorRT's parser rejects int32 bias dequantisation).
- Activations, per tensor: ``cpu``: uint8 asymmetric at every conv's input and the last
  conv's output, each Relu folded into its conv's uint8 range (zero point 0: the clamp is
  the Relu); ``tensorrt``: int8 symmetric at every conv's input, Relu in float.
- Gradients pass the rounding straight through, and are zero where a value clips.
- ``exact_input`` (``cpu`` only): the first conv reads the grey levels less 128, which
  uint8 holds exactly at scale 1, and the per-patch standardisation, an affine map, is
  applied to that conv's output instead of its input (with the zero padding's share
  corrected per output position), as :mod:`hardnet_export.export.exact_input` writes the
  graph. The same function in float; in int8 it removes the rounding of the standardised
  patch, which decides the worst patches of the standardised form (faint texture on a
  near-flat patch).

Activation ranges are an EMA of each batch's ``clip`` and ``1 - clip`` quantiles (default
0.001 %: ONNX Runtime's percentile calibration keeps 99.999 %) during the first
``observe_steps`` steps,
then frozen; the scales follow from them by
:func:`~hardnet_export.artifacts.quantisation.activation_qparams`, the function the export
uses to write them, so the exported graph holds exactly the scales training used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from hardnet_export.artifacts.quantisation import (
    EXACT_INPUT_OFFSET,
    EXACT_INPUT_RANGE,
    QAT_CONVS,
    QAT_POINTS,
    QatRecord,
    activation_qparams,
    weight_qmax,
)
from hardnet_export.errors import InputError
from hardnet_export.model import HardNet
from hardnet_export.shipped import STD_EPSILON

#: The share of values clipped at each end of an observed range (as the percentile
#: calibration's 99.999 %).
CLIP_FRACTION = 1e-5
#: Weight of each new batch in the ranges' moving average.
EMA_MOMENTUM = 0.1
#: Values a quantile is taken over at most (a random subset beyond; kthvalue is O(n)).
QUANTILE_SAMPLE = 1 << 22


class _RoundSTE(torch.autograd.Function):
    """Round half to even (as QuantizeLinear) with the identity as its gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def fake_quantize(x: torch.Tensor, scale: float, zero: int, qmin: int, qmax: int) -> torch.Tensor:
    """QuantizeLinear then DequantizeLinear, per tensor: ``(clip(round(x / s) + z) - z) * s``
    in float32; the gradient passes where ``x`` is not clipped."""
    q = _RoundSTE.apply(x / scale) + zero
    inside = (q >= qmin) & (q <= qmax)
    clipped = torch.where(inside, q, q.detach().clamp(qmin, qmax))
    return (clipped - zero) * scale


def fake_quantize_weight(w: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 weights (zero point 0) and their scales.

    The scale is ``2 max|w| / (2 qmax)`` computed in float64 and stored as float32, as ONNX
    Runtime's quantiser computes it; it is a function of the weights, and its gradient
    is not taken (the usual straight-through choice: the weights move, the grid follows).

    Shape:
        - w: (C_out, ...).
        - output: the fake-quantised weights, like ``w``; the scales (C_out,).
    """
    absmax = w.detach().abs().reshape(len(w), -1).amax(dim=1).double()
    scale = (2 * absmax / (2 * qmax)).float()
    scale = torch.where(scale < torch.finfo(torch.float32).tiny, torch.ones_like(scale), scale)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = _RoundSTE.apply(w / scale.reshape(shape)).clamp(-qmax, qmax)
    return q * scale.reshape(shape), scale


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv's weight and bias with the BatchNorm's running statistics folded in, as
    ``torch.nn.utils.fusion.fuse_conv_bn_eval`` (the export's folding) computes them."""
    inv = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv)
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = conv.weight * (gamma * inv).reshape(-1, 1, 1, 1)
    bias = (conv_bias - bn.running_mean) * inv * gamma + beta
    return weight, bias


def _quantile_range(x: torch.Tensor, clip: float = CLIP_FRACTION) -> tuple[float, float]:
    """The ``clip`` and ``1 - clip`` quantiles of ``x``; under DistributedDataParallel, of
    every rank's ``x`` together, so that all ranks hold the same ranges, those a single
    process would observe on the whole batch."""
    flat = x.detach().reshape(-1).float()
    if flat.numel() > QUANTILE_SAMPLE:
        picks = torch.randint(0, flat.numel(), (QUANTILE_SAMPLE,), device=flat.device)
        flat = flat[picks]
    flat = _all_ranks(flat)
    n = flat.numel()
    k = max(1, int(n * clip))
    low = flat.kthvalue(k).values if k < n else flat.min()
    high = flat.kthvalue(n - k + 1).values if k < n else flat.max()
    return float(low), float(high)


def _all_ranks(flat: torch.Tensor) -> torch.Tensor:
    """``flat`` of every rank, concatenated (``flat`` itself outside a process group).

    Each rank observes its share of the batch: with ranges of their own the ranks would
    fake-quantise differently while DDP averages their gradients, and DDP's buffer
    broadcast would keep rank 0's share alone.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flat
    sizes = [
        torch.zeros(1, dtype=torch.int64, device=flat.device) for _ in range(dist.get_world_size())
    ]
    dist.all_gather(sizes, torch.tensor([flat.numel()], device=flat.device))
    if len({int(t) for t in sizes}) != 1:
        raise InputError(
            f"QAT ranks observed different numbers of values ({[int(t) for t in sizes]}): "
            "every rank needs the same share of the batch"
        )
    parts = [torch.empty_like(flat) for _ in sizes]
    dist.all_gather(parts, flat)
    return torch.cat(parts)


def _exact_first_conv(
    patches: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, conv: nn.Conv2d
) -> torch.Tensor:
    """The first conv on the standardised patch, computed as the exact-input graph does:
    the conv of the grey levels less 128, then the standardisation's affine map on its
    output, in the graph's order of float operations.

    ``conv(z) = (conv(x - 128) - (mean - 128) * conv(1)) / (std + eps)`` for ``z`` the
    standardised patch, ``conv(1)`` the sum of each output position's in-bounds weights (the
    zero padding adds none); the standardisation's statistics are detached, as in
    :meth:`~hardnet_export.model.HardNet.standardize`.

    Shape:
        - patches: (N, 1, H, W) uint8 or float holding grey levels.
        - weight: (C, 1, k, k); bias: (C,).
        - Output: (N, C, H', W').
    """
    pixels = patches.float()
    mean, spread = HardNet.patch_statistics(pixels)
    accumulated = nn.functional.conv2d(
        pixels - EXACT_INPUT_OFFSET, weight, None, conv.stride, conv.padding
    )
    ones = torch.ones((1, 1, *pixels.shape[2:]), dtype=pixels.dtype, device=pixels.device)
    weight_sum = nn.functional.conv2d(ones, weight, None, conv.stride, conv.padding)
    correction = (mean - EXACT_INPUT_OFFSET) * weight_sum
    # A constant patch: the two terms cancel in exact arithmetic only (see exact_input).
    textured = (spread > STD_EPSILON).to(pixels.dtype)
    return (accumulated - correction) * textured / spread + bias[None, :, None, None]


class QatHardNet(nn.Module):
    """HardNet under fake quantisation for one INT8 flavour at a time (see the module
    docstring). ``flavour`` chooses the one the next forward uses; ``observing`` lets the
    forward update the activation ranges (training mode only).

    Args:
        net: the network to fine-tune (its weights are the ones trained and saved).
        targets: the flavours to fake-quantise for: ``("cpu",)``, ``("tensorrt",)`` or both.
        reduce_range: 7-bit weights in the ``cpu`` flavour.
        clip: the share of values each observed range leaves out at each end.
        inner_clip: the share for every point after the first conv's input (None: ``clip``).
        exact_input: the first conv on the exact grey levels, the standardisation after it
            (``cpu`` only; see the module docstring).
    """

    def __init__(
        self,
        net: HardNet,
        targets: Sequence[str],
        *,
        reduce_range: bool = False,
        clip: float = CLIP_FRACTION,
        inner_clip: float | None = None,
        exact_input: bool = False,
    ) -> None:
        super().__init__()
        if not targets or any(t not in ("cpu", "tensorrt") for t in targets):
            raise InputError(f"QAT targets must be cpu and/or tensorrt, got {list(targets)}")
        if exact_input and tuple(targets) != ("cpu",):
            raise InputError(
                "exact input is a cpu-flavour form (TensorRT's symmetric int8 holds no grey "
                f"level range at scale 1): QAT targets must be cpu alone, got {list(targets)}"
            )
        self.net = net
        self.targets = tuple(targets)
        self.flavour = self.targets[0]
        self.reduce_range = reduce_range
        self.clip = clip
        self.inner_clip = clip if inner_clip is None else inner_clip
        self.exact_input = exact_input
        self.observing = True
        # (point, [low, high]); NaN until the first observed batch.
        self.register_buffer("ranges", torch.full((len(QAT_POINTS), 2), float("nan")))
        if exact_input:
            self.ranges[0] = torch.tensor(EXACT_INPUT_RANGE)
        layers = list(net.features)
        self._convs = [m for m in layers if isinstance(m, nn.Conv2d)]
        self._bns = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
        self._dropout = next(m for m in layers if isinstance(m, nn.Dropout))
        if len(self._convs) != QAT_CONVS or len(self._bns) != QAT_CONVS:
            raise InputError("QAT expects the HardNet layout: 7 convs, each with a BatchNorm")

    @property
    def width(self) -> float:
        return self.net.width

    @property
    def layout(self) -> str:
        return self.net.layout

    def train(self, mode: bool = True) -> QatHardNet:
        super().train(mode)
        for bn in self._bns:  # frozen statistics: the folded weights are the graph's
            bn.eval()
        return self

    def _activation(self, x: torch.Tensor, index: int, *, relu: bool) -> torch.Tensor:
        """Observe (when asked) and fake-quantise the activation at point ``index``."""
        self._observe(x, index, relu=relu)
        low, high = (float(v) for v in self.ranges[index])
        scale, zero = activation_qparams(low, high, self.flavour)
        qmin, qmax = (0, 255) if self.flavour == "cpu" else (-127, 127)
        return fake_quantize(x, scale, zero, qmin, qmax)

    def _observe(self, x: torch.Tensor, index: int, *, relu: bool) -> None:
        if index == 0 and self.exact_input:
            return  # the grey levels' own range, fixed
        if self.training and self.observing:
            # Point 0 is the standardised patch; every other is an activation inside.
            low, high = _quantile_range(x, self.clip if index == 0 else self.inner_clip)
            if relu:
                low = 0.0
            old = self.ranges[index]
            new = torch.tensor([low, high], dtype=old.dtype, device=old.device)
            self.ranges[index] = torch.where(
                torch.isnan(old), new, (1 - EMA_MOMENTUM) * old + EMA_MOMENTUM * new
            )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.ndim != 4 or patches.shape[1] != 1:
            raise InputError(f"expected patches (N, 1, 32, 32), got {tuple(patches.shape)}")
        cpu = self.flavour == "cpu"
        qmax = weight_qmax(self.flavour, self.reduce_range)
        # The exact-input form standardises conv0's output instead (_exact_first_conv).
        x = patches if self.exact_input else self.net.standardize(patches.float())
        last = QAT_CONVS - 1
        for i, (conv, bn) in enumerate(zip(self._convs, self._bns, strict=True)):
            output = QAT_CONVS + i  # the index of this conv's output point
            weight, bias = folded_conv(conv, bn)
            weight_q, weight_scale = fake_quantize_weight(weight, qmax)
            if i == 0 and self.exact_input:
                y = _exact_first_conv(patches, weight_q, bias, conv)
                self._observe(y, output, relu=False)
                x = self._activation(y, 1, relu=True)
                continue
            # cpu: from conv1 on, x is already the previous conv's uint8 output (Relu folded).
            x_q = x if cpu and i > 0 else self._activation(x, i, relu=i > 0)
            if i == last:
                x_q = self._dropout(x_q)
            if cpu:
                input_scale = activation_qparams(*(float(v) for v in self.ranges[i]), "cpu")[0]
                bias_scale = (input_scale * weight_scale).float()
                bias = _RoundSTE.apply(bias / bias_scale) * bias_scale
            y = nn.functional.conv2d(x_q, weight_q, bias, conv.stride, conv.padding)
            if not cpu:
                # tensorrt: the conv's output and its Relu stay float (the graph has no Q/DQ
                # there: it would split TensorRT's Conv+ReLU fusion); Q/DQ at the next input.
                # The output range is observed for the record only.
                self._observe(y, output, relu=False)
                x = torch.relu(y) if i < last else y
            elif i < last:
                # Observed for the record (the tensorrt flavour's range), not quantised here.
                self._observe(y, output, relu=False)
                # The uint8 output with the Relu folded in: the next conv's input range (zero
                # point 0, so the clamp at 0 is the Relu).
                x = self._activation(y, i + 1, relu=True)
            else:
                x = self._activation(y, output, relu=False)
        y = x.reshape(x.shape[0], -1)
        return y / torch.sqrt((y * y).sum(dim=1, keepdim=True) + 1e-10)

    def observed(self) -> bool:
        """Whether every activation range has been observed at least once."""
        return not bool(torch.isnan(self.ranges).any())

    def record(self, *, observe_steps: int, steps: int, init: str | None) -> QatRecord:
        """The record a QAT checkpoint stores (``meta["qat"]``)."""
        if not self.observed():
            raise InputError("no QAT ranges yet: run at least one training step")
        return QatRecord(
            targets=self.targets,
            ranges={
                p: (float(lo), float(hi))
                for p, (lo, hi) in zip(QAT_POINTS, self.ranges, strict=True)
            },
            reduce_range=self.reduce_range,
            clip=self.clip,
            inner_clip=self.inner_clip,
            observe_steps=observe_steps,
            steps=steps,
            init=init,
            exact_input=self.exact_input,
        )
