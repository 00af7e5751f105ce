"""DistributedDataParallel plumbing for ``torchrun``: process group, and global-batch gathering."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank (its GPU on the node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on CUDA,
    gloo on CPU); a plain ``python`` run is a world of one and initialises nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local_rank)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group (after a last barrier so no rank exits while others write)."""
    if not info.enabled:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's ``x`` in rank order; gradient flows into the local part only.

    Each rank then computes the loss of the global batch; its backward reaches only its own
    descriptors, so the caller multiplies the loss by the world size to undo DDP's gradient
    averaging (the sum over ranks of the local parts is the full gradient).

    Shape:
        - x: (n, D) on every rank (equal n).
        - output: (world * n, D).
    """
    if not info.enabled:
        return x
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(info.world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[info.rank] = x
    return torch.cat(parts)
