"""Selective Backprop (Jiang et al. 2019): pick with probability percentile(loss) ** beta."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import MAX_EPOCHS, setting
from lossaudit.training.methods.base import Forward, Method, Preset, Selection, warmup_epochs_setting
from lossaudit.training.methods.cache import ScoreCache

HISTORY_SIZE = 1024  # the reference implementation's FIFO of recent losses
MAX_HISTORY = 10_000_000  # scores kept at most (a float each)


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


# Stale SB's staleness: the SB paper's reference code re-scores an example every 3 epochs from its command line
# (its library's default is 2); between, the loss of its last scoring or training forward stands in.
STALE_SB_EPOCHS = 3


@dataclass(frozen=True)
class SBParams:
    beta: float = setting(1.0, "sb/sbe: pick probability = percentile ** beta (1 ≈ 50% selected, 2 ≈ 33%)",
                          check=lambda v: 0 < v <= 100, rule="in (0, 100] (100 ≈ 1% selected)")
    floor: float = setting(0.0, "sb/sbe: lowest pick probability", check=lambda v: 0 <= v <= 1, rule="in [0, 1]")
    history_size: int = setting(HISTORY_SIZE, "sb/sbe: losses (or entropies) kept in the FIFO history",
                                unit="scores", check=lambda v: 1 <= v <= MAX_HISTORY, rule=f"in 1..{MAX_HISTORY:,}")
    warmup_epochs: int = warmup_epochs_setting()
    staleness: int = setting(1, "sb/sbe: re-score an example only when its cached score is this many epochs old; "
                                "1 = always", unit="epochs", check=lambda v: 1 <= v <= MAX_EPOCHS,
                          rule=f"in 1..{MAX_EPOCHS:,} (1 = always re-score)")


class SelectiveBackprop(Method):
    name = "sb"
    description = "Selective Backprop: pick with probability max(floor, percentile of the loss in a 1024 history ** beta)"
    Params = SBParams
    presets = {"sb50": Preset({"beta": 1.0}, "the paper's SB 50%: sb with beta 1"),
               "sb33": Preset({"beta": 2.0}, "the paper's SB 33%: sb with beta 2"),
               "stalesb50": Preset({"beta": 1.0, "staleness": STALE_SB_EPOCHS},
                                   f"Stale SB at 50%: sb50 re-scoring an example every {STALE_SB_EPOCHS} epochs"),
               "stalesb33": Preset({"beta": 2.0, "staleness": STALE_SB_EPOCHS},
                                   f"Stale SB at 33%: sb33 re-scoring an example every {STALE_SB_EPOCHS} epochs")}
    loss_based = True
    score_field = "loss"

    def __init__(self, params: SBParams, **kw):
        super().__init__(params, **kw)
        self.beta, self.floor, self.warmup_epochs = params.beta, params.floor, params.warmup_epochs
        self.history = History(params.history_size, self.device)
        if params.staleness > 1:
            self.cache = ScoreCache(self.n_train, self.device, params.staleness)

    def params(self) -> dict:
        return super().params() | {"score": self.score_field}

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

    def state_dict(self) -> dict:
        h = self.history
        out = {"history": h.values.clone(), "history_count": h.count, "history_pos": h.pos}
        return out | ({"cache": self.cache.state_dict()} if self.cache is not None else {})

    def load_state_dict(self, state: dict) -> None:
        self.history.values.copy_(state["history"])
        self.history.count, self.history.pos = state["history_count"], state["history_pos"]
        if self.cache is not None:
            self.cache.load_state_dict(state["cache"])


class EntropySelectiveBackprop(SelectiveBackprop):
    name = "sbe"
    description = "entropy SB (the paper's Section 4): as sb, but the score and its history are the prediction entropy"
    presets = {"sbe50": Preset({"beta": 1.0}, "entropy SB at 50%: sbe with beta 1"),
               "sbe33": Preset({"beta": 2.0}, "entropy SB at 33%: sbe with beta 2")}
    score_field = "entropy"
