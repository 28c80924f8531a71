"""One epoch of a recorded training loop (lossaudit.recorder.Recorder), kept where the user's tensors live.

Every `observe` call keeps references to the tensors it was given (a `Call`) and host integers; nothing is computed,
copied to the host or waited for until `frames`, once per epoch, looks the labels up, summarises the logits (loss,
entropy, margin, p_true, prediction) in one batch, checks the values (ids known; logits, losses, picks and
select_prob finite, picks non-negative, select_prob in 0..1; an error names the first call that failed) and copies
each column over once; predict's and evaluate's arguments are checked then too (`Pending`: ids in range, logits
finite). With more than DEFER_CLASSES classes the statistics are computed per call instead, so that an epoch of
logits is never kept.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from lossaudit.core.errors import UserError
from lossaudit.training.methods.base import Forward

MODES = ("train", "score")


def as_tensor(value, name: str, device: torch.device | None = None, *, own: bool = False) -> Tensor:
    """A torch tensor of `value` (a tensor on any device, a numpy array, a list, a number), detached; on `device`
    when given (tensors only move when they are elsewhere). `own`: never the caller's memory (a copy where it would
    be), for what is kept until the epoch is written while the loop may reuse its buffers."""
    if isinstance(value, Tensor):
        out = value.detach()
        moved = device is not None and out.device != device
        return out.to(device) if moved else out.clone() if own else out
    try:
        out = torch.tensor(np.asarray(value)) if own else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"{name}: expected a torch tensor or a numpy array, got {type(value).__name__} "
                        f"({str(err).splitlines()[0]})") from None
    return out if device is None or out.device == device else out.to(device)


def shaped(value, name: str, n: int, device: torch.device, *, own: bool = False) -> Tensor:
    """`value` as an (n,) tensor on `device`, or one clear error naming `name` and the shape it should have."""
    t = as_tensor(value, name, device, own=own)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if tuple(t.shape) != (n,):
        raise UserError(f"{name}: shape {tuple(t.shape)} disagrees with ids' ({n},); give one value per id")
    return t


def as_tensor_2d(value, name: str, n_classes: int) -> Tensor:
    """`value` as an (n, n_classes) tensor of class scores, or one clear error naming `name`."""
    z = as_tensor(value, name)
    if z.dim() != 2 or z.shape[1] != n_classes:
        raise UserError(f"{name}: shape {tuple(z.shape)}; expected (n, {n_classes}): one row of class scores per "
                        "example")
    return z


def scalar(value, name: str):
    """`value` if it is one number (a Python or numpy number, a 1-element tensor or array: read with the epoch),
    else one clear error naming `name`."""
    if isinstance(value, numbers.Real):
        return value
    size = value.numel() if isinstance(value, Tensor) else np.size(value) if isinstance(value, np.ndarray) else None
    if size != 1:
        got = f"shape {tuple(value.shape)}" if size is not None else type(value).__name__
        raise UserError(f"{name}: expected one number (or a 0-d tensor), got {got}")
    return value


def when(call: int) -> str:
    """Where a predict/evaluate call came in the run: after which observe call."""
    return f"after observe call {call}" if call else "before any observe call"


DEFER_CLASSES = 64  # up to this many classes an epoch's logits are kept and summarised in one batch at its end


@dataclass
class Pending:
    """A value check waiting for the epoch's copy to the host: the number of bad entries (a device scalar), the
    argument it is about and its call (`ids of predict`), what is wrong and what is valid (`of 5 values are out of
    range; give ids >= 0`), and the number of the observe call before it (0: none)."""

    count: Tensor
    argument: str
    problem: str
    call: int


def finite_rows(z: Tensor, argument: str, call: int) -> Pending:
    """The check that every row of the class scores `z` (n, K) is finite, for the epoch's end."""
    return Pending((~torch.isfinite(z).all(1)).sum(), argument, f"of {len(z)} rows are not finite (NaN or "
                   "infinite); give finite class scores", call)


def checked_ids(value, n: int, device, name: str, call: str, after: int, upper: int | None = None
                ) -> tuple[Tensor, Pending]:
    """`value` as (n,) int64 on `device`, and the pending check of its range (0.., or 0..upper-1) for the epoch's
    end; `call`: the Recorder call it came with, `after`: the number of the observe call before it."""
    t = shaped(value, name, n, device, own=True)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise UserError(f"{name}: expected integers, got {t.dtype}")
    t = t.long()
    bad = (t < 0).sum() if upper is None else ((t < 0) | (t >= upper)).sum()
    valid = f"class indices in 0..{upper - 1}" if upper else "ids >= 0"
    return t, Pending(bad, f"{name} of {call}", f"of {n} values are out of range; give {valid}", after)


@dataclass(kw_only=True)
class Call:
    """One observe call as given: ids (n,), logits (n, K) or None, loss (n,) or None, the statistics already
    computed (`fwd`, for many classes) or None, picked (n,) int16 or float or None (the mode's default),
    select_prob ((n,), a number, or None: the default), its step and mode, its number in the run, and with `fwd`
    the rows of its logits that were finite ((n,) bool; None: no logits)."""

    ids: Tensor
    logits: Tensor | None
    loss: Tensor | None
    fwd: Forward | None
    picked: Tensor | None
    prob: Tensor | float | None
    step: int
    mode: int
    number: int
    logits_ok: Tensor | None = None


@dataclass
class EpochBuffer:
    """An epoch's observe calls, steps and evaluations, as recorded; `frames` turns them into store tables."""

    epoch: int
    calls: list[Call] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)  # host rows; "call": the index of the call that made the step
    evals: list[dict] = field(default_factory=list)
    predictions: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    test_predictions: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(c.ids) for c in self.calls)

    def recorded(self) -> bool:
        """Whether anything was recorded into it (observe, evaluate or predict calls)."""
        return bool(self.calls or self.evals or self.predictions or self.test_predictions)

    def check(self) -> None:
        """Raise the first failed check of predict/evaluate arguments (reads the device)."""
        if not self.pending:
            return
        counts = torch.stack([p.count.to("cpu", torch.int64) for p in self.pending]).tolist()
        for p, count in zip(self.pending, counts):
            if count:
                raise UserError(f"{p.argument} (given {when(p.call)}): {count} {p.problem}")
        self.pending.clear()

    def columns(self, lookup) -> dict[str, np.ndarray]:
        """Every observation column on the host (one copy each), the statistics computed in one batch when every
        call gave logits; value checks raise here, naming the first call that failed them. `lookup(ids)` gives the
        labels as trained and a mask of ids the run does not know."""
        calls = self.calls
        ids = torch.cat([c.ids for c in calls])
        labels, unknown = lookup(ids)
        if all(c.logits is not None for c in calls):
            batched = Forward.from_logits(torch.cat([c.logits for c in calls]), labels)
            given = [c.loss for c in calls]
            loss = batched.loss if all(g is None for g in given) else torch.cat(
                [g.float() if g is not None else part for g, part in zip(given, batched.loss.split(self.sizes()))])
            fwd = Forward(loss, batched.entropy, batched.margin, batched.p_true, batched.pred)
        else:
            parts = [c.fwd or statistics(c.logits, c.loss, y) for c, y in zip(calls, labels.split(self.sizes()))]
            fwd = Forward(*(torch.cat([getattr(f, k) for f in parts]) for k in ("loss", "entropy", "margin",
                                                                                "p_true", "pred")))
        device = ids.device
        logits_ok = torch.cat([torch.isfinite(c.logits).all(1) if c.logits is not None else c.logits_ok
                               if c.logits_ok is not None else torch.ones(len(c.ids), dtype=torch.bool, device=device)
                               for c in calls])
        given = torch.cat([c.picked if c.picked is not None else torch.full(  # int16, or float where given so
            (len(c.ids),), int(c.mode == MODES.index("train")), dtype=torch.int16, device=device) for c in calls])
        picked_ok = torch.isfinite(given) & (given >= 0)
        picked = given.nan_to_num(0).to(torch.int16)
        probs = []
        for c, p in zip(calls, picked.split(self.sizes())):
            if c.prob is None:  # unknown: the share of the call picked (1 / 0 when the mode trains / scores all)
                probs.append((p > 0).float().mean().expand(len(p)))
            elif isinstance(c.prob, float):
                probs.append(torch.full((len(p),), c.prob, device=device))
            else:
                probs.append(c.prob.float())
        prob = torch.cat(probs)
        out = {"example_id": ids, "loss": fwd.loss, "entropy": fwd.entropy, "margin": fwd.margin,
               "p_true": fwd.p_true, "pred": fwd.pred, "picked": picked, "select_prob": prob,
               "unknown": unknown, "finite": torch.isfinite(fwd.loss), "logits_ok": logits_ok, "picked_ok": picked_ok,
               "prob_ok": torch.isfinite(prob) & (prob >= 0) & (prob <= 1)}
        host = {k: v.cpu().numpy() for k, v in out.items()}
        self._refuse_bad_values(host)
        return host

    def _refuse_bad_values(self, host: dict[str, np.ndarray]) -> None:
        """Raise one line for the first observation (in call order) that fails a value check, naming its argument,
        its call and what is valid."""
        checks = (("ids", host["unknown"], "ids are not among the run's examples", ""),
                  ("logits", ~host["logits_ok"], "rows of logits are not finite (NaN or infinite)",
                   "; give finite class scores"),
                  ("loss", ~host["finite"], "losses are NaN or infinite", ""),
                  ("picked", ~host["picked_ok"], "picks are negative or NaN", "; give a mask or counts >= 0"),
                  ("select_prob", ~host["prob_ok"], "select_probs are not probabilities",
                   "; give probabilities in 0..1"))
        failed = [(int(np.flatnonzero(bad)[0]), i) for i, (_, bad, _, _) in enumerate(checks) if bad.any()]
        if not failed:
            return
        row, which = min(failed)
        name, bad, what, valid = checks[which]
        call = self.calls[int(np.searchsorted(np.cumsum(self.sizes()), row, side="right"))]
        name = "logits" if name == "loss" and call.loss is None else name
        raise UserError(f"{name} of observe call {call.number} (step {call.step}): {int(bad.sum())} of {len(bad)} "
                        f"{what} this epoch (first: id {int(host['example_id'][row])}){valid}")

    def sizes(self) -> list[int]:
        return [len(c.ids) for c in self.calls]

    def frames(self, counters: dict, lookup) -> dict:
        """The epoch's store tables. `counters` (backprops and selection_picks so far, before this epoch) is
        advanced by it (pass a copy, kept once the tables are written). Leaves the buffer as it was, so that a
        refused epoch can be checked again."""
        cpu = self.columns(lookup) if self.calls else {k: np.zeros(0) for k in (
            "example_id", "loss", "entropy", "margin", "p_true", "pred", "picked", "select_prob")}
        n = np.asarray(self.sizes(), dtype=np.int64)
        rows = int(n.sum())
        observations = pa.table({  # from numpy: NaN stays NaN (a statistic the loop did not give), never NULL
            "step": np.repeat(np.asarray([c.step for c in self.calls], dtype=np.int32), n),
            "epoch": np.full(rows, self.epoch, dtype=np.int32),
            "example_id": cpu["example_id"].astype(np.int32),
            "mode": pa.array(np.repeat(np.asarray(MODES)[np.asarray([c.mode for c in self.calls], dtype=np.int64)],
                                       n) if len(n) else np.zeros(0, dtype=str), pa.string()),
            "loss": cpu["loss"].astype(np.float32), "entropy": cpu["entropy"].astype(np.float32),
            "margin": cpu["margin"].astype(np.float32), "p_true": cpu["p_true"].astype(np.float32),
            "pred": cpu["pred"].astype(np.int16), "select_prob": cpu["select_prob"].astype(np.float32),
            "picked": cpu["picked"].astype(np.int16), "stale": np.zeros(rows, dtype=bool),
        })
        starts = np.r_[0, np.cumsum(n)[:-1]].astype(np.int64)
        back = np.clip(cpu["picked"].astype(np.float64), 0, None)
        train = np.repeat(np.asarray([c.mode == MODES.index("train") for c in self.calls], dtype=bool), n)
        chose = np.repeat(np.asarray([c.picked is not None for c in self.calls], dtype=bool), n)
        per_call = {name: np.add.reduceat(v, starts) if rows else np.zeros(0) for name, v in (
            ("back", back * train), ("loss_sum", cpu["loss"].astype(np.float64) * back * train),
            ("picks", ((cpu["picked"] > 0) & chose).astype(np.float64)))}
        at = np.asarray([s["call"] for s in self.steps], dtype=np.int64)
        backprops = counters["backprops"] + np.cumsum(per_call["back"]).astype(np.int64)[at]
        picks_so_far = counters["selection_picks"] + np.cumsum(per_call["picks"]).astype(np.int64)
        step_rows = pd.DataFrame(self.steps, columns=["step", "epoch", "lr", "n_scored", "forwards_scoring",
                                                      "forwards_training", "selection_candidates", "seconds"])
        with np.errstate(invalid="ignore", divide="ignore"):
            train_loss = (per_call["loss_sum"][at] / per_call["back"][at]).astype(np.float32)
        step_rows = step_rows.assign(n_backprop=per_call["back"][at].astype(np.int32), backprops=backprops,
                                     selection_picks=picks_so_far[at], train_loss=train_loss)
        steps = pa.table({k: step_rows[k].to_numpy() for k in step_rows.columns}).append_column(  # NaN stays NaN
            "state", pa.nulls(len(step_rows), pa.map_(pa.string(), pa.float64())))
        evals = self._evals(counters, backprops, train_loss)
        if rows:
            counters["backprops"] += int(per_call["back"].sum())
            counters["selection_picks"] = int(picks_so_far[-1])
        return {"observations": observations, "steps": steps, "evals": evals,
                "predictions": self._probs(self.predictions), "test_predictions": self._test_probs()}

    def _evals(self, counters: dict, backprops: np.ndarray, train_loss: np.ndarray) -> pd.DataFrame:
        """The evals rows, each evaluate call's numbers read now (test_error a share in 0..1, test_loss and a given
        train_loss finite, or one line naming the call and the bad value)."""
        rows, first = [], 0
        for e in self.evals:
            k = e["steps_in_epoch"]
            done = int(backprops[k - 1]) if k else counters["backprops"]
            losses = train_loss[first:k]
            mean = float(np.nanmean(losses)) if len(losses) and not np.isnan(losses).all() else math.nan
            given = None if e["train_loss"] is None else float(e["train_loss"])
            row = {key: v for key, v in e.items() if key not in ("steps_in_epoch", "after")} | {
                "epoch": self.epoch, "backprops": done, "train_loss": mean if given is None else given,
                "test_error": float(e["test_error"]), "test_loss": float(e["test_loss"])}
            bad = [] if 0 <= row["test_error"] <= 1 else [f"test_error {row['test_error']:g}"]
            bad += [f"{key} {row[key]:g}" for key in ("test_loss", "train_loss")
                    if not math.isfinite(row[key]) and (key == "test_loss" or given is not None)]
            if bad:
                raise UserError(f"evaluate (given {when(e['after'])}): test_error must be a share in 0..1 and "
                                f"test_loss and train_loss finite numbers; got {', '.join(bad)}")
            rows.append(row)
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
