"""Which labels a run itself finds implausible, from forwards it makes anyway: one component, used by the selectors
that decline to train on likely mislabeled examples (sbp from its scoring forwards, ibp from its training forwards).

Each training example i keeps running margins, updated from the forwards it is given:
  m_label[i]  EMA of logit[label] − max other logit (Forward.margin),
  m_wrong[i]  EMA of logit[wrong] − max logit of the classes other than wrong, where
              wrong = (label + offset[i]) mod K; offset[i] is drawn once, uniformly from 1..K−1, with
              the method's generator at the first forward (when K is known);
  EMA: m ← (1 − ema)·m + ema·new, an example's first value taken as is.
τ = the `quantile` quantile of m_wrong over every example seen so far (NaN, so nobody is a suspect, while fewer than
2 have been seen); an example is a suspect when m_label < τ: its label is no more plausible than a wrong one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lossaudit.training.methods.base import Forward

NOT_YET = float("nan")  # τ while fewer than 2 examples have been seen: nobody is a suspect


class PlausibleLabels:
    def __init__(self, n_train: int, device: torch.device, generator: torch.Generator, *, ema: float,
                 quantile: float, owner: str):
        self.ema, self.quantile, self.owner = ema, quantile, owner
        self.device, self.generator, self.n_train = device, generator, n_train
        zeros = lambda dtype: torch.zeros(n_train, dtype=dtype, device=device)  # noqa: E731
        self.m_label, self.m_wrong, self.seen = zeros(torch.float32), zeros(torch.float32), zeros(torch.int64)
        self.offset: Tensor | None = None  # (N,) int64 in 1..K−1, drawn when K is first known

    def update(self, index: Tensor, fwd: Forward) -> None:
        """Fold one forward of the (distinct) examples `index` into their running margins."""
        if fwd.logits is None or fwd.label is None:
            raise ValueError(f"{self.owner} needs each forward's logits and labels (Forward.from_logits); this "
                             "Forward has none, as one read from a score cache")
        logits = fwd.logits.float()
        n_classes = logits.shape[1]
        if self.offset is None:
            if n_classes < 2:
                raise ValueError(f"{self.owner} needs at least 2 classes for a wrong label, got {n_classes}")
            self.offset = torch.randint(1, n_classes, (self.n_train,), generator=self.generator, device=self.device)
        wrong = ((fwd.label + self.offset[index]) % n_classes)[:, None]
        wrong_margin = logits.gather(1, wrong).squeeze(1) - logits.scatter(1, wrong, float("-inf")).max(1).values
        first = self.seen[index] == 0
        for running, new in ((self.m_label, fwd.margin.float()), (self.m_wrong, wrong_margin)):
            running[index] = torch.where(first, new, (1 - self.ema) * running[index] + self.ema * new)
        self.seen[index] += 1

    def threshold(self) -> Tensor:
        """τ, a 0-dim float32 (NaN while fewer than 2 examples are seen). No host sync."""
        seen = self.seen > 0
        tau = torch.nanquantile(torch.where(seen, self.m_wrong, NOT_YET), self.quantile)
        return torch.where(seen.sum() >= 2, tau, NOT_YET)

    def suspects(self, index: Tensor) -> Tensor:
        """(n,) bool: the examples whose label is now no more plausible than a wrong one."""
        return self.m_label[index] < self.threshold()

    def state(self) -> dict:
        """τ and the share of seen examples that are suspects now, as 0-dim float tensors (no host sync)."""
        tau, seen = self.threshold(), self.seen > 0
        share = ((self.m_label < tau) & seen).sum() / seen.sum().clamp_min(1)
        return {"plausible_tau": tau, "suspect_share": share.float()}

    def state_dict(self) -> dict:
        return {"m_label": self.m_label.clone(), "m_wrong": self.m_wrong.clone(), "seen": self.seen.clone(),
                "offset": None if self.offset is None else self.offset.clone()}

    def load_state_dict(self, state: dict) -> None:
        for name in ("m_label", "m_wrong", "seen"):
            getattr(self, name).copy_(state[name])
        self.offset = None if state["offset"] is None else state["offset"].to(self.device)
