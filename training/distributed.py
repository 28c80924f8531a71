"""One run on many processes (`torchrun`): what each rank does so that a run means the same as in one process.

Every rank holds the whole training set and draws the same candidate order and the same augmentation (the run's
seeded generators), so every rank sees the same round of candidates. Of each round, rank r scores only its own
contiguous share (the shares are disjoint and together are the round); the shares' logits are all-gathered, and
every rank then runs the method's selection on the whole round, with the same generator: the same picks on every
rank, so sb's percentile history, vr's τ and every queue are global, whatever the number of ranks. Each optimizer
step takes the next B picks of the queue; rank r back-propagates its own contiguous share of them (B/K when K
divides B), DistributedDataParallel all-reduces the gradients (the loss scaled so that their mean is the one-process
loss), and the step's logits are all-gathered so that every rank logs and updates the method as one process would.
Evaluation runs on rank 0 and its numbers are broadcast; only rank 0 writes to the database.

Where the result can still differ from one process: BatchNorm's batch statistics in a training forward are those
of the rank's share of the batch (its running statistics are rank 0's, broadcast at every forward), and the
all-reduced gradient sums in another order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import Tensor

TIMEOUT = timedelta(minutes=10)  # a collective waiting longer than this fails the run (a rank died or hangs)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous share of n items (the first n % world ranks get one more)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def gather_rows(self, mine: Tensor, n: int) -> Tensor:
        """Every rank's share (this rank's is `mine`) stacked back into the n rows of the whole, in rank order."""
        import torch.distributed as dist
        sizes = [Ranks(r, self.world).share(n) for r in range(self.world)]
        width = max(stop - start for start, stop in sizes)
        padded = torch.zeros((width, *mine.shape[1:]), dtype=mine.dtype, device=mine.device)
        padded[:len(mine)] = mine
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:stop - start] for p, (start, stop) in zip(parts, sizes)])

    def broadcast(self, values: Tensor) -> Tensor:
        """Rank 0's `values` on every rank."""
        import torch.distributed as dist
        dist.broadcast(values, src=0)
        return values

    def broadcast_object(self, obj):
        """Rank 0's picklable object on every rank."""
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


_CURRENT: Ranks | None = None


def current() -> Ranks:
    """This process's ranks: under torchrun (WORLD_SIZE > 1) the process group is joined once (gloo on CPU, nccl
    with CUDA); otherwise rank 0 of 1."""
    global _CURRENT
    if _CURRENT is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)
            _CURRENT = Ranks(dist.get_rank(), dist.get_world_size())
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        else:
            _CURRENT = Ranks()
    return _CURRENT
