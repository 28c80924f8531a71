"""One epoch of a recorded training loop (lossaudit.recorder.Recorder), kept where the user's tensors live.

Every `observe` call appends device tensors to lists and host integers to others; nothing is copied to the host and
nothing waits on the device until `frames`, once per epoch, concatenates each column and copies it over. Checks of
values (ids known, losses finite) are device reductions too: on the CPU they are read at once, so the error points
at the call; on an accelerator they are read with the epoch, so that the loop never waits on the device per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from lossaudit.errors import UserError
from lossaudit.training.methods.base import Forward

MODES = ("train", "score")


def as_tensor(value, name: str, device: torch.device | None = None) -> Tensor:
    """A torch tensor of `value` (a tensor on any device, a numpy array, a list, a number), detached; on `device`
    when given (tensors only move when they are elsewhere)."""
    if isinstance(value, Tensor):
        out = value.detach()
    else:
        try:
            out = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as err:
            raise UserError(f"{name}: expected a torch tensor or a numpy array, got {type(value).__name__} "
                            f"({str(err).splitlines()[0]})") from None
    return out if device is None or out.device == device else out.to(device)


def shaped(value, name: str, n: int, device: torch.device) -> Tensor:
    """`value` as an (n,) tensor on `device`, or one clear error naming `name` and the shape it should have."""
    t = as_tensor(value, name, device)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if tuple(t.shape) != (n,):
        raise UserError(f"{name}: shape {tuple(t.shape)} disagrees with ids' ({n},); give one value per id")
    return t


@dataclass
class Pending:
    """A value check waiting for the epoch's copy to the host: the number of bad entries (a device scalar), the
    argument it is about, what is wrong, and the call it came from."""

    count: Tensor
    argument: str
    problem: str
    call: int


@dataclass
class EpochBuffer:
    """An epoch's observations, steps and evaluations, as recorded; `frames` turns them into store tables."""

    epoch: int
    columns: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "example_id", "loss", "entropy", "margin", "p_true", "pred", "picked", "select_prob")})
    lengths: list[int] = field(default_factory=list)
    steps_of_rows: list[int] = field(default_factory=list)
    modes: list[int] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    step_device: dict[str, list] = field(default_factory=lambda: {"n_backprop": [], "loss_sum": [], "picks": []})
    evals: list[dict] = field(default_factory=list)
    predictions: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    test_predictions: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(self.lengths)

    def add_rows(self, step: int, mode: str, ids: Tensor, fwd: Forward, picked: Tensor, select_prob: Tensor) -> None:
        for name, value in (("example_id", ids), ("loss", fwd.loss), ("entropy", fwd.entropy), ("margin", fwd.margin),
                            ("p_true", fwd.p_true), ("pred", fwd.pred), ("picked", picked),
                            ("select_prob", select_prob)):
            self.columns[name].append(value)
        self.lengths.append(len(ids))
        self.steps_of_rows.append(step)
        self.modes.append(MODES.index(mode))

    def add_step(self, row: dict, n_backprop: Tensor, loss_sum: Tensor, picks: Tensor) -> None:
        self.steps.append(row)
        for name, value in (("n_backprop", n_backprop), ("loss_sum", loss_sum), ("picks", picks)):
            self.step_device[name].append(value)

    def check(self, call: int) -> None:
        """Raise the first failed check of the epoch (reads the device: called per call on the CPU, per epoch
        elsewhere)."""
        if not self.pending:
            return
        counts = torch.stack([p.count.to("cpu", torch.int64) for p in self.pending]).tolist()
        for p, count in zip(self.pending, counts):
            if count:
                raise UserError(f"{p.argument} of observe call {p.call} (step {call}): {count} {p.problem}")
        self.pending.clear()

    def frames(self, counters: dict) -> dict:
        """The epoch's store tables. `counters` (backprops and selection_picks so far, before this epoch) is
        advanced by it; every device column reaches the host in one copy."""
        cpu = {name: (torch.cat(values).cpu().numpy() if values else np.zeros(0)) for name, values in
               self.columns.items()}
        n = np.asarray(self.lengths, dtype=np.int64)
        rows = int(n.sum())
        observations = pa.table({  # from numpy: NaN stays NaN (a statistic the loop did not give), never NULL
            "step": np.repeat(np.asarray(self.steps_of_rows, dtype=np.int32), n),
            "epoch": np.full(rows, self.epoch, dtype=np.int32),
            "example_id": cpu["example_id"].astype(np.int32),
            "mode": pa.array(np.repeat(np.asarray(MODES)[np.asarray(self.modes, dtype=np.int64)], n)
                             if len(n) else np.zeros(0, dtype=str), pa.string()),
            "loss": cpu["loss"].astype(np.float32), "entropy": cpu["entropy"].astype(np.float32),
            "margin": cpu["margin"].astype(np.float32), "p_true": cpu["p_true"].astype(np.float32),
            "pred": cpu["pred"].astype(np.int16), "select_prob": cpu["select_prob"].astype(np.float32),
            "picked": cpu["picked"].astype(np.int16), "stale": np.zeros(rows, dtype=bool),
        })
        per_step = {name: (torch.stack([v.to(torch.float64) for v in values]).cpu().numpy() if values
                           else np.zeros(0)) for name, values in self.step_device.items()}
        backprops = counters["backprops"] + np.cumsum(per_step["n_backprop"]).astype(np.int64)
        picks = counters["selection_picks"] + np.cumsum(per_step["picks"]).astype(np.int64)
        step_rows = pd.DataFrame(self.steps, columns=["step", "epoch", "lr", "n_scored", "forwards_scoring",
                                                      "forwards_training", "selection_candidates", "seconds"])
        with np.errstate(invalid="ignore", divide="ignore"):
            train_loss = (per_step["loss_sum"] / per_step["n_backprop"]).astype(np.float32)
        step_rows = step_rows.assign(n_backprop=per_step["n_backprop"].astype(np.int32), backprops=backprops,
                                     selection_picks=picks, train_loss=train_loss)
        steps = pa.table({k: step_rows[k].to_numpy() for k in step_rows.columns}).append_column(  # NaN stays NaN
            "state", pa.nulls(len(step_rows), pa.map_(pa.string(), pa.float64())))
        evals = self._evals(counters, backprops, train_loss)
        if len(backprops):
            counters["backprops"], counters["selection_picks"] = int(backprops[-1]), int(picks[-1])
        return {"observations": observations, "steps": steps, "evals": evals,
                "predictions": self._probs(self.predictions), "test_predictions": self._test_probs()}

    def _evals(self, counters: dict, backprops: np.ndarray, train_loss: np.ndarray) -> pd.DataFrame:
        rows, first = [], 0
        for e in self.evals:
            k = e.pop("steps_in_epoch")
            done = int(backprops[k - 1]) if k else counters["backprops"]
            losses = train_loss[first:k]
            mean = float(np.nanmean(losses)) if len(losses) and not np.isnan(losses).all() else math.nan
            given = e.pop("train_loss")
            rows.append(e | {"backprops": done, "train_loss": mean if given is None else float(given),
                             "test_error": float(e["test_error"]), "test_loss": float(e["test_loss"])})
            first = k
        return pd.DataFrame(rows, columns=["step", "epoch", "backprops", "forwards", "forwards_scoring",
                                           "forwards_training", "seconds", "test_loss", "test_error", "train_loss"])

    def _probs(self, parts: list[tuple[Tensor, Tensor]]) -> pd.DataFrame | None:
        if not parts:
            return None
        ids = torch.cat([i for i, _ in parts]).cpu().numpy().astype(np.int32)
        probs = torch.cat([p for _, p in parts]).cpu().numpy().astype(np.float32)
        return pd.DataFrame({"example_id": ids, "epoch": np.full(len(ids), self.epoch, dtype=np.int32),
                             "probs": list(probs)})

    def _test_probs(self) -> pd.DataFrame | None:
        if not self.test_predictions:
            return None
        frame = self._probs([(i, p) for i, p, _ in self.test_predictions])
        labels = torch.cat([y for _, _, y in self.test_predictions]).cpu().numpy().astype(np.int16)
        return frame.assign(label=labels)[["example_id", "epoch", "label", "probs"]]


def statistics(logits: Tensor | None, loss: Tensor | None, labels: Tensor) -> Forward:
    """Per-example loss, entropy, margin, p_true and prediction: from the logits when given (the loss as given when
    both are), else the loss alone with NaN for what only logits tell (pred -1)."""
    if logits is not None:
        fwd = Forward.from_logits(logits, labels)
        return fwd if loss is None else Forward(loss.float(), fwd.entropy, fwd.margin, fwd.p_true, fwd.pred)
    nan = torch.full_like(loss, math.nan, dtype=torch.float32)
    return Forward(loss.float(), nan, nan, nan, torch.full_like(loss, -1, dtype=torch.int64))
