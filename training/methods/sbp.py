"""Selective Backprop over plausible labels: sb that skips examples whose label the model, persistently,
finds no more plausible than a wrong label. No held-out model: everything is learned in-run.

The running margins, their threshold τ and the suspects are training/methods/plausible.py's, fed by every scoring
forward of an example (and, during warm-up, by its training forwards, so that the first selecting epoch already
has a threshold). A round of candidates: update their margins; suspects are picked with probability suspect_prob;
the others exactly as sb, with a history that holds only the losses of non-suspects:
p = max(floor, percentile(loss) ** beta). Picks: U(0, 1) < p. The nominal selectivity is sb's; the realised one is
lower by the suspects' share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import setting
from lossaudit.training.methods.base import (Diagnostic, Forward, Method, Preset, Selection, shared_setting,
                                              warmup_epochs_setting)
from lossaudit.training.methods.plausible import PlausibleLabels
from lossaudit.training.methods.sb import History, SBParams, SelectiveBackprop

@dataclass(frozen=True)
class SBPParams:
    beta: float = shared_setting(SBParams, "beta")
    floor: float = shared_setting(SBParams, "floor")
    history_size: int = shared_setting(SBParams, "history_size")
    warmup_epochs: int = warmup_epochs_setting()
    plausible_ema: float = setting(0.5, "sbp: weight of the newest margin in each example's running margins "
                                        "(1 = the latest margin only)", check=lambda v: 0 < v <= 1, rule="in (0, 1]")
    plausible_quantile: float = setting(0.9, "sbp: a label is implausible when its running margin is below this "
                                             "quantile of the running margins of wrong labels",
                                        check=lambda v: 0 < v < 1, rule="in (0, 1)")
    suspect_prob: float = setting(0.25, "sbp: pick probability of an example whose label is implausible",
                                  check=lambda v: 0 <= v <= 1, rule="in [0, 1]")


class PlausibleSelectiveBackprop(Method):
    name = "sbp"
    description = ("Selective Backprop over plausible labels: an example whose running label margin is below the "
                   "plausible_quantile of running wrong-label margins is picked with suspect_prob; the rest as sb, "
                   "with a history of their losses only")
    Params = SBPParams
    presets = {"sbp50": Preset({"beta": 1.0}, "sbp with beta 1 (at most ≈50% selected, less by the suspects' share)"),
               "sbp33": Preset({"beta": 2.0}, "sbp with beta 2 (at most ≈33% selected, less by the suspects' share)")}
    loss_based = True
    diagnostics = (Diagnostic("suspect_share", "suspect share", "the share of the examples seen so far whose running "
                              "label margin marks them as likely mislabeled (picked with suspect_prob only)"),)

    def __init__(self, params: SBPParams, **kw):
        super().__init__(params, **kw)
        self.beta, self.floor, self.warmup_epochs = params.beta, params.floor, params.warmup_epochs
        self.suspect_prob = params.suspect_prob
        self.history = History(params.history_size, self.device)
        self.plausible = PlausibleLabels(self.n_train, self.device, self.generator, ema=params.plausible_ema,
                                         quantile=params.plausible_quantile, owner=self.name)

    def params(self) -> dict:
        return super().params() | {"score": "loss"}

    @property
    def nominal_selectivity(self) -> float:
        """sb's: E[max(floor, U ** beta)] for uniform percentiles U. The realised selectivity is lower by the
        suspects' share s: about (1 − s) · nominal + s · suspect_prob."""
        return SelectiveBackprop.nominal_selectivity.fget(self)

    def selects(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs

    def trained(self, index: Tensor, fwd: Forward, epoch: int) -> None:
        """In warm-up epochs, where nothing is scored, the training forwards feed the running margins."""
        if epoch < self.warmup_epochs:
            self.plausible.update(index, fwd)

    # -- selection ----------------------------------------------------------------------------

    def select(self, fwd: Forward, index: Tensor, epoch: int) -> Selection:
        """fwd: a scoring forward with logits and labels; index: (n,) distinct positions. select_prob: (n,) float32,
        suspect_prob for suspects, sb's probability for the others."""
        self.plausible.update(index, fwd)
        suspect = self.plausible.suspects(index)
        self.history.append(fwd.loss[~suspect])  # only the non-suspects' losses, before percentiles are taken
        sb_prob = self.history.percentile(fwd.loss).pow(self.beta).clamp_min(self.floor)
        prob = torch.where(suspect, torch.full_like(sb_prob, self.suspect_prob), sb_prob)
        picked = torch.rand(len(index), generator=self.generator, device=self.device) < prob
        return Selection(picked.long(), prob)

    def state(self) -> dict:
        return self.plausible.state()

    def state_dict(self) -> dict:
        h = self.history
        return {"history": h.values.clone(), "history_count": h.count, "history_pos": h.pos} | self.plausible.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.history.values.copy_(state["history"])
        self.history.count, self.history.pos = state["history_count"], state["history_pos"]
        self.plausible.load_state_dict(state)
