"""PyTorch backend: ``.pt``/``.pth`` checkpoints on the CPU or a CUDA device.

On CUDA it offers FP16 (the conv stack in half precision; the per-patch standardisation and
the final L2 normalisation stay in FP32), channels-last memory layout and CUDA-graph replay
of a fixed batch of ``max_batch`` patches (``torch.cuda.CUDAGraph``; other batch sizes run
eagerly). Torch tensors on the model's device are used in place.

Thread safety: eager inference is re-entrant; the CUDA-graph replay shares static buffers
and runs under a lock.

Inference runs under ``torch.no_grad`` rather than ``torch.inference_mode``: tensors made in
inference mode refuse in-place updates and autograd use outside it (PyTorch's "Inference
Mode" notes), and the tensors ``describe`` returns belong to the caller.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hardnet_export.artifacts.describe import DEFAULT_MAX_BATCH, DESCRIPTOR_SIZE, batch_slices
from hardnet_export.errors import InputError, MissingDependencyError
from hardnet_export.geometry import PATCH_SIZE
from hardnet_export.runtime.base import Describer
from hardnet_export.runtime.inputs import stream_handle, validate_torch_patches
from hardnet_export.validate import parse_device


class TorchDescriber(Describer):
    """HardNet in PyTorch.

    Options (``runtime.load(..., **options)``):
        fp16: run the conv stack in float16 (CUDA only).
        channels_last: channels-last memory layout (CUDA only; faster convs on tensor cores).
        cuda_graph: replay a captured CUDA graph for batches of exactly ``max_batch``.
        num_threads: torch intra-op threads on the CPU (process-wide ``torch.set_num_threads``).
    """

    backend = "torch"

    def __init__(
        self,
        model: Any,
        artifact: Path | None,
        *,
        device: str = "cpu",
        max_batch: int | None = DEFAULT_MAX_BATCH,
        fp16: bool = False,
        channels_last: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        import torch

        torch_device = torch.device(device)
        on_cuda = torch_device.type == "cuda"
        if (fp16 or channels_last or cuda_graph) and not on_cuda:
            raise InputError(
                "fp16, channels_last and cuda_graph need device='cuda', got device="
                f"{str(torch_device)!r}"
            )
        if cuda_graph and max_batch is None:
            raise InputError("cuda_graph replays a fixed batch: give max_batch")
        super().__init__(
            artifact,
            precision="fp16" if fp16 else "fp32",
            device=str(torch_device),
            max_batch=max_batch,
            input_dtype="float32",
        )
        self._torch_device = torch_device
        self._fp16 = fp16
        self._channels_last = channels_last
        model = model.to(torch_device).eval()
        if fp16:
            model = model.half()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._lock = threading.Lock()
        self._graph: Any = None
        if cuda_graph:
            self._capture_graph()

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        device: str | None = None,
        max_batch: int | None = None,
        num_threads: int | None = None,
        **options: Any,
    ) -> TorchDescriber:
        """Load a checkpoint (``None``: the shipped model) on ``device`` (default: CUDA if
        available, else CPU)."""
        try:
            import torch
        except ImportError as exc:
            raise MissingDependencyError(
                "the torch backend (.pt/.pth) needs PyTorch: pip install 'hardnet-export[train]'"
            ) from exc
        from hardnet_export.model import load_model

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        parsed = parse_device(device)
        if parsed is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif parsed.kind == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError(
                f"device={device!r} asked for, but PyTorch sees no CUDA device"
            )
        elif parsed.kind not in ("cpu", "cuda"):
            raise InputError(f"the torch backend runs on 'cpu' or 'cuda[:N]', got {device!r}")
        else:
            device = str(parsed)
        model = load_model(path)
        return cls(
            model,
            path,
            device=device,
            max_batch=DEFAULT_MAX_BATCH if max_batch is None else max_batch,
            **options,
        )

    def _forward(self, x: Any) -> Any:
        """Descriptors of a batch already on the model's device.

        Shape:
            - x: (n, 1, 32, 32) uint8 or float.
            - Output: (n, 128) float32.
        """
        import torch

        return self.model.describe(
            x,
            compute_dtype=torch.float16 if self._fp16 else None,
            channels_last=self._channels_last,
        )

    def _capture_graph(self) -> None:
        """Capture the forward pass of ``max_batch`` patches on the describer's device.

        ``torch.cuda.graph`` without ``stream=`` captures on a side stream that torch creates
        on the *current* device, so a describer on ``cuda:1`` would capture on ``cuda:0``
        and replay a graph without its work; the capture therefore runs inside
        ``torch.cuda.device(...)`` on a stream of the describer's own (PyTorch's "CUDA
        Graphs" notes: warm up on a side stream, then capture on a non-default stream).
        """
        import torch

        assert self.max_batch is not None
        device = self._torch_device
        with torch.cuda.device(device):
            self._static_in = torch.zeros(
                (self.max_batch, 1, PATCH_SIZE, PATCH_SIZE), dtype=torch.float32, device=device
            )
            current = torch.cuda.current_stream(device)
            side = torch.cuda.Stream(device)
            side.wait_stream(current)
            with torch.no_grad(), torch.cuda.stream(side):
                for _ in range(2):  # warm-up outside the capture, as cuDNN autotuning allocates
                    self._forward(self._static_in)
            current.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            self._capture_stream = torch.cuda.Stream(device)
            self._capture_stream.wait_stream(current)
            with torch.no_grad(), torch.cuda.graph(graph, stream=self._capture_stream):
                self._static_out = self._forward(self._static_in)
            current.wait_stream(self._capture_stream)
            #: Recorded after each replay's output is copied out, on whichever stream ran
            #: it; the next replay's stream waits on it before it overwrites the static
            #: input (the lock orders the host, not the streams).
            self._replayed = torch.cuda.Event()
        self._graph = graph

    def _run(self, x: Any) -> Any:
        """Run a device batch of at most ``max_batch``; graph replay when it is exactly full."""
        import torch

        if self._graph is not None and x.shape[0] == self.max_batch:
            with self._lock, torch.cuda.device(self._torch_device):
                stream = torch.cuda.current_stream(self._torch_device)
                # The previous replay (on any stream) must have read the static input and
                # had its static output copied before this call overwrites either.
                stream.wait_event(self._replayed)
                self._static_in.copy_(x)
                self._graph.replay()
                out = self._static_out.clone()
                self._replayed.record(stream)
                return out
        with torch.no_grad():
            return self._forward(x)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(batch).to(self._torch_device, non_blocking=False)
        return self._run(x).cpu().numpy()

    def _infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, float | None]:
        """On CUDA, CUDA events on the current stream around the forward pass (or the graph
        replay): device compute time without the host-device copies."""
        if self._torch_device.type != "cuda":
            return self._infer(batch), None
        import torch

        x = torch.from_numpy(batch).to(self._torch_device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(self._torch_device)
        start.record(stream)
        y = self._run(x)
        end.record(stream)
        out = y.cpu().numpy()
        end.synchronize()
        return out, start.elapsed_time(end) / 1e3

    def _describe_torch(self, patches: Any, stream: Any) -> Any:
        import torch

        batch = validate_torch_patches(patches)
        if batch.shape[0] == 0:
            return torch.zeros((0, DESCRIPTOR_SIZE), dtype=torch.float32, device=patches.device)
        x = batch.detach().to(self._torch_device)
        context = (
            torch.cuda.stream(_as_torch_stream(stream, self._torch_device))
            if stream is not None and self._torch_device.type == "cuda"
            else contextlib.nullcontext()
        )
        with context:
            chunks = [self._run(x[rows]) for rows in batch_slices(x.shape[0], self.max_batch)]
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return out.to(patches.device)

    def _describe_cuda_array(self, patches: Any, stream: Any) -> Any:
        """Device arrays (CuPy, Numba, ...) are read in place as torch tensors; numpy out."""
        if self._torch_device.type != "cuda":
            return super()._describe_cuda_array(patches, stream)
        import torch

        tensor = torch.as_tensor(patches, device=self._torch_device)
        return self._describe_torch(tensor, stream).cpu().numpy()


def _as_torch_stream(stream: Any, device: Any) -> Any:
    import torch

    if isinstance(stream, torch.cuda.Stream):
        return stream
    handle = stream_handle(stream)
    return torch.cuda.ExternalStream(handle, device=device)
