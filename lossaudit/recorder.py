"""Record your own training loop into a lossaudit database: the Recorder.

    from lossaudit import Recorder
    with Recorder("runs.duckdb", method="my-sb", dataset="cifar10", examples=ids, labels=labels) as rec:
        for epoch in range(epochs):
            for ids, x, y in loader:
                logits = model(x); loss_each = F.cross_entropy(logits, y, reduction="none")
                picked = select(loss_each)                  # your selection (or none: everything trained)
                loss_each[picked].mean().backward(); opt.step()
                rec.observe(ids, loss=loss_each, logits=logits, picked=picked)
            rec.evaluate(test_error=err, test_loss=test_loss)
            rec.end_epoch()

The run lands in the same tables as `lossaudit run`'s, one transaction per epoch, so `lossaudit sql`, `report` and
`audit --from-db` read it like any other. What each call means:

- `observe(ids, loss=, logits=, picked=, mode="train")`: one training step's forward; `picked` marks the examples
  back-propagated (default: all, i.e. no selection), so backprops are counted from it; every train-mode call is one
  optimizer step. `mode="score"`: a scoring forward without a step (`picked`: chosen for a later step).
- `predict(ids, logits)`: class probabilities of examples this run does not train on (cross-fitting), which the
  audit reads as out-of-sample predictions.
- `evaluate(test_error=, test_loss=)`: a test evaluation now (optionally the test predictions, for the audit's
  reading against trusted labels); `end_epoch()` writes the epoch.
- `paused()`: time inside it (your evaluation, say) is left out of the run's training seconds.

Tensors stay on their device until the epoch is written: the Recorder never waits on the device per step. Shapes
are checked in each call; values (ids known; logits, losses, picks, select_prob and predict/evaluate logits finite;
test_error in 0..1) when the epoch is written, naming the argument and the call. An epoch that fails them is not
written and stays pending: end_epoch() refuses it again, and close() marks the run failed with that line (the
epochs before it stay in the database).

The order of calls (anything else is refused with `OutOfOrder`, one line, before it changes anything: the run goes
on correctly once the call is fixed):
- an epoch is the observe calls since the last end_epoch(): end_epoch() with none (twice in a row, or before the
  first observe) is refused, as it would count an epoch without a training step;
- evaluate() and predict() may come anywhere, before an epoch's first observe too (they belong to the epoch written
  next); those after the last end_epoch() are written by close() with that epoch, without counting a new one;
- close() ends the run: observe, predict, evaluate, end_epoch and paused after it are refused (a new Recorder starts
  a new run); close() again does nothing. paused() may nest (its time is left out once).
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd

from lossaudit.core.rows import NO_DECLARED_TRAITS
from lossaudit.core.store import Store
from lossaudit.core.errors import UserError, choices
from lossaudit.core.records import recorded_key, run_record



class OutOfOrder(UserError):
    """A Recorder call in an order the run cannot take (see the module docstring): refused before it changes the
    database or the Recorder, with one line saying what was called and what is expected instead."""


def _host_array(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    out = np.asarray(value)
    if out.ndim != 1:
        raise UserError(f"{name}: expected one value per example (1-D), got shape {out.shape}")
    return out


def _ints(value, name: str) -> np.ndarray:
    out = _host_array(value, name)
    if out.dtype.kind not in "iub":
        raise UserError(f"{name}: expected integers, got {out.dtype}")
    return out.astype(np.int64)


def corruption_of(spec: str | None, is_corrupted: np.ndarray) -> tuple[str, str | None, float]:
    """The run's corruption label, kind and share: as given (`KIND:SHARE` or `none`), else `none` when no example is
    marked corrupted and `marked:SHARE` when some are."""
    share = float(is_corrupted.mean()) if len(is_corrupted) else 0.0
    if spec is None:
        return ("none", None, 0.0) if share == 0 else (f"marked:{share:.3g}", "marked", share)
    kind, sep, text = str(spec).partition(":")
    if spec == "none":
        return "none", None, 0.0
    try:
        given = float(text) if sep else share
    except ValueError:
        given = -1.0
    if not kind or not 0 <= given <= 1:
        raise UserError(f"corruption {spec!r}: give none or KIND:SHARE with 0 <= SHARE <= 1, e.g. random_labels:0.2")
    return str(spec), kind, given


class Recorder:
    """One recorded run (see the module docstring). Arguments:

    db: the DuckDB file (created if missing); method: the arm's name (runs of several methods with the same
    dataset, model and config form one experiment, compared against its baseline); dataset, model: names;
    config: your settings (JSON-able; all but method, seed and corruption decide the experiment); examples: the ids
    of the examples this run trains (unique non-negative integers); labels: their labels as trained (0..K-1);
    true_labels / is_corrupted: ground truth when you have it (Figure 3, separability); classes: class names
    (default 0..K-1); sources: where each example came from (image file paths give the report its galleries);
    epochs: planned epochs; n_test: size of your test split; corruption: `KIND:SHARE` label of the data's corruption;
    baseline / control / loss_based / selectivity: how the analysis treats the method (default: read from what was
    recorded — a run that never selected is a baseline, one that did is loss-based, at its realised selectivity).
    Attributes: run_id; epoch (epochs written); closed (True once close() has ended the run).
    """

    def __init__(self, db, *, method: str, dataset: str, examples, labels, config: dict | None = None, seed: int = 0,
                 true_labels=None, is_corrupted=None, classes=None, sources=None, model: str = "own model",
                 epochs: int = 0, n_test: int = 0, corruption: str | None = None, baseline: bool | None = None,
                 control: bool = False, loss_based: bool | None = None, selectivity: float | None = None,
                 command: str | None = None):
        import torch

        from lossaudit.training.recording import EpochBuffer
        self._torch = torch
        if not str(method or "").strip():
            raise UserError("method: give the name of your method (e.g. 'my-sb'), got an empty one")
        ids = _ints(examples, "examples")
        label = _ints(labels, "labels")
        if len(ids) == 0:
            raise UserError("examples: no example ids given; pass the ids of the examples this run trains")
        if len(label) != len(ids):
            raise UserError(f"labels: {len(label)} values for {len(ids)} examples; give one label per example")
        if ids.min() < 0 or ids.max() > np.iinfo(np.int32).max or len(np.unique(ids)) != len(ids):
            raise UserError("examples: ids must be unique integers in 0..2147483647 "
                            f"(got {len(ids) - len(np.unique(ids))} repeated, min {ids.min()}, max {ids.max()})")
        names = [str(c) for c in classes] if classes is not None else [str(k) for k in range(int(label.max()) + 1)]
        if label.min() < 0 or label.max() >= len(names):
            raise UserError(f"labels: values must be class indices in 0..{len(names) - 1} ({len(names)} classes), got "
                            f"{label.min()}..{label.max()}")
        truth = label if true_labels is None else _ints(true_labels, "true_labels")
        if len(truth) != len(ids) or truth.min() < 0 or truth.max() >= len(names):
            raise UserError(f"true_labels: give one class index in 0..{len(names) - 1} per example")
        marked = (truth != label) if is_corrupted is None else _host_array(is_corrupted, "is_corrupted").astype(bool)
        if len(marked) != len(ids):
            raise UserError(f"is_corrupted: {len(marked)} values for {len(ids)} examples; give one per example")
        where = [str(s) for s in sources] if sources is not None else [f"{dataset}:{i}" for i in ids]
        if len(where) != len(ids):
            raise UserError(f"sources: {len(where)} values for {len(ids)} examples; give one per example")
        spec, kind, share = corruption_of(corruption, marked)
        self.n_classes, self.method = len(names), str(method)
        order = np.argsort(ids, kind="stable")
        self._sorted_ids, self._labels_sorted = torch.from_numpy(ids[order]), torch.from_numpy(label[order])
        self._on: dict = {}  # device → (sorted ids, their labels) there
        self._traits = {"baseline": baseline, "control": bool(control), "loss_based": loss_based,
                        "selectivity": selectivity}
        if config is not None and not isinstance(config, dict):
            raise UserError(f"config: expected a dict of your settings, got {type(config).__name__}")
        user_config = json.loads(json.dumps(config or {}, default=str))  # numpy numbers, paths ... as JSON
        key = recorded_key(str(dataset), str(model), len(ids), user_config)
        shown = " · ".join([str(dataset), str(model), "recorded"]
                           + [f"{k}={v}" for k, v in sorted(key["config"].items())])
        row = run_record(key=key, experiment=shown if len(shown) <= 160 else shown[:159] + "…", arm=self.method,
                         method=self.method, dataset=str(dataset), model=str(model), corruption=spec,
                         corruption_kind=kind, corrupt_frac=share, seed=int(seed), n_train=len(ids),
                         n_test=int(n_test), classes=names, epochs=int(epochs),
                         command=command if command is not None else " ".join(sys.argv), device="unknown",
                         torch_version=torch.__version__,
                         config=user_config | {"recorder": True, "threads": torch.get_num_threads(), "processes": 1,
                                               "method_traits": self._method_traits(0, 0)})
        frame = pd.DataFrame({"example_id": ids.astype(np.int32), "label": label.astype(np.int16),
                              "true_label": truth.astype(np.int16),
                              "corruption_kind": pd.array([kind if m else None for m in marked], dtype="string"),
                              "is_corrupted": marked, "source": where, "role": "train"})
        self.store = Store(db)
        self.store.mark_orphans()
        self.run_id = self.store.start_run(row, frame)
        self._device, self.closed, self._status, self._epochs = None, False, None, int(epochs)
        self.epoch, self.step, self._calls = 0, 0, 0
        self.counters = {"forwards_scoring": 0, "forwards_training": 0, "selection_candidates": 0,
                         "scored_since_step": 0, "backprops": 0, "selection_picks": 0}
        self._new_buffer = lambda: EpochBuffer(self.epoch)
        self.buffer = self._new_buffer()
        self._t0, self._untimed, self._pauses = time.perf_counter(), 0.0, 0

    # --- recording ------------------------------------------------------------------------------------------------

    def observe(self, ids, *, loss=None, logits=None, picked=None, mode: str = "train", select_prob=None,
                lr: float | None = None) -> None:
        """Record one forward of `ids` (see the module docstring); `select_prob`: the probability each had of
        being picked (default: 1 when everything is trained, else the share of the call picked); `lr`: the step's
        learning rate (NaN when not given)."""
        from lossaudit.training.recording import DEFER_CLASSES, MODES, Call, as_tensor, shaped, statistics
        torch = self._torch
        started = time.perf_counter()
        self._refuse_if_closed("observe")
        if mode not in MODES:
            raise UserError(f"mode {mode!r}: valid: {choices(MODES)}")
        rate = math.nan if lr is None else float(lr)
        if lr is not None and not math.isfinite(rate):
            raise UserError(f"lr: {rate} is not a learning rate; give a finite number, or leave lr out")
        if loss is None and logits is None:
            raise UserError("observe: give loss= (one per id) or logits= (one row per id), or both")
        first = logits if logits is not None else loss
        device = self._device or (first.device if isinstance(first, torch.Tensor) else torch.device("cpu"))
        index = as_tensor(ids, "ids", device, own=True)  # kept until the epoch is written: never the loop's buffer
        if index.dim() != 1 or index.dtype.is_floating_point or index.dtype == torch.bool or not len(index):
            raise UserError(f"ids: expected a 1-D tensor of integer example ids, got shape {tuple(index.shape)} of "
                            f"{index.dtype}")
        index = index.long()
        n = len(index)
        z = None if logits is None else as_tensor(logits, "logits", device, own=True)
        if z is not None and (z.dim() != 2 or z.shape != (n, self.n_classes)):
            raise UserError(f"logits: shape {tuple(z.shape)} disagrees with ({n}, {self.n_classes}): one row of "
                            f"{self.n_classes} class scores per id")
        given = None if loss is None else shaped(loss, "loss", n, device, own=True)
        pick = None if picked is None else shaped(picked, "picked", n, device, own=True)
        pick = pick if pick is None or pick.dtype.is_floating_point else pick.to(torch.int16)  # floats: checked later
        prob = (None if select_prob is None else float(select_prob) if isinstance(select_prob, (int, float, np.number))
                else shaped(select_prob, "select_prob", n, device, own=True))
        if isinstance(prob, float) and not 0 <= prob <= 1:
            raise UserError(f"select_prob: {prob} is not a probability; give one in 0..1 (or one per id)")
        fwd = ok = None
        if z is None or self.n_classes > DEFER_CLASSES:  # summarised now: many classes' logits are not kept
            fwd = statistics(z, given, self._lookup(device)(index)[0])
            ok, z = None if z is None else torch.isfinite(z).all(1), None
        self._calls += 1
        self._device = self._device or device
        self.buffer.calls.append(Call(ids=index, logits=z, loss=given, fwd=fwd, picked=pick, prob=prob,
                                      step=self.step, mode=MODES.index(mode), number=self._calls, logits_ok=ok))
        c = self.counters
        if pick is not None:
            c["selection_candidates"] += n
        if mode == "score":
            c["forwards_scoring"] += n
            c["scored_since_step"] += n
        else:
            c["forwards_training"] += n
            self.buffer.steps.append(
                {"step": self.step, "epoch": self.epoch, "lr": rate,
                 "n_scored": c["scored_since_step"], "forwards_scoring": c["forwards_scoring"],
                 "forwards_training": c["forwards_training"], "selection_candidates": c["selection_candidates"],
                 "seconds": self.seconds(), "call": len(self.buffer.calls) - 1})
            c["scored_since_step"] = 0
            self.step += 1
        self._untime(started)  # the recorder's own work is not training

    def predict(self, ids, logits) -> None:
        """Out-of-sample class probabilities (softmax of `logits`, (n, K)) of examples this run does not train on
        (`ids`, (n,))."""
        from lossaudit.training.recording import as_tensor_2d, checked_ids, finite_rows
        self._refuse_if_closed("predict")
        z = as_tensor_2d(logits, "logits", self.n_classes)
        index, check = checked_ids(ids, len(z), z.device, "ids", "predict", self._calls)
        self.buffer.pending += [check, finite_rows(z, "logits of predict", self._calls)]
        self.buffer.predictions.append((index, self._torch.softmax(z.float(), 1)))

    def evaluate(self, *, test_error, test_loss, train_loss=None, test_logits=None, test_labels=None,
                 test_ids=None) -> None:
        """A test evaluation now: its error (0..1) and mean loss (numbers or 0-d tensors, read with the epoch);
        `train_loss` defaults to the mean of the steps' since the last evaluation. With `test_logits` (m, K) and
        `test_labels` (m,) the test predictions are kept too (`test_ids` (m,), default 0..m-1)."""
        from lossaudit.training.recording import as_tensor_2d, checked_ids, finite_rows, scalar
        self._refuse_if_closed("evaluate")
        numbers = {"test_error": scalar(test_error, "test_error"), "test_loss": scalar(test_loss, "test_loss"),
                   "train_loss": None if train_loss is None else scalar(train_loss, "train_loss")}
        if test_logits is not None:  # every argument is checked before anything is kept
            z = as_tensor_2d(test_logits, "test_logits", self.n_classes)
            y, *checks = checked_ids(test_labels, len(z), z.device, "test_labels", "evaluate", self._calls,
                                     upper=self.n_classes)
            ids = self._torch.arange(len(z), device=z.device)
            if test_ids is not None:
                ids, check = checked_ids(test_ids, len(z), z.device, "test_ids", "evaluate", self._calls)
                checks.append(check)
            self.buffer.pending += [*checks, finite_rows(z, "test_logits of evaluate", self._calls)]
            self.buffer.test_predictions.append((ids, self._torch.softmax(z.float(), 1), y))
        c = self.counters
        self.buffer.evals.append({"step": self.step, "steps_in_epoch": len(self.buffer.steps), "after": self._calls,
                                  "forwards": c["forwards_scoring"] + c["forwards_training"],
                                  "forwards_scoring": c["forwards_scoring"], "forwards_training": c["forwards_training"],
                                  "seconds": self.seconds()} | numbers)

    def end_epoch(self) -> None:
        """Write the epoch (one transaction; the only time the recorder copies from the device). Refused, changing
        nothing, after close() and when nothing was observed since the last end_epoch (see the module docstring)."""
        self._refuse_if_closed("end_epoch")
        if not self.buffer.calls:
            since = "the last end_epoch()" if self.epoch else "the Recorder started"
            only = " (only evaluate/predict calls)" if self.buffer.recorded() else ""
            raise OutOfOrder(f"end_epoch() called with nothing observed since {since}{only}: epoch {self.epoch} would "
                             "be counted without a training step; call observe() for the epoch's steps first, and "
                             "end_epoch() once per epoch")
        self._end_epoch()

    def _end_epoch(self) -> None:
        started = time.perf_counter()
        self._write(epochs_done=self.epoch + 1)
        self.epoch += 1
        self.buffer = self._new_buffer()
        self._untime(started)

    def _write(self, *, epochs_done: int) -> None:
        """Check the buffer's values and append it in one transaction; nothing changes unless it is written."""
        self.buffer.check()
        counters = dict(self.counters)  # advanced by the epoch, kept once it is written
        tables = self.buffer.frames(counters, self._lookup(self._device or self._torch.device("cpu")))
        first = self.epoch == 0 and self._device is not None
        self.store.append(self.run_id, epochs_done=epochs_done, settled={"device": str(self._device)} if first
                          else None, **tables)
        self.counters.update(counters)

    def paused(self):
        """Leave the time inside out of the run's training seconds (e.g. your evaluation): `with rec.paused():`.
        Pauses may nest (the time is left out once)."""
        self._refuse_if_closed("paused")
        return self._pause()

    @contextmanager
    def _pause(self):
        started, self._pauses = time.perf_counter(), self._pauses + 1
        try:
            yield self
        finally:
            self._pauses -= 1
            self._untime(started)

    def _untime(self, started: float) -> None:
        """Leave the time since `started` out of the training seconds (once: not inside a pause, which does)."""
        if not self._pauses:
            self._untimed += time.perf_counter() - started

    def seconds(self) -> float:
        return time.perf_counter() - self._t0 - self._untimed

    # --- ending -------------------------------------------------------------------------------------------------

    def close(self, status: str = "complete", error: str | None = None) -> None:
        """Write what is pending (a last epoch without end_epoch; evaluate/predict calls after the last end_epoch,
        with that epoch) and mark the run `status`; the method's traits are settled from what was recorded. Once
        closed, nothing more is recorded and close() does nothing."""
        if self.closed:
            return
        self.closed, self._status = True, status
        if status == "complete" and self.buffer.recorded():
            try:
                self._end_epoch() if self.buffer.calls else self._write_tail()
            except BaseException as err:  # the pending epoch failed its checks: the run fails, earlier epochs stay
                self._status, error = "failed", " ".join(f"{type(err).__name__}: {err}".split())[:500]
                self._finish("failed", error)
                raise
        self._finish(status, error)

    def _write_tail(self) -> None:
        """evaluate/predict calls after the last end_epoch: written with that epoch (0 if none), not counted."""
        self.buffer.epoch = max(self.epoch - 1, 0)
        self._write(epochs_done=self.epoch)

    def _refuse_if_closed(self, call: str) -> None:
        if self.closed:
            raise OutOfOrder(f"{call}() called after close(): run {self.run_id} is finished ({self._status}) and "
                             "records nothing more; create a new Recorder to start a new run")

    def _finish(self, status: str, error: str | None) -> None:
        c = self.counters
        patch = {"method_traits": self._method_traits(c["selection_candidates"], c["selection_picks"])}
        self.store.finish(self.run_id, status, error,
                          settled={"config": patch, "epochs": self._epochs or self.epoch})

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, kind, err, tb) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, KeyboardInterrupt):
            self.close("interrupted", "stopped by Ctrl-C or SIGTERM")
        else:
            self.close("failed", " ".join(f"{kind.__name__}: {err}".split())[:500])

    # --- helpers ------------------------------------------------------------------------------------------------

    def _method_traits(self, candidates: int, picks: int) -> dict:
        t = self._traits
        baseline = t["baseline"] if t["baseline"] is not None else candidates == 0
        realised = picks / candidates if candidates else 1.0
        loss_based = t["loss_based"] if t["loss_based"] is not None else not baseline and not t["control"]
        selectivity = t["selectivity"] if t["selectivity"] is not None else round(realised, 3)
        return {"loss_based": bool(loss_based), "is_control": t["control"], "is_baseline": bool(baseline),
                "nominal_selectivity": float(selectivity)} | NO_DECLARED_TRAITS

    def _lookup(self, device):
        """ids → (their labels as trained, a mask of the ids this run does not know), on `device`."""
        if device not in self._on:
            self._on[device] = (self._sorted_ids.to(device), self._labels_sorted.to(device))
        known, labels = self._on[device]

        def lookup(ids):
            pos = self._torch.searchsorted(known, ids).clamp_(max=len(known) - 1)
            return labels[pos], known[pos] != ids
        return lookup
