"""torchrun / DistributedDataParallel helpers: rank, world size, sharded scoring, gathering."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU,
    NCCL on GPUs); a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def shard(n: int, info: DistInfo) -> list[int]:
    """Indices of this rank: every world-th item, no padding (each item scored once)."""
    return list(range(info.rank, n, info.world))


def gather_scores(indices: list[int], scores: list[float], n: int, info: DistInfo):
    """Collect (index, score) pairs from every rank into one array in index order."""
    import numpy as np

    pairs = list(zip(indices, scores, strict=True))
    if info.enabled:
        parts: list = [None] * info.world
        dist.all_gather_object(parts, pairs)
        pairs = [p for part in parts for p in part]
    out = np.full(n, np.nan)
    seen = np.zeros(n, dtype=int)
    for i, s in pairs:
        out[i] = s
        seen[i] += 1
    if not np.all(seen == 1):
        raise RuntimeError(
            f"gathered scores cover {np.sum(seen > 0)} of {n} trials ({np.sum(seen > 1)} twice)"
        )
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
