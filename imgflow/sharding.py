"""Sampling split over the processes of a torchrun launch: each draws its share of the sample indices, all gather.

    with sharded_sampling() as shards:                 # torchrun --nproc_per_node 8 scripts/evaluate.py ...
        samples = sampler.sample(50_000)             # every process: all 50,000; each computed 6,250 of them
        if shards.rank == 0:
            samples.save_grid("grid.png")

Sample i starts from the noise seeded by (seed, i) and has label i of the class cycle, so which process draws it does not
change it: the gathered images equal one process's to rounding (a batch of other rows may sum in another order). Inside
the block every `Sampler.sample` (and so `evaluate_checkpoint`, the NFE sweep and class accuracy) shards; outside, or
without torchrun's WORLD_SIZE > 1, nothing changes. The gather runs over gloo on the CPU (the images go to the host
anyway); each process computes on the device of its local rank.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Shards:
    """This process's place among `world` sampling processes."""

    rank: int = 0
    world: int = 1

    def block(self, num: int) -> range:
        """The contiguous indices of `num` samples this process draws (the blocks of all ranks tile range(num) in order)."""
        return range(num * self.rank // self.world, num * (self.rank + 1) // self.world)

    def collect(self, value: Any) -> list[Any]:
        """`value` of every process, in rank order (any picklable object; tensors travel on the CPU)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value.cpu() if isinstance(value, Tensor) else value)
        return values

    def gather(self, part: Tensor) -> Tensor:
        """Every process's block, concatenated in rank order (CPU); `part` is this process's (possibly empty) block."""
        return torch.cat(self.collect(part)) if self.world > 1 else part


_ACTIVE: Shards | None = None


def active_shards() -> Shards | None:
    """The shards of an enclosing `sharded_sampling` block with more than one process, else None."""
    return _ACTIVE


@contextlib.contextmanager
def sharded_sampling() -> Iterator[Shards]:
    """Within a torchrun launch (WORLD_SIZE > 1): join (or reuse) the process group and shard every `Sampler.sample`.

    Yields this process's Shards (rank 0 of 1 outside torchrun). A CUDA process is pinned to the GPU of its LOCAL_RANK,
    so device "cuda" means that GPU.
    """
    global _ACTIVE
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Shards()
        return
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo")
    previous, _ACTIVE = _ACTIVE, Shards(dist.get_rank(), dist.get_world_size())
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = previous
        if created:
            dist.destroy_process_group()


__all__ = ["Shards", "active_shards", "sharded_sampling"]
