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


# -- CUDA graphs on the describer's own device and stream (issue 26, items 3 and 4) --------


def _eager(checkpoint: Path, device: str, x: np.ndarray) -> np.ndarray:
    return runtime.load(checkpoint, device=device, max_batch=len(x)).describe(x)


@pytest.mark.gpu
def test_cuda_graph_is_captured_on_the_describers_device(checkpoint: Path) -> None:
    """The graph is captured on a stream of the describer's device, with another device
    current; on one GPU that is cuda:0 itself, on several the last one (which the old
    capture, on the current device's side stream, replayed as an empty graph)."""
    last = torch.cuda.device_count() - 1
    device = f"cuda:{last}"
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32), dtype=np.uint8)
    with torch.cuda.device(0):
        d = runtime.load(checkpoint, device=device, max_batch=16, cuda_graph=True)
    assert d._capture_stream.device == torch.device(device)
    assert d._static_in.device == torch.device(device)
    with torch.cuda.device(0):
        got = d.describe(x)  # a full batch: the replay
    want = _eager(checkpoint, device, x)
    assert float((got * want).sum(1).min()) >= 0.9999
    assert np.abs(got).sum() > 0  # an empty graph leaves the zeros of the static output


@pytest.mark.gpu
def test_cuda_graph_replays_on_two_streams_do_not_race(checkpoint: Path) -> None:
    """Full batches replayed alternately on two streams with no host synchronisation: each
    result equals its own eager descriptors, so no replay read another call's static input
    or had its static output overwritten before it was copied out."""
    batch = 2048  # long enough a replay for the next stream's copy to overlap it
    d = runtime.load(checkpoint, device="cuda", max_batch=batch, cuda_graph=True)
    rng = np.random.default_rng(1)
    inputs = [
        torch.from_numpy(rng.integers(0, 256, (batch, 32, 32), dtype=np.uint8)).cuda()
        for _ in range(4)
    ]
    want = [_eager(checkpoint, "cuda", x.cpu().numpy()) for x in inputs]
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    for stream in streams:
        stream.wait_stream(torch.cuda.current_stream())  # the inputs were made there
    outputs = []
    for _ in range(3):
        for i, x in enumerate(inputs):
            stream = streams[i % 2]
            with torch.cuda.stream(stream):
                outputs.append((i, d.describe(x, stream=stream)))
    torch.cuda.synchronize()
    for i, out in outputs:
        got = out.cpu().numpy()
        assert float((got * want[i]).sum(1).min()) >= 0.9999, i
