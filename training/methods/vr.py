"""Loss-proportional importance sampling with Katharopoulos & Fleuret's variance-reduction switch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import setting
from lossaudit.training.methods.base import Diagnostic, Forward, Method, Preset, Selection

TAU_MOMENTUM = 0.9  # the reference's EMA of tau: tau ← 0.9 tau + 0.1 tau_new


@dataclass(frozen=True)
class VRParams:
    max_selectivity: float = setting(0.5, "vr: pool = B × round(1/max_selectivity, 1) candidates (0.5 → 2B, "
                                          "0.33 → 3B)", check=lambda v: 0 < v < 1, rule="in (0, 1)")
    tau_th: float = setting(0.0, "vr: variance-reduction switch threshold; 0 = (pool + 3B) / 3B",
                            check=lambda v: v >= 0, rule=">= 0 (0 = default rule)")
    reweight: bool = setting(False, "vr: weight each pick's loss by 1/(pool · P) (unbiased importance sampling)")


class ImportanceSampling(Method):
    name = "vr"
    description = ("loss-proportional sampling (Katharopoulos & Fleuret) of B picks from a pool of B/max_selectivity, "
                   "switched on when tau exceeds tau_th; no up-weighting unless --reweight")
    Params = VRParams
    presets = {"vr50": Preset({"max_selectivity": 0.5}, "the paper's VR 50%: pool of 2B"),
               "vr33": Preset({"max_selectivity": 1 / 3}, "the paper's VR 33%: pool of 3B")}
    loss_based = True
    switch = "is_on"
    diagnostics = (Diagnostic("tau", "τ", "an EMA of how uneven the losses of a pool are; the method samples by loss "
                                         "only while it is above its threshold", threshold="tau_th"),)

    def __init__(self, params: VRParams, **kw):
        super().__init__(params, **kw)
        self.presample = round(1.0 / params.max_selectivity, 1)  # 0.5 → 2.0, 0.33 → 3.0
        self.pool = round(self.presample * self.batch_size)
        self.tau_th = params.tau_th or (self.pool + 3 * self.batch_size) / (3 * self.batch_size)
        self.reweight = params.reweight
        self.tau = torch.zeros((), dtype=torch.float64, device=self.device)
        self.on = False

    def params(self) -> dict:
        return super().params() | dict(score="loss", pool=self.pool, presample=self.presample, tau_th=self.tau_th,
                                       tau_momentum=TAU_MOMENTUM)

    @property
    def nominal_selectivity(self) -> float:
        """B picks (with replacement) per pool, while switched on."""
        return self.batch_size / self.pool

    def candidate_size(self) -> int:
        return self.pool

    def selects(self, epoch: int) -> bool:
        """Reads the switch for this pool: on while tau > tau_th (one host sync per pool)."""
        self.on = bool(self.tau > self.tau_th)
        return self.on

    def update_tau(self, scores: Tensor) -> Tensor:
        """EMA of tau = sqrt(n · Σ g²), g = scores / Σ scores (uniform if they sum to 0); returns g."""
        scores = scores.double()
        n, total = len(scores), scores.sum()
        g = torch.where(total > 0, scores / total.clamp_min(1e-300), torch.full_like(scores, 1.0 / n))
        self.tau = TAU_MOMENTUM * self.tau + (1 - TAU_MOMENTUM) * torch.sqrt(n * (g * g).sum())
        return g

    def select(self, fwd: Forward, index: Tensor, epoch: int) -> Selection:
        g = self.update_tau(fwd.loss)
        n_picks = self.picks_for(len(index), self.pool, self.batch_size)
        draws = torch.multinomial(g, n_picks, replacement=True, generator=self.generator)
        picked = torch.bincount(draws, minlength=len(index))
        weight = (1.0 / (len(index) * g).clamp_min(1e-12)).float() if self.reweight else None
        return Selection(picked, g.float(), weight)

    def expected_picks(self, sel: Selection) -> Tensor:
        """select_prob is per draw; a round of n candidates makes picks_for(n) draws."""
        return sel.select_prob * self.picks_for(len(sel.select_prob), self.pool, self.batch_size)

    def trained(self, index: Tensor, fwd: Forward, epoch: int) -> None:
        if not self.on:  # switched off: the training losses keep tau up to date
            self.update_tau(fwd.loss)

    def state(self) -> dict:
        return {"tau": self.tau, "is_on": float(self.on)}

    def state_dict(self) -> dict:
        return {"tau": self.tau.clone(), "on": self.on}

    def load_state_dict(self, state: dict) -> None:
        self.tau, self.on = state["tau"].to(self.device), state["on"]
