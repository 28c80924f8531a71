"""The control the paper lacks: a uniformly random subset at the same selectivity as the method under test."""

from __future__ import annotations

import torch
from torch import Tensor

from lossaudit.training.config import RunConfig
from lossaudit.training.methods.base import Forward, Method, Selection


class UniformSubset(Method):
    name = "uniform"
    description = "random subset control: each candidate picked with probability --selectivity, same warm-up as sb"
    fields = ("selectivity", "warmup_epochs", "uniform_scoring")
    is_control = True

    def __init__(self, cfg: RunConfig, **kw):
        super().__init__(cfg, **kw)
        self.selectivity, self.warmup_epochs = cfg.selectivity, cfg.warmup_epochs
        self.needs_scores = cfg.uniform_scoring  # scoring only logs; the picks never depend on it

    def params(self) -> dict:
        return dict(selectivity=self.selectivity, warmup_epochs=self.warmup_epochs, scored=self.needs_scores)

    @property
    def nominal_selectivity(self) -> float:
        return self.selectivity

    def selects(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs

    def select(self, fwd: Forward | None, index: Tensor, epoch: int) -> Selection:
        n = len(index)
        picked = torch.rand(n, generator=self.generator, device=self.device) < self.selectivity
        return Selection(picked.long(), torch.full((n,), self.selectivity, device=self.device))
