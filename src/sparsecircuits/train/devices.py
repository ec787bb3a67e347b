"""Where a training run runs: the device, the torchrun process group and its ranks, and
whether the device has native bfloat16."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sparsecircuits.errors import InputError
from sparsecircuits.model import SparseTransformer
from sparsecircuits.train.config import TrainConfig


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def native_bf16(device: torch.device) -> bool:
    """Whether the device has native bfloat16 matmuls, where bf16 autocast is faster than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private but stable in torch.cpu
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def setup_device(cfg: TrainConfig) -> tuple[Dist, torch.device]:
    """Join the torchrun process group (if launched so) and pick the device."""
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device='cuda' but no CUDA device is available; use device=cpu or auto")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist()
    if world > 1:
        d.world_size, d.rank = world, int(os.environ["RANK"])
        d.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if want == "cuda" else "gloo")
            d.owns_group = True
    if want == "cuda":
        torch.cuda.set_device(d.local_rank)
        return d, torch.device("cuda", d.local_rank)
    return d, torch.device("cpu")


def ranks_identical(model: SparseTransformer, d: Dist) -> bool | None:
    """Whether every rank holds the same weights (sum, abs-sum and nonzero count per tensor)."""
    if d.world_size == 1:
        return None
    with torch.no_grad():
        mine = torch.stack(
            [
                torch.stack([p.double().sum(), p.double().abs().sum(), (p != 0).sum().double()])
                for p in model.parameters()
            ]
        ).cpu()
    if dist.get_backend() == "nccl":
        mine = mine.cuda()
    gathered = [torch.empty_like(mine) for _ in range(d.world_size)]
    dist.all_gather(gathered, mine)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])
