"""RHO-LOSS (Mindermann et al. 2022): train on the top B of a pool by loss minus irreducible loss."""

from __future__ import annotations

import torch
from torch import Tensor

from lossaudit.training.config import RunConfig
from lossaudit.training.methods.base import Forward, Method, Selection


class RhoLoss(Method):
    name = "rho"
    description = ("RHO-LOSS: top B of a pool of B/selectivity by loss - irreducible loss, the latter from a model "
                   "trained on a held-out share of the training set")
    fields = ("selectivity", "holdout_fraction", "il_model", "il_epochs")
    needs_irreducible_loss = True

    def __init__(self, cfg: RunConfig, **kw):
        super().__init__(cfg, **kw)
        self.selectivity, self.holdout_fraction = cfg.selectivity, cfg.holdout_fraction
        self.il_model, self.il_epochs = cfg.il_model or cfg.model, cfg.il_epochs or cfg.epochs
        self.pool = round(self.batch_size / cfg.selectivity)
        self.irreducible: Tensor | None = None  # (n_train,) set by the trainer before training
        self.last: dict = {}

    def params(self) -> dict:
        return dict(pool=self.pool, selectivity=self.selectivity, holdout_fraction=self.holdout_fraction,
                    il_model=self.il_model, il_epochs=self.il_epochs)

    @property
    def nominal_selectivity(self) -> float:
        return self.batch_size / self.pool

    def candidate_size(self) -> int:
        return self.pool

    def selects(self, epoch: int) -> bool:
        return True

    def select(self, fwd: Forward, index: Tensor, epoch: int) -> Selection:
        reducible = fwd.loss - self.irreducible[index]
        k = min(len(index), self.picks_for(len(index), self.pool, self.batch_size))
        top = reducible.topk(k).indices
        picked = torch.zeros(len(index), dtype=torch.int64, device=self.device)
        picked[top] = 1
        self.last = {"selected_share": k / len(index), "mean_reducible_loss": reducible[top].mean()}
        return Selection(picked, picked.float())

    def state(self) -> dict:
        return dict(self.last)
