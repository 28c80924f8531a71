"""Per-example cache of the latest forward statistics, for methods that may reuse stale scores."""

from __future__ import annotations

import torch
from torch import Tensor

from lossaudit.training.methods.base import Forward

FIELDS = ("loss", "entropy", "margin", "p_true", "pred")


class ScoreCache:
    """The last statistics seen for each example (from a scoring forward or a training forward).

    An example's cached values are usable while they are younger than `staleness` epochs; a
    staleness of k means each example gets a fresh scoring forward at most every k epochs.
    """

    def __init__(self, n: int, device: torch.device, staleness: int):
        self.staleness = staleness
        self.epoch = torch.full((n,), -1, dtype=torch.int64, device=device)
        self.values = Forward(*(torch.zeros(n, device=device) for _ in range(4)),
                              pred=torch.zeros(n, dtype=torch.int64, device=device))

    def usable(self, index: Tensor, epoch: int) -> Tensor:
        """(n,) bool: cached values of these examples may stand in for a fresh forward."""
        seen = self.epoch[index]
        return (seen >= 0) & (epoch - seen < self.staleness)

    def lookup(self, index: Tensor) -> Forward:
        v = self.values
        return Forward(v.loss[index], v.entropy[index], v.margin[index], v.p_true[index], v.pred[index])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch.clone()} | {f: getattr(self.values, f).clone() for f in FIELDS}

    def load_state_dict(self, state: dict) -> None:
        self.epoch.copy_(state["epoch"])
        for f in FIELDS:
            getattr(self.values, f).copy_(state[f])

    def store(self, index: Tensor, fwd: Forward, epoch: int) -> None:
        for name in FIELDS:
            column = getattr(self.values, name)
            column[index] = getattr(fwd, name).to(column.dtype)
        self.epoch[index] = epoch
