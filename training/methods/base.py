"""The selection-method interface: per-example statistics of a forward pass in, picks out.

Methods are pure: they hold their own state (histories, EMAs, caches) as tensors on the training
device and never touch the model, the data or the database. The trainer asks, for each round of
candidates: does the method select this epoch (`selects`)? If so it scores the candidates (unless
the method needs no scores), calls `select`, and queues the picks; if not, every candidate is trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from lossaudit.core.settings import MAX_EPOCHS, setting


@dataclass(frozen=True)
class Forward:
    """Per-example statistics of one forward pass, on the device; every field is (n,) but `logits`.

    loss: cross-entropy of the label as trained (nats); entropy: -sum p log p (nats); margin: logit
    of the label minus the largest other logit; p_true: softmax probability of the label; pred: argmax.
    logits: (n, K) float32, detached; label: (n,) int64, the labels as trained. Both are set by
    `from_logits` and may be None elsewhere (the score cache keeps neither).
    """

    loss: Tensor
    entropy: Tensor
    margin: Tensor
    p_true: Tensor
    pred: Tensor
    logits: Tensor | None = None
    label: Tensor | None = None

    @classmethod
    def from_logits(cls, logits: Tensor, y: Tensor) -> "Forward":
        logits = logits.detach().float()
        logp = F.log_softmax(logits, dim=1)
        logp_true = logp.gather(1, y[:, None]).squeeze(1)
        others = logits.scatter(1, y[:, None], float("-inf"))
        return cls(
            loss=-logp_true,
            entropy=-(logp.exp() * logp).sum(1),
            margin=logits.gather(1, y[:, None]).squeeze(1) - others.max(1).values,
            p_true=logp_true.exp(),
            pred=logits.argmax(1),
            logits=logits,
            label=y,
        )

    def scatter(self, rows: Tensor, other: "Forward") -> "Forward":
        """A copy with `rows` replaced by the values of `other` (len(other) == len(rows)); an optional field
        (logits, label) is None unless both have it."""
        def put(mine: Tensor | None, theirs: Tensor | None) -> Tensor | None:
            if mine is None or theirs is None:
                return None
            out = mine.clone()
            out[rows] = theirs.to(out.dtype)
            return out
        return Forward(*(put(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class Selection:
    """What a method decided for n candidates.

    picked: (n,) int64, times each candidate is back-propagated (0, 1, or more when sampling with
    replacement); select_prob: (n,) float32, the probability it was given (per draw for samplers);
    weight: (n,) float32 loss weight of each pick, or None for an unweighted mean; cached: for a method that
    selects without a scoring forward, the statistics it judged the candidates by (logged as stale score rows of
    the candidates it leaves out; a picked one is logged by its training forward), or None.
    """

    picked: Tensor
    select_prob: Tensor
    weight: Tensor | None = None
    cached: Forward | None = None


# Parameters several methods share: one declaration each, so their flag and help are the same everywhere.


def warmup_epochs_setting():
    return setting(1, "sb/sbe/uniform: first epochs that train on every example, history untouched", unit="epochs",
                   check=lambda v: 0 <= v <= MAX_EPOCHS, rule=f"in 0..{MAX_EPOCHS:,}")


def shared_setting(params: type, name: str) -> dataclasses.Field:
    """Another method's declaration of a parameter both have: one flag, one meaning, one default."""
    declared = {f.name: f for f in dataclasses.fields(params)}[name]
    return dataclasses.field(default=declared.default, metadata=declared.metadata)


def selectivity_setting():
    return setting(0.5, "uniform/rho: share of candidates back-propagated", check=lambda v: 0 < v <= 1,
                   rule="in (0, 1]")


@dataclass(frozen=True)
class Diagnostic:
    """A quantity a method logs in steps.state after each step, declared so that analysis and reports can show it
    without knowing the method: `key` in steps.state, `label` as a reader sees it, `meaning` in one sentence, and
    `threshold`, the name of the method parameter (a key of `params()`) it is compared with, if any."""

    key: str
    label: str
    meaning: str
    threshold: str | None = None

    def declared(self, params: dict) -> dict:
        """As stored in runs.config['method_traits']['diagnostics'], the threshold resolved to its value."""
        value = None if self.threshold is None else float(params[self.threshold])
        return {"key": self.key, "label": self.label, "meaning": self.meaning, "threshold": value}


@dataclass(frozen=True)
class NoParams:
    """The parameters of a method that has none."""


@dataclass(frozen=True)
class Preset:
    """A named setting of a method's parameters, e.g. the paper's SB 33% = sb with beta 2."""

    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""


class Method:
    """Base class. A method declares, as class attributes, everything the other layers need:

    `name`, `description`; `Params`, a frozen dataclass of its parameters declared with
    lossaudit.core.settings.setting (units, defaults, valid ranges: they become command-line flags, are
    validated, and are stored with each run); `presets`, named settings of them (sb50, sb33, ...);
    and its traits, stored with every run so that analysis never imports this package: `loss_based`
    (it chooses examples by their loss or entropy: the methods the verdict judges), `is_control` (a
    random subset, the control for a loss-based method of the same selectivity), `is_baseline` (it
    trains everything: the reference of Table 1), `needs_scores` (select() is given a scoring forward),
    `scores_log_only` (its picks never read that forward: it is only logged, and charged to no cost),
    `learns_from_training` (its picks read what it kept from training's own forwards: a replay feeds it those),
    `warmup_epochs` (first epochs that train every candidate), `nominal_selectivity`, `switch` (the steps.state
    key that is 1 while the method selects and 0 while it trains every candidate, for a method that decides that
    as it goes), `diagnostics` (what else it logs in steps.state, see `Diagnostic`) and `upfront` (in words, the
    work it does before its own training, which its cost includes). `traits()` is what is stored.
    """

    name: str = ""
    description: str = ""
    Params: type = NoParams
    presets: dict[str, Preset] = {}
    loss_based: bool = False
    is_control: bool = False
    is_baseline: bool = False
    needs_scores: bool = True
    scores_log_only: bool = False
    learns_from_training: bool = False
    warmup_epochs: int = 0
    switch: str | None = None
    diagnostics: tuple[Diagnostic, ...] = ()
    upfront: str | None = None

    def __init__(self, params, *, batch_size: int, n_train: int, device: torch.device, generator: torch.Generator,
                 epochs: int = 0):
        self.p = params
        self.batch_size = batch_size
        self.n_train = n_train
        self.epochs = epochs  # of the run (0: not known, e.g. when a pick rule is replayed)
        self.device = device
        self.generator = generator
        self.cache = None  # a ScoreCache when stale scores may stand in for fresh forwards

    # -- what the other layers read -----------------------------------------------------------

    def params(self) -> dict:
        """The parameters this method actually uses, derived ones included, stored in runs.config['method_params']."""
        return dataclasses.asdict(self.p)

    @property
    def nominal_selectivity(self) -> float:
        """Share of a selecting round's candidates back-propagated, by definition (1 = everything)."""
        return 1.0

    def traits(self) -> dict:
        """Everything analysis and reports know of this method, stored in runs.config['method_traits']."""
        params = self.params()
        return {"loss_based": self.loss_based, "is_control": self.is_control, "is_baseline": self.is_baseline,
                "nominal_selectivity": float(self.nominal_selectivity), "switch": self.switch,
                "diagnostics": [d.declared(params) for d in self.diagnostics], "upfront": self.upfront}

    @classmethod
    def holdout_share(cls, params) -> float:
        """Share of the training set to keep out of training for the method's own use (rho's holdout)."""
        return 0.0

    @classmethod
    def holdout_epochs(cls, params, epochs: int) -> int:
        """Epochs the method's own model trains on its holdout, for a run of `epochs` (progress counts them)."""
        return epochs

    # -- what the trainer calls ---------------------------------------------------------------

    def setup(self, trainer) -> None:
        """Called once before the first epoch: the place for work a method does before training (rho fits its
        irreducible-loss model through `trainer.fit_holdout_model`)."""

    def candidate_size(self) -> int:
        """Candidates drawn from the epoch's permutation per selection round."""
        return self.batch_size

    def selects(self, epoch: int) -> bool:
        """Whether this round's candidates are selected from; if not, every candidate is trained once.
        Selecting methods select from their first epoch after warm-up on, unless they have a switch (vr)."""
        return False

    def select(self, fwd: Forward | None, index: Tensor, epoch: int) -> Selection:
        """fwd: the candidates' scoring forward (None if `needs_scores` is False); index: (n,) positions."""
        raise NotImplementedError(f"{self.name} trains every candidate and never selects")

    def expected_picks(self, sel: Selection) -> Tensor:
        """(n,) expected times each candidate of a round is picked; select_prob for independent picks."""
        return sel.select_prob

    def trained(self, index: Tensor, fwd: Forward, epoch: int) -> None:
        """Called with the train-mode statistics of every training step."""

    def state(self) -> dict[str, Tensor | float]:
        """Scalars describing the method's state after a step, stored in steps.state."""
        return {}

    def state_dict(self) -> dict:
        """Everything that decides the method's next picks, for a checkpoint (tensors and plain values only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`, so that a resumed run picks exactly what an unbroken one would."""

    @staticmethod
    def picks_for(n: int, full: int, batch_size: int) -> int:
        """Picks from a round of n candidates when a full round of `full` yields `batch_size` (an epoch's last round)."""
        return batch_size if n == full else max(1, round(n * batch_size / full))
