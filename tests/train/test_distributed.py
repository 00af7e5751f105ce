"""DDP on CPU with gloo and 2 processes: global hardest mining and a torchrun training run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fixture_files import structured_patches, write_phototour

from hardnet_export.model import read_checkpoint
from hardnet_export.train.distributed import DistInfo, gather_with_grad
from hardnet_export.train.losses import hardnet_loss

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _global_loss_grad(rank: int, port: int, desc: torch.Tensor, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        n = len(desc) // WORLD
        info = DistInfo(rank=rank, world=WORLD)
        a = desc[rank * n : (rank + 1) * n, 0].clone().requires_grad_(True)
        p = desc[rank * n : (rank + 1) * n, 1].clone().requires_grad_(True)
        loss = hardnet_loss(gather_with_grad(a, info), gather_with_grad(p, info))
        (loss * WORLD).backward()
        # DDP averages parameter gradients over ranks; each rank's part flows through its
        # own descriptors only, so the average is taken over these stacked parts.
        grads = torch.cat([a.grad, p.grad], 1)
        all_grads = [torch.empty_like(grads) for _ in range(WORLD)]
        dist.all_gather(all_grads, grads)
        if rank == 0:
            torch.save({"loss": loss.detach(), "grads": torch.cat(all_grads) / WORLD}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_global_hardest_gradient_equals_single_process(tmp_path: Path) -> None:
    torch.manual_seed(0)
    desc = torch.nn.functional.normalize(torch.randn(8, 2, 16), dim=2)
    out = str(tmp_path / "result.pt")
    mp.spawn(_global_loss_grad, args=(_free_port(), desc, out), nprocs=WORLD, join=True)
    got = torch.load(out, weights_only=True)

    a = desc[:, 0].clone().requires_grad_(True)
    p = desc[:, 1].clone().requires_grad_(True)
    loss = hardnet_loss(a, p)
    loss.backward()
    # The gathered global batch is the whole batch: same loss; and averaging (as DDP does)
    # each rank's gradient of (world * loss) through its own part gives the full gradient.
    assert torch.allclose(got["loss"], loss.detach())
    expected = torch.cat([a.grad, p.grad], 1)
    assert torch.allclose(got["grads"], expected, atol=1e-6)


@pytest.mark.slow
def test_torchrun_trains_with_ddp_on_cpu(tmp_path: Path) -> None:
    write_phototour(tmp_path, "liberty", structured_patches(32, 2, 64), np.repeat(np.arange(32), 2))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={_free_port()}", "-m", "hardnet_export", "train",
        "--data", f"phototour:{tmp_path}/liberty", "--out", str(out), "--steps", "3",
        "--batch-size", "8", "--lr", "1", "--device", "cpu", "--num-workers", "0",
        "--global-hardest", "--no-progress", "--checkpoint-every", "2",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    final = read_checkpoint(out / "final.pth")
    assert final.meta["step"] == 3
    assert final.meta["config"]["world_size"] == 2
    assert final.meta["config"]["global_hardest"] is True
    assert result.stdout.count("wrote") == 1  # only rank 0 reports


def _qat_ranges(rank: int, port: int, patches: torch.Tensor, out: str) -> None:
    from hardnet_export.model import HardNet
    from hardnet_export.train.qat import QatHardNet

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)  # the same weights on every rank, as DDP starts them
        qat = QatHardNet(HardNet(dropout=0.0, width=0.125), ("cpu",)).train()
        n = len(patches) // WORLD
        qat(patches[rank * n : (rank + 1) * n])
        ranges = [torch.empty_like(qat.ranges) for _ in range(WORLD)]
        dist.all_gather(ranges, qat.ranges.clone())
        if rank == 0:
            torch.save(torch.stack(ranges), out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_qat_ranges_are_observed_over_every_ranks_share(tmp_path: Path) -> None:
    from hardnet_export.model import HardNet
    from hardnet_export.train.qat import QatHardNet

    gen = torch.Generator().manual_seed(1)
    # Halves of different contrast: a rank alone would observe different ranges.
    patches = torch.randint(0, 256, (8, 1, 32, 32), generator=gen).float()
    patches[4:] = patches[4:] * 0.2 + 100
    out = str(tmp_path / "ranges.pt")
    mp.spawn(_qat_ranges, args=(_free_port(), patches, out), nprocs=WORLD, join=True)
    ranks = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    single = QatHardNet(HardNet(dropout=0.0, width=0.125), ("cpu",)).train()
    single(patches)
    # Every rank holds the same ranges, those one process observes on the whole batch (up
    # to the convs' float sums, which depend on the batch size).
    assert torch.equal(ranks[0], ranks[1])
    torch.testing.assert_close(ranks[0], single.ranges, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    half = QatHardNet(HardNet(dropout=0.0, width=0.125), ("cpu",)).train()
    half(patches[:4])
    assert not torch.allclose(half.ranges, single.ranges, rtol=1e-2)
