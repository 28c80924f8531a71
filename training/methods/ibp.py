"""InfoBatch over plausible labels (ibp): in-step loss pruning that also declines to train on the examples the run
itself finds mislabeled. No held-out model, no scoring forward: everything comes from training's own forwards.

As infobatch (training/methods/infobatch.py), each example keeps the statistics of its own last training forward,
and in a pruning epoch a non-suspect whose kept loss is below the mean of the non-suspects' kept losses is left
out with probability r (and weighted 1/(1 − r) when kept). In addition, every training forward feeds the running
label margins of training/methods/plausible.py, and a suspect (its label no more plausible than a wrong one) is
kept only with probability suspect_keep, unweighted — once the gate opens, after the first suspect_from share of the
epochs (a model that has barely learned finds many clean labels implausible, and a suspect rarely trained never
shows otherwise), and through the full-data tail: the tail trains every non-suspect, but not the labels the run
has found implausible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import setting
from lossaudit.training.methods.base import Diagnostic, Forward, Preset, Selection, shared_setting
from lossaudit.training.methods.infobatch import InfoBatch, InfoBatchParams
from lossaudit.training.methods.plausible import PlausibleLabels
from lossaudit.training.methods.sbp import SBPParams


@dataclass(frozen=True)
class IBPParams:
    prune_ratio: float = shared_setting(InfoBatchParams, "prune_ratio")
    full_tail: float = shared_setting(InfoBatchParams, "full_tail")
    plausible_ema: float = shared_setting(SBPParams, "plausible_ema")
    suspect_quantile: float = setting(0.5, "ibp: a label is implausible when its running margin is below this "
                                           "quantile of the running margins of wrong labels (sbp's test, stricter: "
                                           "on clean CIFAR-10 sbp's 0.9 flagged a quarter of the examples)",
                                      check=lambda v: 0 < v < 1, rule="in (0, 1)")
    suspect_keep: float = setting(0.1, "ibp: probability of training an example whose label is implausible "
                                       "(unweighted), once the gate is open",
                                  check=lambda v: 0 <= v <= 1, rule="in [0, 1]")
    suspect_from: float = setting(0.3, "ibp: share of the epochs before the plausibility gate opens (early on, a "
                                       "weak model finds many clean labels implausible)",
                                  check=lambda v: 0 <= v < 1, rule="in [0, 1)")


class InfoBatchPlausible(InfoBatch):
    name = "ibp"
    description = ("InfoBatch over plausible labels: infobatch's pruning among the examples whose label the run finds "
                   "plausible, and an example whose running label margin is below the suspect_quantile of running "
                   "wrong-label margins kept with suspect_keep only; no scoring forward, no held-out model")
    Params = IBPParams
    presets = {"ibp30": Preset({"prune_ratio": 0.3}, "ibp with r = 0.3"),
               "ibp50": Preset({"prune_ratio": 0.5}, "ibp with r = 0.5")}
    diagnostics = (*InfoBatch.diagnostics,
                   Diagnostic("suspect_share", "suspect share", "the share of the examples seen so far whose running "
                              "label margin marks them as likely mislabeled (trained with suspect_keep only)"))

    def __init__(self, params: IBPParams, **kw):
        super().__init__(params, **kw)
        self.suspect_keep = params.suspect_keep
        self.gate_from = max(1, round(params.suspect_from * self.epochs))
        self.plausible = PlausibleLabels(self.n_train, self.device, self.generator, ema=params.plausible_ema,
                                         quantile=params.suspect_quantile, owner=self.name)

    def selects(self, epoch: int) -> bool:
        return epoch >= 1

    def suspects(self, index: Tensor, epoch: int) -> Tensor:
        """(n,) bool: the implausible labels, once the gate is open (none before)."""
        if epoch < self.gate_from:
            return torch.zeros(len(index), dtype=torch.bool, device=self.device)
        return self.plausible.suspects(index)

    def threshold(self, epoch: int) -> Tensor:
        """The mean of the non-suspects' kept losses at the start of `epoch` (once per epoch, on the device)."""
        if self.mean_epoch != epoch:
            counted = (self.kept.epoch >= 0) & ~self.suspects(torch.arange(self.n_train, device=self.device), epoch)
            losses = self.kept.values.loss
            self.mean = torch.where(counted.any(), (losses * counted).sum() / counted.sum().clamp_min(1), 0.0)
            self.below = ((losses < self.mean) & counted).sum() / max(1, len(losses))
            self.mean_epoch = epoch
        return self.mean

    def keep_prob(self, index: Tensor, epoch: int) -> Tensor:
        """suspect_keep for a suspect; for the others infobatch's 1 − r below the mean in a pruning epoch, else 1."""
        plausible = super().keep_prob(index, epoch) if InfoBatch.selects(self, epoch) else torch.ones(
            len(index), device=self.device)
        return torch.where(self.suspects(index, epoch), self.suspect_keep, plausible)

    def select(self, fwd: Forward | None, index: Tensor, epoch: int) -> Selection:
        prob = self.keep_prob(index, epoch)
        picked = (torch.rand(len(index), generator=self.generator, device=self.device) < prob).long()
        suspect = self.suspects(index, epoch)
        weight = torch.where(suspect, 1.0, 1.0 / prob.clamp_min(1e-12))  # a suspect is kept, never up-weighted
        return Selection(picked, prob, weight=weight, cached=self.kept.lookup(index))

    def trained(self, index: Tensor, fwd: Forward, epoch: int) -> None:
        super().trained(index, fwd, epoch)
        self.plausible.update(index, fwd)

    def state(self) -> dict:
        return super().state() | self.plausible.state()

    def state_dict(self) -> dict:
        return super().state_dict() | {"plausible": self.plausible.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.plausible.load_state_dict(state["plausible"])
