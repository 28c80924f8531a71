"""Selective Backprop over plausible labels: sb that skips examples whose label the model, persistently,
finds no more plausible than a wrong label. No held-out model: everything is learned in-run.

Each training example i keeps running margins, updated from every scoring forward of it (and, during
warm-up, from its training forwards, so that the first selecting epoch already has a threshold):
  m_label[i]  EMA of logit[label] − max other logit (Forward.margin),
  m_wrong[i]  EMA of logit[wrong] − max logit of the classes other than wrong, where
              wrong = (label + offset[i]) mod K; offset[i] is drawn once, uniformly from 1..K−1, with
              the method's generator at the first forward (when K is known);
  EMA: m ← (1 − plausible_ema)·m + plausible_ema·new, an example's first value taken as is.
A round of candidates: update their margins; τ = the plausible_quantile quantile of m_wrong over every
example seen so far (none is suspect while fewer than 2 have been seen); suspect = m_label < τ. Suspects
are picked with probability suspect_prob; the others exactly as sb, with a history that holds only the
losses of non-suspects: p = max(floor, percentile(loss) ** beta). Picks: U(0, 1) < p. The nominal
selectivity is sb's; the realised one is lower by the suspects' share.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from lossaudit.core.settings import setting
from lossaudit.training.methods.base import Diagnostic, Forward, Method, Preset, Selection, warmup_epochs_setting
from lossaudit.training.methods.sb import History, SBParams, SelectiveBackprop

NOT_YET = float("nan")  # τ while fewer than 2 examples have been seen: nobody is a suspect


def _as_sb(name: str) -> dataclasses.Field:
    """sb's own declaration of a parameter both methods have (the registry shows the first one)."""
    declared = {f.name: f for f in dataclasses.fields(SBParams)}[name]
    return dataclasses.field(default=declared.default, metadata=declared.metadata)


@dataclass(frozen=True)
class SBPParams:
    beta: float = _as_sb("beta")
    floor: float = _as_sb("floor")
    history_size: int = _as_sb("history_size")
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
        self.ema, self.quantile = params.plausible_ema, params.plausible_quantile
        self.suspect_prob = params.suspect_prob
        self.history = History(params.history_size, self.device)
        zeros = lambda dtype: torch.zeros(self.n_train, dtype=dtype, device=self.device)  # noqa: E731
        self.m_label, self.m_wrong, self.seen = zeros(torch.float32), zeros(torch.float32), zeros(torch.int64)
        self.offset: Tensor | None = None  # (N,) int64 in 1..K−1, drawn when K is first known

    def params(self) -> dict:
        return super().params() | {"score": "loss"}

    @property
    def nominal_selectivity(self) -> float:
        """sb's: E[max(floor, U ** beta)] for uniform percentiles U. The realised selectivity is lower by the
        suspects' share s: about (1 − s) · nominal + s · suspect_prob."""
        return SelectiveBackprop.nominal_selectivity.fget(self)

    def selects(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs

    # -- running margins ----------------------------------------------------------------------

    def update(self, index: Tensor, fwd: Forward) -> None:
        """Fold one forward of the (distinct) examples `index` into their running margins."""
        if fwd.logits is None or fwd.label is None:
            raise ValueError("sbp needs each forward's logits and labels (Forward.from_logits); this Forward has "
                             "none, as one read from a score cache")
        logits = fwd.logits.float()
        n_classes = logits.shape[1]
        if self.offset is None:
            if n_classes < 2:
                raise ValueError(f"sbp needs at least 2 classes for a wrong label, got {n_classes}")
            self.offset = torch.randint(1, n_classes, (self.n_train,), generator=self.generator, device=self.device)
        wrong = ((fwd.label + self.offset[index]) % n_classes)[:, None]
        wrong_margin = logits.gather(1, wrong).squeeze(1) - logits.scatter(1, wrong, float("-inf")).max(1).values
        first = self.seen[index] == 0
        for running, new in ((self.m_label, fwd.margin.float()), (self.m_wrong, wrong_margin)):
            running[index] = torch.where(first, new, (1 - self.ema) * running[index] + self.ema * new)
        self.seen[index] += 1

    def threshold(self) -> Tensor:
        """τ, a 0-dim float32: the plausible_quantile of m_wrong over seen examples; NaN while fewer than 2 are seen
        (then `m_label < τ` holds for nobody). No host sync."""
        seen = self.seen > 0
        tau = torch.nanquantile(torch.where(seen, self.m_wrong, NOT_YET), self.quantile)
        return torch.where(seen.sum() >= 2, tau, NOT_YET)

    def trained(self, index: Tensor, fwd: Forward, epoch: int) -> None:
        """In warm-up epochs, where nothing is scored, the training forwards feed the running margins."""
        if epoch < self.warmup_epochs:
            self.update(index, fwd)

    # -- selection ----------------------------------------------------------------------------

    def select(self, fwd: Forward, index: Tensor, epoch: int) -> Selection:
        """fwd: a scoring forward with logits and labels; index: (n,) distinct positions. select_prob: (n,) float32,
        suspect_prob for suspects, sb's probability for the others."""
        self.update(index, fwd)
        suspect = self.m_label[index] < self.threshold()
        self.history.append(fwd.loss[~suspect])  # only the non-suspects' losses, before percentiles are taken
        sb_prob = self.history.percentile(fwd.loss).pow(self.beta).clamp_min(self.floor)
        prob = torch.where(suspect, torch.full_like(sb_prob, self.suspect_prob), sb_prob)
        picked = torch.rand(len(index), generator=self.generator, device=self.device) < prob
        return Selection(picked.long(), prob)

    def state(self) -> dict:
        """τ (NaN before there is one) and the share of seen examples that are suspects now, as 0-dim float
        tensors (no host sync per step)."""
        tau, seen = self.threshold(), self.seen > 0
        share = ((self.m_label < tau) & seen).sum() / seen.sum().clamp_min(1)
        return {"plausible_tau": tau, "suspect_share": share.float()}

    def state_dict(self) -> dict:
        h = self.history
        return {"history": h.values.clone(), "history_count": h.count, "history_pos": h.pos,
                "m_label": self.m_label.clone(), "m_wrong": self.m_wrong.clone(), "seen": self.seen.clone(),
                "offset": None if self.offset is None else self.offset.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.history.values.copy_(state["history"])
        self.history.count, self.history.pos = state["history_count"], state["history_pos"]
        for name in ("m_label", "m_wrong", "seen"):
            getattr(self, name).copy_(state[name])
        self.offset = None if state["offset"] is None else state["offset"].to(self.device)
