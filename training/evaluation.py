"""The loop's clock and its evaluator: what training costs in seconds, and the test error on a schedule of backprops.

Evaluation, prediction and logging are not charged to training: the clock leaves them out.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from lossaudit.core.errors import TrainingFailed
from lossaudit.training.augment import normalise

EVAL_CHUNK = 1024  # examples per no-grad forward when evaluating or computing irreducible losses


class Clock:
    """Wall-clock seconds of training: scoring, selection and training steps; what runs `untimed` is left out."""

    def __init__(self):
        self.t0, self.untimed_seconds = time.perf_counter(), 0.0

    def start(self, seconds: float = 0.0) -> None:
        """Start (or, after a checkpoint of `seconds`, go on) counting."""
        self.t0, self.untimed_seconds = time.perf_counter() - seconds, 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.untimed_seconds

    @contextmanager
    def untimed(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.untimed_seconds += time.perf_counter() - started


class Evaluator:
    """Evaluates on the test split when backprops cross the next multiple of the interval and once at the very end,
    and predicts the held-out examples (cross-fitting) in the later half of training. `run`: the Trainer whose model,
    data, counters and clock it reads."""

    def __init__(self, run):
        self.run = run
        self.test_x = torch.from_numpy(run.data.test_x).to(run.device)
        self.test_y = torch.from_numpy(run.data.test_y).to(run.device)
        has_val = run.data.val_x is not None
        self.val_x = torch.from_numpy(run.data.val_x).to(run.device) if has_val else None
        self.val_y = torch.from_numpy(run.data.val_y).to(run.device) if has_val else None
        self.predict_x: torch.Tensor | None = None  # the held-out examples on the device, once the first is due
        self.interval = max(1, round(run.cfg.eval_every * len(run.data.y)))
        self.next_eval = 0
        self.last_eval_backprops: int | None = None
        self.best_test_error = math.inf
        self.losses_since_eval: list[torch.Tensor] = []
        self.evals: list[dict] = []  # this epoch's evaluations, until they are logged

    def maybe(self, epoch: int, final: bool = False) -> None:
        run, c = self.run, self.run.counters
        if len(self.test_y) == 0:
            return  # no test split (test_fraction 0): nothing to evaluate on
        if not (c.backprops >= self.next_eval or (final and self.last_eval_backprops != c.backprops)):
            return
        if run.device.type == "cuda":
            torch.cuda.synchronize()  # so the clock below charges the queued training work to training
        seconds = run.clock.seconds()
        with run.clock.untimed():
            run.guard.check()
            test_loss, test_error = self.evaluate()
            val_loss, val_error = self.evaluate(self.val_x, self.val_y) if self.val_x is not None else (None, None)
            if not math.isfinite(test_loss):
                raise TrainingFailed(f"training diverged: the test loss is {test_loss} after step {c.step - 1} "
                                     f"(epoch {epoch}); try a lower --lr (now {run.cfg.lr:g})")
            train_loss = float(torch.stack(self.losses_since_eval).mean()) if self.losses_since_eval else None
            self.losses_since_eval = []
            self.evals.append(dict(step=c.step, epoch=epoch, backprops=c.backprops,
                                   forwards=c.forwards_scoring + c.forwards_training,
                                   forwards_scoring=c.forwards_scoring, forwards_training=c.forwards_training,
                                   seconds=seconds, test_loss=test_loss, test_error=test_error, train_loss=train_loss,
                                   forwards_logging=c.forwards_logging, val_loss=val_loss, val_error=val_error))
            self.last_eval_backprops = c.backprops
            self.best_test_error = min(self.best_test_error, test_error)
            while self.next_eval <= c.backprops:
                self.next_eval += self.interval

    def taken(self) -> list[dict]:
        """The evaluations since the last call (they are logged with their epoch)."""
        out, self.evals = self.evals, []
        return out

    def logits_of(self, x: torch.Tensor):
        """(start, float32 logits) of images on the device, chunk by chunk, in eval mode and un-augmented."""
        run = self.run
        run.model.eval()
        for start in range(0, len(x), EVAL_CHUNK):
            chunk = normalise(x[start:start + EVAL_CHUNK], run.mean, run.std).contiguous(
                memory_format=torch.channels_last)
            with run.autocast:
                yield start, run.model(chunk).float()

    @torch.inference_mode()
    def evaluate(self, x: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> tuple[float, float]:
        """Mean cross-entropy and error over the whole (never augmented) test split — never corrupted — or over
        `x` with `labels` (the validation split); under torchrun computed on rank 0 and broadcast."""
        run = self.run
        x, labels = (self.test_x, self.test_y) if x is None else (x, labels)
        result = torch.zeros(2, dtype=torch.float64, device=run.device)
        if run.ranks.rank == 0:
            wrong = torch.zeros((), device=run.device, dtype=torch.int64)
            for start, logits in self.logits_of(x):
                y = labels[start:start + EVAL_CHUNK]
                result[0] += F.cross_entropy(logits, y, reduction="sum").double()
                wrong += (logits.argmax(1) != y).sum()
            result[1] = wrong.double()
            result /= len(labels)
        if run.ranks.active:
            run.ranks.broadcast(result)
        return float(result[0]), float(result[1])

    @torch.inference_mode()
    def predict(self, epoch: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """Softmax probabilities of the held-out examples (cross-fitting) and of the test split (how they would look
        with correct labels: audit.transition) after each epoch of the later half; (None, None) otherwise. Untimed."""
        run, data = self.run, self.run.data
        if data.predict_x is None or epoch < run.cfg.epochs // 2 or run.ranks.rank != 0:
            return None, None
        with run.clock.untimed():
            if self.predict_x is None:
                self.predict_x = torch.from_numpy(data.predict_x).to(run.device)
            none = torch.zeros(0, data.n_classes, device=run.device)  # an empty test split has no chunk
            probs = [torch.cat([none, *(F.softmax(logits, dim=1) for _, logits in self.logits_of(x))]).cpu().numpy()
                     for x in (self.predict_x, self.test_x)]
            held = pd.DataFrame({"example_id": data.predict_id.astype(np.int32), "epoch": np.int32(epoch),
                                 "probs": list(probs[0])})
            test_id = np.arange(len(self.test_y)) if data.test_id is None else data.test_id
            test = pd.DataFrame({"example_id": test_id.astype(np.int32), "epoch": np.int32(epoch),
                                 "label": data.test_y.astype(np.int16), "probs": list(probs[1])})
        return held, test
