"""Loss-proportional importance sampling with Katharopoulos & Fleuret's variance-reduction switch."""

from __future__ import annotations

import torch
from torch import Tensor

from lossaudit.training.config import RunConfig
from lossaudit.training.methods.base import Forward, Method, Selection


class ImportanceSampling(Method):
    name = "vr"
    description = ("loss-proportional sampling (Katharopoulos & Fleuret) of B picks from a pool of B/max_selectivity, "
                   "switched on when tau exceeds tau_th; no up-weighting unless --reweight")
    fields = ("max_selectivity", "tau_th", "reweight")
    loss_based = True

    def __init__(self, cfg: RunConfig, **kw):
        super().__init__(cfg, **kw)
        self.presample = round(1.0 / cfg.max_selectivity, 1)  # 0.5 → 2.0, 0.33 → 3.0
        self.pool = round(self.presample * self.batch_size)
        self.tau_th = cfg.tau_th or (self.pool + 3 * self.batch_size) / (3 * self.batch_size)
        self.reweight = cfg.reweight
        self.tau = torch.zeros((), dtype=torch.float64, device=self.device)
        self.on = False

    def params(self) -> dict:
        return dict(score="loss", pool=self.pool, presample=self.presample, tau_th=self.tau_th,
                    reweight=self.reweight, tau_momentum=0.9)

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
        self.tau = 0.9 * self.tau + 0.1 * torch.sqrt(n * (g * g).sum())
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
