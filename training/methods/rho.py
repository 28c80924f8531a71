"""RHO-LOSS (Mindermann et al. 2022): train on the top B of a pool by loss minus irreducible loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import MAX_EPOCHS, setting
from lossaudit.training.methods.base import Forward, Method, Selection, selectivity_setting
from lossaudit.training.models import is_model_name


@dataclass(frozen=True)
class RhoParams:
    selectivity: float = selectivity_setting()
    holdout_fraction: float = setting(0.5, "rho: share of the training set held out to train the irreducible-loss "
                                           "model", check=lambda v: 0 < v < 1, rule="in (0, 1)")
    il_model: str = setting("", "rho: model of the irreducible-loss run; empty = same as --model",
                            check=lambda v: v == "" or is_model_name(v), rule="a model name (see --model) or empty")
    il_epochs: int = setting(0, "rho: epochs of the irreducible-loss run; 0 = same as --epochs", unit="epochs",
                             check=lambda v: 0 <= v <= MAX_EPOCHS, rule=f"in 0..{MAX_EPOCHS:,}")


class RhoLoss(Method):
    name = "rho"
    description = ("RHO-LOSS: top B of a pool of B/selectivity by loss - irreducible loss, the latter from a model "
                   "trained on a held-out share of the training set")
    Params = RhoParams
    upfront = "the irreducible-loss model"

    def __init__(self, params: RhoParams, **kw):
        super().__init__(params, **kw)
        self.pool = round(self.batch_size / params.selectivity)
        self.irreducible: Tensor | None = None  # (n_train,), set by `setup` before training
        self.last: dict = {}

    def params(self) -> dict:
        return super().params() | dict(pool=self.pool)

    @property
    def nominal_selectivity(self) -> float:
        return self.batch_size / self.pool

    @classmethod
    def holdout_share(cls, params: RhoParams) -> float:
        return params.holdout_fraction

    @classmethod
    def holdout_epochs(cls, params: RhoParams, epochs: int) -> int:
        return params.il_epochs or epochs

    def setup(self, trainer) -> None:
        """Fit the irreducible-loss model on the holdout (the trainer's recipe, this method's model and epochs) and
        keep its loss on every training example."""
        self.irreducible = trainer.fit_holdout_model(model=self.p.il_model or None, epochs=self.p.il_epochs or None)

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

    def state_dict(self) -> dict:
        return {"irreducible": self.irreducible, "last": dict(self.last)}

    def load_state_dict(self, state: dict) -> None:
        self.irreducible = state["irreducible"].to(self.device)
        self.last = dict(state["last"])
