"""What a run keeps while it trains: counters, the queue of picks waiting for a training step, one epoch's
observations and steps in preallocated columns that reach the host once per epoch, and the sink they go to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from lossaudit.core.errors import TrainingFailed
from lossaudit.training.methods import Forward

SCORE, TRAIN = 0, 1  # observation modes, stored as 'score' / 'train'
MODE_NAMES = np.array(["score", "train"])


@dataclass
class Counters:
    """Examples forwarded and back-propagated so far (host ints, known without a device sync).

    selection_candidates: candidates offered to the method's selection (rounds where it selects);
    selection_picks: picks it made from them. Their ratio is the realised selectivity. forwards_logging: no-grad
    forwards made only to log, by a method whose picks never read them (charged to no cost).
    """

    step: int = 0
    forwards_scoring: int = 0
    forwards_training: int = 0
    forwards_logging: int = 0
    backprops: int = 0
    scored_since_step: int = 0
    selection_candidates: int = 0
    selection_picks: int = 0
    upfront_backprops: int = 0  # a method's work before training (rho's irreducible-loss model), charged to a budget
    upfront_forwards: int = 0


@dataclass
class Batch:
    """Examples queued for back-propagation. index: (n,) positions in the training tensors; x: (n, C, H, W)
    augmented and normalised; slot: (n,) observation slot to fill from the training forward (the
    dummy slot when the example was already observed by scoring); weight: (n,) loss weights;
    prob: (n,) the probability each was picked with (logged with train-mode observations)."""

    index: Tensor
    x: Tensor
    slot: Tensor
    weight: Tensor
    prob: Tensor

    FIELDS = ("index", "x", "slot", "weight", "prob")

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, rows) -> "Batch":
        return Batch(*(getattr(self, f)[rows] for f in self.FIELDS))


class PickQueue:
    """FIFO of picked examples; `pop(B)` cuts exactly B off the front (SB's backprop queue)."""

    def __init__(self):
        self.parts: list[Batch] = []
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(self, batch: Batch, n: int) -> None:
        if n:
            self.parts.append(batch)
            self.size += n

    def pop(self, n: int) -> Batch:
        whole = self.parts[0] if len(self.parts) == 1 else Batch(
            *(torch.cat([getattr(p, f) for p in self.parts]) for f in Batch.FIELDS))
        head, rest = whole.rows(slice(0, n)), whole.rows(slice(n, None))
        self.parts, self.size = ([rest] if len(rest) else []), self.size - n
        return head


class ObservationLog:
    """One epoch's observations in preallocated device columns: one slot per candidate plus a dummy slot."""

    def __init__(self, n: int, device: torch.device):
        self.dummy = n
        z = lambda dtype: torch.zeros(n + 1, dtype=dtype, device=device)  # noqa: E731
        self.step, self.mode, self.pred, self.picked = z(torch.int32), z(torch.uint8), z(torch.int64), z(torch.int32)
        self.loss, self.entropy, self.margin, self.p_true, self.select_prob = (z(torch.float32) for _ in range(5))
        self.stale, self.filled = z(torch.bool), z(torch.bool)

    def record(self, slot: Tensor, fwd: Forward, *, step: int, mode: int, select_prob, picked, stale=False) -> None:
        """Write (n,) values (or scalars) into the given slots; device ops only, no host sync."""
        for column, value in ((self.step, step), (self.mode, mode), (self.loss, fwd.loss), (self.entropy, fwd.entropy),
                              (self.margin, fwd.margin), (self.p_true, fwd.p_true), (self.pred, fwd.pred),
                              (self.select_prob, select_prob), (self.picked, picked), (self.stale, stale),
                              (self.filled, True)):
            column[slot] = value.to(column.dtype) if isinstance(value, Tensor) else value

    def frame(self, epoch: int, example_id: np.ndarray) -> pd.DataFrame:
        """example_id: (n,) id of the example in each slot. One device→host copy per column; slots never
        observed (candidates neither scored nor trained) are left out."""
        filled = self.filled[:-1].cpu().numpy()
        cpu = lambda t: t[:-1].cpu().numpy()[filled]  # noqa: E731
        example_id = example_id[filled]
        return pd.DataFrame({
            "step": cpu(self.step), "epoch": np.full(len(example_id), epoch, dtype=np.int32),
            "example_id": example_id.astype(np.int32), "mode": MODE_NAMES[cpu(self.mode)],
            "loss": cpu(self.loss), "entropy": cpu(self.entropy), "margin": cpu(self.margin),
            "p_true": cpu(self.p_true), "pred": cpu(self.pred).astype(np.int16),
            "select_prob": cpu(self.select_prob), "picked": cpu(self.picked).astype(np.int16), "stale": cpu(self.stale),
        })


@dataclass
class StepLog:
    """Per-step rows for one epoch: host scalars, plus the loss and method state kept as device tensors."""

    rows: list[dict] = field(default_factory=list)
    losses: list[Tensor] = field(default_factory=list)
    states: list[dict] = field(default_factory=list)

    def add(self, row: dict, loss: Tensor, state: dict) -> None:
        self.rows.append(row)
        self.losses.append(loss.detach().float())
        self.states.append(state)

    def table(self) -> pa.Table:
        frame = pd.DataFrame(self.rows)
        frame["train_loss"] = torch.stack(self.losses).cpu().numpy() if self.losses else np.zeros(0, np.float32)
        keys = sorted({k for s in self.states for k in s})
        values = {k: [float(v) for v in torch.stack([torch.as_tensor(s.get(k, math.nan), dtype=torch.float64)
                                                      for s in self.states]).cpu()] for k in keys}
        maps = [[(k, values[k][i]) for k in keys if k in s] for i, s in enumerate(self.states)]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return table.append_column("state", pa.array(maps, type=pa.map_(pa.string(), pa.float64())))


class Sink(Protocol):
    def write_epoch(self, epoch: int, *, observations: pd.DataFrame, steps: pa.Table, evals: pd.DataFrame,
                    predictions: pd.DataFrame | None = None, test_predictions: pd.DataFrame | None = None) -> None: ...

    def write_irreducible(self, example_id: np.ndarray, loss: np.ndarray, summary: dict, purpose: str) -> None: ...

    def checkpoint(self, epochs_done: int, state: Callable[[], dict]) -> None: ...


class NullSink:
    """Keeps nothing (the irreducible-loss model's own run is summarised, not logged per example)."""

    def write_epoch(self, epoch, **tables) -> None:
        pass

    def write_irreducible(self, example_id, loss, summary, purpose) -> None:
        pass

    def checkpoint(self, epochs_done, state) -> None:
        pass


LOGGED_VALUES = ("loss", "entropy", "margin", "p_true")  # per-observation values computed from the logits


def check_logged(observations, epoch: int, lr: float) -> None:
    """Raise TrainingFailed when an epoch's observations (its frame) hold a non-finite loss, entropy, margin or p_true
    (logits that overflowed): the epoch is not written, the ones before it stay."""
    values = observations[[c for c in LOGGED_VALUES if c in observations]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        first = int(observations.example_id.to_numpy()[np.flatnonzero(bad)[0]])
        raise TrainingFailed(f"training diverged: {int(bad.sum())} of epoch {epoch}'s {len(bad)} observations have a "
                             f"non-finite loss, entropy, margin or p_true (first: example {first}); try a lower --lr "
                             f"(now {lr:g})")
