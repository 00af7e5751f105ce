"""The benchmark hook: ``describe_timed`` gives ``describe``'s output and a device time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime

pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_cpu_backends_have_no_device_clock(
    kind: str, checkpoint: Path, onnx_model: Path, patches: np.ndarray
) -> None:
    describer = runtime.load(checkpoint if kind == "torch" else onnx_model, device="cpu",
                             max_batch=16)  # fmt: skip
    out, seconds = describer.describe_timed(patches[:40])  # 3 chunks of at most 16
    assert seconds is None
    np.testing.assert_allclose(out, describer.describe(patches[:40]), atol=1e-5)
    empty, seconds = describer.describe_timed(patches[:0])
    assert empty.shape == (0, 128) and seconds is None
    with pytest.raises(ValueError, match="shape"):
        describer.describe_timed(patches[:4, :16])


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{}, {"fp16": True, "cuda_graph": True}])
def test_torch_cuda_reports_event_time(
    options: dict, checkpoint: Path, patches: np.ndarray
) -> None:
    describer = runtime.load(checkpoint, device="cuda", max_batch=32, **options)
    out, seconds = describer.describe_timed(patches[:32])
    assert seconds is not None and 0 < seconds < 1
    reference = describer.describe(patches[:32])
    np.testing.assert_allclose(out, reference, atol=1e-3 if options else 1e-5)
