"""What a run may spend and how its learning rate moves over it: the budget protocol beside the paper's epochs.

Without a budget (`--budget 0`, the paper's protocol) a run offers its candidates `--epochs` times, whatever it
back-propagates. With one, a run stops as soon as it has spent `budget` × a full sgd run, where a full sgd run is
`--epochs` passes of back-propagating every training example, and spending is counted in

- `backprops`: examples back-propagated, or
- `cost`: examples back-propagated plus `--forward-cost` × the examples forwarded only to be scored (a method's
  scoring pass); `--forward-cost` is one scoring forward's seconds ÷ one training step's, per example, measured on
  the machine (`lossaudit calibrate`).

Either way a method's work before training (rho's irreducible-loss model) is charged at the start, and forwards made
only to log (the uniform control's opt-in scoring) are never charged. A run stops offering candidates once its spend
plus the picks already waiting reaches the budget, then trains those picks: it overshoots by at most one round of
picks, and what it really spent is logged.

The learning rate follows the run's progress p in [0, 1]: with a budget, the share of it spent; without, the share
of the candidate passes made. `step` (the paper's): lr × gamma at each milestone; without a budget the milestones
are whole epochs, as before. `linear`: lr × (1 − p), falling to zero when the budget (or the last pass) ends, so
that every budget gets a complete schedule of its own (budgeted training: Li, Yumer & Ramanan, ICLR 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BUDGET_UNITS = ("backprops", "cost")
SCHEDULES = ("step", "linear")
PASS_SLACK = 4  # a budgeted run offers at most this many times the passes its method's nominal selectivity needs


@dataclass(frozen=True, kw_only=True)
class Budget:
    """The spending rule of one run. share: of a full sgd run (0 = no budget); full: a full sgd run's backprops, over
    the training examples before a method's holdout (rho trains on fewer, and is charged the same budget)."""

    share: float
    unit: str
    forward_cost: float
    full: int

    @classmethod
    def of(cls, cfg, n_train: int) -> "Budget":
        return cls(share=cfg.budget, unit=cfg.budget_unit, forward_cost=cfg.forward_cost,
                   full=cfg.epochs * n_train)

    @property
    def on(self) -> bool:
        return self.share > 0

    @property
    def total(self) -> float:
        """What the run may spend, in its unit (backprops, or training-step equivalents)."""
        return self.share * self.full

    def spent(self, counters) -> float:
        """What the run has spent so far (training.logs.Counters): its backprops (+ forward_cost × scoring forwards,
        in `cost`), its work before training included."""
        backprops = counters.backprops + counters.upfront_backprops
        forwards = counters.forwards_scoring + counters.upfront_forwards
        return backprops + (self.forward_cost * forwards if self.unit == "cost" else 0.0)

    def spent_out(self, counters, waiting: int = 0) -> bool:
        """Whether the run has spent its budget, counting `waiting` picks not yet trained as spent (False without a
        budget)."""
        return self.on and self.spent(counters) + waiting >= self.total

    def passes(self, epochs: int, selectivity: float) -> int:
        """The candidate passes a budgeted run plans for (its method's epoch-indexed rules read them): the budget at
        the method's nominal selectivity, rounded up."""
        if not self.on:
            return epochs
        return max(1, math.ceil(self.share * epochs / max(selectivity, 1e-9) - 1e-9))


def lr_at(cfg, progress: float, epoch: int) -> float:
    """The learning rate at `progress` (share of the budget spent, or of the passes made) in `epoch`."""
    if cfg.schedule == "linear":
        return cfg.lr * max(0.0, 1.0 - progress)
    if cfg.budget > 0:
        drops = sum(progress >= m for m in cfg.lr_milestones)
    else:  # the paper's epoch schedule: drops at whole epochs
        drops = sum(epoch >= round(m * cfg.epochs) for m in cfg.lr_milestones)
    return cfg.lr * cfg.lr_gamma ** drops
