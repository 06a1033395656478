"""Data-parallel mask search over ``torch.distributed`` ranks (``distributed=True`` of the
relaxations).

Launch one process per device with ``torchrun`` and initialise the process group (NCCL on
GPUs, gloo on CPU) before solving; every rank builds the same problem and calls ``solve``
with the same options. Each rank then takes its share of every batch (the global batch is
drawn from the same seeded order on every rank; rank r of w takes entries r, r + w, ...),
its training loss is scaled to its share of the global batch, and the score gradients are
summed over the ranks before each optimizer step, so every rank takes the step of the
single-process run over the same global batch (up to the order of floating-point sums).
Hard-mask checks score each rank's share of the samples and sum (or take the maximum of)
the values over the ranks, so all ranks keep the same mask; at the end the ranks compare
their masks and raise if they differ. ``examples/distributed_relax.py`` shows the pattern;
rank 0 writes the results.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Ranks:
    """The data-parallel group of one solve: ``rank`` of ``world`` (0 of 1 when not
    distributed, and then every method is the identity)."""

    def __init__(self, distributed: bool) -> None:
        if distributed and not (dist.is_available() and dist.is_initialized()):
            raise ValueError("distributed=True needs an initialised torch.distributed process group: launch with "
                             "torchrun and call torch.distributed.init_process_group('gloo' or 'nccl') before solve "
                             "(see examples/distributed_relax.py), or drop distributed=True.")
        self.distributed = distributed
        self.rank = dist.get_rank() if distributed else 0
        self.world = dist.get_world_size() if distributed else 1

    def device(self, device: torch.device) -> torch.device:
        """``device`` with a CUDA device without index pinned to this rank's GPU (``LOCAL_RANK``)."""
        if self.distributed and device.type == "cuda" and device.index is None:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        return device

    def shard(self, idx: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
        """This rank's entries of the batch ``idx`` (None = all ``n`` samples)."""
        if self.world == 1:
            return idx
        if idx is None:
            idx = torch.arange(n, device=device)
        return idx[self.rank :: self.world]

    def scaled(self, loss: torch.Tensor, local: int, total: int) -> torch.Tensor:
        """``loss`` (a mean over this rank's ``local`` samples) as its part of the mean over
        the ``total`` samples of all ranks."""
        return loss if self.world == 1 else loss * (local / total)

    def total(self, local: int, device: torch.device) -> int:
        """The sum of ``local`` over the ranks."""
        if self.world == 1:
            return local
        t = torch.tensor([local], dtype=torch.int64, device=device)
        dist.all_reduce(t)
        return int(t)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks, in place."""
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def combine(self, value: float, how: str, device: torch.device) -> float:
        """A value over this rank's samples combined over the ranks: ``"sum"`` or ``"max"``."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM if how == "sum" else dist.ReduceOp.MAX)
        return float(t)

    def mine(self, chunks: list) -> list:
        """This rank's share of a list of sample chunks."""
        return chunks if self.world == 1 else chunks[self.rank :: self.world]

    def agree(self, mask: torch.Tensor, device: torch.device) -> None:
        """Raise unless every rank holds the same bool ``mask``."""
        if self.world == 1:
            return
        mine = mask.to(device)
        first = mine.clone()
        dist.broadcast(first, src=0)
        differ = torch.tensor([int((first != mine).sum())], dtype=torch.int64, device=device)
        dist.all_reduce(differ)
        if int(differ):
            raise RuntimeError(f"the ranks ended with different masks ({int(differ)} entries differ in all); the "
                               "data-parallel run lost synchrony, which is a bug: report it with the launch command.")
