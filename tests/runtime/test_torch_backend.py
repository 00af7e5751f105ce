"""The torch backend's output belongs to the caller: an ordinary tensor, not an inference one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime

torch = pytest.importorskip("torch")


def _check_ordinary(out: object) -> None:
    assert isinstance(out, torch.Tensor)
    assert not out.is_inference() and not out.requires_grad
    out.mul_(2)  # an inference tensor raises here, outside inference mode
    out.requires_grad_(True).sum().backward()


def test_returned_tensors_take_in_place_ops(checkpoint: Path) -> None:
    d = runtime.load(checkpoint, device="cpu", max_batch=8)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (20, 32, 32), dtype=np.uint8))
    _check_ordinary(d.describe(x))
    _check_ordinary(d.describe(x[:3]))


@pytest.mark.gpu
def test_cuda_graph_output_takes_in_place_ops(checkpoint: Path) -> None:
    d = runtime.load(checkpoint, device="cuda", max_batch=8, cuda_graph=True)
    x = torch.randint(0, 256, (8, 32, 32), dtype=torch.uint8, device="cuda")
    _check_ordinary(d.describe(x))  # exactly max_batch: the graph's static output, cloned
    _check_ordinary(d.describe(x[:5]))
