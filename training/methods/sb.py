"""Selective Backprop (Jiang et al. 2019): pick with probability percentile(loss) ** beta."""

from __future__ import annotations

import torch
from torch import Tensor

from lossaudit.training.config import RunConfig
from lossaudit.training.methods.base import Forward, Method, Selection
from lossaudit.training.methods.cache import ScoreCache


class History:
    """FIFO of the last `size` scores, as a ring buffer on the device."""

    def __init__(self, size: int, device: torch.device):
        self.values = torch.zeros(size, device=device)
        self.size, self.count, self.pos = size, 0, 0

    def append(self, scores: Tensor) -> None:
        scores = scores[-self.size:]
        n = len(scores)
        self.values[(self.pos + torch.arange(n, device=scores.device)) % self.size] = scores.float()
        self.pos = (self.pos + n) % self.size
        self.count = min(self.count + n, self.size)

    def percentile(self, scores: Tensor) -> Tensor:
        """(n,) share of the history strictly below each score (ties count as not below)."""
        held = self.values[:self.count]
        return (held[None, :] < scores[:, None].float()).sum(1).float() / self.count


class SelectiveBackprop(Method):
    name = "sb"
    description = "Selective Backprop: pick with probability max(floor, percentile of the loss in a 1024 history ** beta)"
    score_field = "loss"
    fields = ("beta", "floor", "history_size", "warmup_epochs", "staleness")
    loss_based = True

    def __init__(self, cfg: RunConfig, **kw):
        super().__init__(cfg, **kw)
        self.beta, self.floor, self.warmup_epochs = cfg.beta, cfg.floor, cfg.warmup_epochs
        self.staleness = cfg.staleness
        self.history = History(cfg.history_size, self.device)
        if cfg.staleness > 1:
            self.cache = ScoreCache(self.n_train, self.device, cfg.staleness)

    def params(self) -> dict:
        return dict(score=self.score_field, beta=self.beta, floor=self.floor, history_size=self.history.size,
                    warmup_epochs=self.warmup_epochs, staleness=self.staleness)

    @property
    def nominal_selectivity(self) -> float:
        """E[max(floor, U ** beta)] for percentiles U uniform on (0, 1): 1 / (beta + 1) without a floor."""
        b, f = self.beta, self.floor
        return f ** (1 + 1 / b) + (1 - f ** ((b + 1) / b)) / (b + 1)

    def selects(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs

    def select(self, fwd: Forward, index: Tensor, epoch: int) -> Selection:
        score = getattr(fwd, self.score_field)
        self.history.append(score)  # the batch's own scores are in the history before percentiles are taken
        prob = self.history.percentile(score).pow(self.beta).clamp_min(self.floor)
        picked = torch.rand(len(score), generator=self.generator, device=self.device) < prob
        return Selection(picked.long(), prob)

    def state(self) -> dict:
        return {"history_size": float(self.history.count)}


class EntropySelectiveBackprop(SelectiveBackprop):
    name = "sbe"
    description = "entropy SB (the paper's Section 4): as sb, but the score and its history are the prediction entropy"
    score_field = "entropy"
