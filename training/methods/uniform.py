"""The control the paper lacks: a uniformly random subset at the same selectivity as the method under test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import setting
from lossaudit.training.methods.base import (Forward, Method, Preset, Selection, selectivity_setting,
                                              warmup_epochs_setting)


@dataclass(frozen=True)
class UniformParams:
    selectivity: float = selectivity_setting()
    warmup_epochs: int = warmup_epochs_setting()
    uniform_scoring: bool = setting(False, "uniform: also score every candidate, only to log its loss (a forward the "
                                           "control does not need: counted as forwards_logging, charged to no cost)")


class UniformSubset(Method):
    name = "uniform"
    description = "random subset control: each candidate picked with probability --selectivity, same warm-up as sb"
    Params = UniformParams
    presets = {"uniform50": Preset({"selectivity": 0.5}, "random 50% subset, the control for sb50 and vr50"),
               "uniform33": Preset({"selectivity": 1 / 3}, "random 33% subset, the control for sb33 and vr33")}
    is_control = True
    scores_log_only = True  # its picks never read a score: scoring, when asked for, only logs

    def __init__(self, params: UniformParams, **kw):
        super().__init__(params, **kw)
        self.selectivity, self.warmup_epochs = params.selectivity, params.warmup_epochs
        self.needs_scores = params.uniform_scoring  # scoring only logs; the picks never depend on it

    @property
    def nominal_selectivity(self) -> float:
        return self.selectivity

    def selects(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs

    def select(self, fwd: Forward | None, index: Tensor, epoch: int) -> Selection:
        n = len(index)
        picked = torch.rand(n, generator=self.generator, device=self.device) < self.selectivity
        return Selection(picked.long(), torch.full((n,), self.selectivity, device=self.device))
