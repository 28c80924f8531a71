"""The selection-method interface: per-example statistics of a forward pass in, picks out.

Methods are pure: they hold their own state (histories, EMAs, caches) as tensors on the training
device and never touch the model, the data or the database.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


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


@dataclass(frozen=True)
class Selection:
    """What a method decided for n scored candidates.

    picked: (n,) int64, times each candidate is back-propagated (0, 1, or more when sampling with
    replacement); select_prob: (n,) float32, the probability it was given (per draw for samplers);
    weight: (n,) float32 loss weight of each pick, or None for an unweighted mean.
    """

    picked: Tensor
    select_prob: Tensor
    weight: Tensor | None = None


class Method:
    """Base class. Subclasses set `name` and `description` and override what they need."""

    name: str = ""
    description: str = ""

    def __init__(self, *, batch_size: int, n_train: int, device: torch.device, generator: torch.Generator, **params):
        self.batch_size = batch_size
        self.n_train = n_train
        self.device = device
        self.generator = generator

    def candidate_size(self) -> int:
        """Candidates drawn from the epoch's permutation per selection round."""
        return self.batch_size

    def wants_scores(self, epoch: int) -> bool:
        """Whether to score this round's candidates; if not, every candidate is trained once."""
        return False

    def select(self, fwd: Forward, example_index: Tensor, epoch: int) -> Selection:
        raise NotImplementedError(f"{self.name} trains every candidate and never selects")

    def trained(self, example_index: Tensor, fwd: Forward) -> None:
        """Called with the train-mode statistics of every training step."""

    def state(self) -> dict[str, Tensor | float]:
        """Scalars describing the method's state after a step, stored in steps.state."""
        return {}
