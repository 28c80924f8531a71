"""The selection-method interface: per-example statistics of a forward pass in, picks out.

Methods are pure: they hold their own state (histories, EMAs, caches) as tensors on the training
device and never touch the model, the data or the database. The trainer asks, for each round of
candidates: does the method select this epoch (`selects`)? If so it scores the candidates (unless
the method needs no scores), calls `select`, and queues the picks; if not, every candidate is trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from lossaudit.training.config import RunConfig


@dataclass(frozen=True)
class Forward:
    """Per-example statistics of one forward pass; every field is (n,) on the device.

    loss: cross-entropy of the label as trained (nats); entropy: -sum p log p (nats); margin: logit
    of the label minus the largest other logit; p_true: softmax probability of the label; pred: argmax.
    """

    loss: Tensor
    entropy: Tensor
    margin: Tensor
    p_true: Tensor
    pred: Tensor

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
        )

    def scatter(self, rows: Tensor, other: "Forward") -> "Forward":
        """A copy with `rows` replaced by the values of `other` (len(other) == len(rows))."""
        def put(mine: Tensor, theirs: Tensor) -> Tensor:
            out = mine.clone()
            out[rows] = theirs.to(out.dtype)
            return out
        return Forward(*(put(getattr(self, f), getattr(other, f)) for f in ("loss", "entropy", "margin", "p_true", "pred")))


@dataclass(frozen=True)
class Selection:
    """What a method decided for n candidates.

    picked: (n,) int64, times each candidate is back-propagated (0, 1, or more when sampling with
    replacement); select_prob: (n,) float32, the probability it was given (per draw for samplers);
    weight: (n,) float32 loss weight of each pick, or None for an unweighted mean.
    """

    picked: Tensor
    select_prob: Tensor
    weight: Tensor | None = None


class Method:
    """Base class. Subclasses set `name` and `description` and override what they need.

    Traits the other layers read (stored with every run, so analysis needs no import of this package):
    `fields`, the RunConfig fields the method reads (its parameters: they name the method's arm, not
    the experiment); `loss_based`, whether it chooses examples by their loss or entropy (the methods the
    verdict judges); `is_control`, whether it is a random-subset control; `nominal_selectivity`, the
    share of candidates it back-propagates in a selecting round by its definition.
    """

    name: str = ""
    description: str = ""
    fields: tuple[str, ...] = ()
    loss_based: bool = False
    is_control: bool = False
    needs_scores: bool = True  # select() reads a scoring forward of the candidates
    needs_irreducible_loss: bool = False  # the trainer fits an irreducible-loss model first (rho)
    warmup_epochs: int = 0  # first epochs that train every candidate and never select

    def __init__(self, cfg: RunConfig, *, n_train: int, device: torch.device, generator: torch.Generator):
        self.batch_size = cfg.batch_size
        self.n_train = n_train
        self.device = device
        self.generator = generator
        self.cache = None  # a ScoreCache when stale scores may stand in for fresh forwards

    def params(self) -> dict:
        """The parameters this method actually uses, stored in runs.config."""
        return {}

    @property
    def nominal_selectivity(self) -> float:
        """Share of a selecting round's candidates back-propagated, by definition (1 = everything)."""
        return 1.0

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

    @staticmethod
    def picks_for(n: int, full: int, batch_size: int) -> int:
        """Picks from a round of n candidates when a full round of `full` yields `batch_size` (an epoch's last round)."""
        return batch_size if n == full else max(1, round(n * batch_size / full))
