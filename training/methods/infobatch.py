"""In-step loss pruning (InfoBatch, Qin et al., ICLR 2024): no scoring forward, the losses of training's own.

Each example keeps the loss of its own most recent training forward. In a pruning epoch, an example whose kept loss
is below the mean of the kept losses is left out with probability r, and a below-mean example that is kept has its
loss scaled by 1 / (1 − r), so that the epoch's expected gradient is the full data's. The first epoch prunes nothing
(no losses are known yet); an example never trained on counts as at the mean (it is kept); the last `tail` share of
the epochs trains on the full data, as in the paper.

Forwards = backprops = examples kept. A pruned example is logged with the statistics it was judged on (its kept
training forward, as a stale score row) and a pick of 0, so that pick counts and shares count it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import setting
from lossaudit.training.methods.base import Diagnostic, Forward, Method, Preset, Selection
from lossaudit.training.methods.cache import ScoreCache


@dataclass(frozen=True)
class InfoBatchParams:
    prune_ratio: float = setting(0.5, "infobatch: probability r of leaving out an example whose kept loss is below "
                                      "the mean (kept ones below it are weighted 1/(1 - r))",
                                 check=lambda v: 0 <= v < 1, rule="in [0, 1)")
    full_tail: float = setting(0.125, "infobatch: share of the last epochs that train on the full data",
                               check=lambda v: 0 <= v <= 1, rule="in [0, 1]")


class InfoBatch(Method):
    name = "infobatch"
    description = ("in-step loss pruning (InfoBatch): each epoch leaves out an example whose own last training loss "
                   "is below the mean with probability r and up-weights the kept ones below it by 1/(1 - r); no "
                   "scoring forward; the first epoch and the last --full-tail share train on everything")
    Params = InfoBatchParams
    presets = {"infobatch30": Preset({"prune_ratio": 0.3}, "InfoBatch with r = 0.3"),
               "infobatch50": Preset({"prune_ratio": 0.5}, "InfoBatch with r = 0.5 (the paper's default)")}
    loss_based = True
    needs_scores = False
    learns_from_training = True
    diagnostics = (Diagnostic("below_mean", "below-mean share", "the share of the kept losses below their mean at "
                              "the start of the epoch: the examples it may leave out"),)

    def __init__(self, params: InfoBatchParams, **kw):
        super().__init__(params, **kw)
        self.r = params.prune_ratio
        # every example's statistics from its own last training forward (the cache's epoch: when, -1 = never)
        self.kept = ScoreCache(self.n_train, self.device, staleness=1)
        self.mean = torch.zeros((), device=self.device)
        self.below = torch.zeros((), device=self.device)
        self.mean_epoch = -1

    def params(self) -> dict:
        return super().params() | {"score": "loss", "full_from_epoch": self.full_from()}

    def full_from(self) -> int:
        """The first epoch of the full-data tail: the last round(full_tail × epochs) epochs train on everything."""
        return self.epochs - round(self.p.full_tail * self.epochs) if self.epochs else math.inf

    @property
    def nominal_selectivity(self) -> float:
        """1 − r/2: the kept share of a pruning epoch when half the kept losses are below their mean (the realised
        share depends on the losses, and is logged)."""
        return 1.0 - self.r / 2

    def selects(self, epoch: int) -> bool:
        return 1 <= epoch < self.full_from() and self.r > 0

    def threshold(self, epoch: int) -> Tensor:
        """The mean of the kept losses at the start of `epoch` (computed once per epoch, on the device)."""
        if self.mean_epoch != epoch:
            seen = self.kept.epoch >= 0
            losses = self.kept.values.loss
            self.mean = torch.where(seen.any(), (losses * seen).sum() / seen.sum().clamp_min(1), 0.0)
            self.below = ((losses < self.mean) & seen).sum() / max(1, len(losses))
            self.mean_epoch = epoch
        return self.mean

    def keep_prob(self, index: Tensor, epoch: int) -> Tensor:
        """(n,) probability each candidate is kept: 1 − r below the mean, 1 otherwise (never trained: at the mean)."""
        below = (self.kept.values.loss[index] < self.threshold(epoch)) & (self.kept.epoch[index] >= 0)
        return torch.where(below, 1.0 - self.r, 1.0)

    def select(self, fwd: Forward | None, index: Tensor, epoch: int) -> Selection:
        prob = self.keep_prob(index, epoch)
        drop = torch.rand(len(index), generator=self.generator, device=self.device) >= prob
        picked = (~drop).long()
        return Selection(picked, prob, weight=1.0 / prob, cached=self.kept.lookup(index))

    def trained(self, index: Tensor, fwd: Forward, epoch: int) -> None:
        self.kept.store(index, fwd, epoch)

    def state(self) -> dict:
        return {"below_mean": self.below, "loss_mean": self.mean}

    def state_dict(self) -> dict:
        return {"kept": self.kept.state_dict(), "mean": self.mean.clone(), "below": self.below.clone(),
                "mean_epoch": self.mean_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.kept.load_state_dict(state["kept"])
        self.mean, self.below = state["mean"].to(self.device), state["below"].to(self.device)
        self.mean_epoch = state["mean_epoch"]
