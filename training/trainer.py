"""The training loop: candidates → scoring → selection → training step → evaluate → log.

Data lives on the training device as uint8 tensors and is augmented in batches. Per-example
statistics go into preallocated device tensors (training.logs) and reach the host once per epoch,
when the epoch is handed to the sink (the database writer, injected: training knows nothing of it).
"""

from __future__ import annotations

import bisect
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.nn import functional as F

from lossaudit.core.errors import TrainingFailed, UserError
from lossaudit.training.augment import channel_stats, crop_flip, normalise
from lossaudit.training.config import RunConfig
from lossaudit.training.logs import (SCORE, TRAIN, Batch, Counters, ObservationLog, PickQueue, Sink, StepLog,
                                     check_logged)
from lossaudit.training.methods import Forward, create_method
from lossaudit.training.models import create_model
from lossaudit.training import distributed, holdout
from lossaudit.training.state import restore, state_of

EVAL_CHUNK = 1024  # examples per no-grad forward when evaluating or computing irreducible losses
CROP_PADDING = 4  # random crop with this much zero padding, the paper's augmentation for 32×32 images


@dataclass(frozen=True)
class TrainData:
    """Host arrays for one run. x: (N, C, H, W) uint8; y: (N,) int64 labels as trained; example_id: (N,).

    holdout_*: examples kept out of training for the method's own use (rho's irreducible-loss model), else None.
    predict_*: examples kept out of training to be predicted out-of-sample (cross-fitting), else None.
    """

    x: np.ndarray
    y: np.ndarray
    example_id: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    n_classes: int
    holdout_x: np.ndarray | None = None
    holdout_y: np.ndarray | None = None
    holdout_id: np.ndarray | None = None
    predict_x: np.ndarray | None = None
    predict_id: np.ndarray | None = None
    test_id: np.ndarray | None = None  # the test split's example ids (for its out-of-sample predictions)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; valid here: cpu, auto")
    return device


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """Step schedule by epoch: lr × gamma at each milestone (fractions of the epochs)."""
    drops = sum(epoch >= round(m * cfg.epochs) for m in cfg.lr_milestones)
    return cfg.lr * cfg.lr_gamma ** drops


def wants_crop_flip(augment: str, image_shape: tuple[int, ...]) -> bool:
    return augment == "crop-flip" or (augment == "auto" and tuple(image_shape[1:]) == (32, 32))


STREAM_STRIDE = 1_000_003  # a prime: the streams of seed s never collide with those of seed s + 1


def _generator(device: torch.device, seed: int, stream: int) -> torch.Generator:
    """One of a run's independent random streams (candidate order, augmentation, selection)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * STREAM_STRIDE + stream)
    return g


class Trainer:
    """Holds the model, optimizer, method and counters of one run; `fit` is the loop."""

    EVAL_CHUNK = EVAL_CHUNK

    def __init__(self, cfg: RunConfig, data: TrainData, *, progress: Callable[[int], None] | None = None):
        self.cfg, self.data, self.progress = cfg, data, progress or (lambda n: None)
        self.device = device = resolve_device(cfg.device)
        self.gen = {name: _generator(device, cfg.seed, i) for i, name in enumerate(("order", "augment", "select"))}
        self.x = torch.from_numpy(data.x).to(device)
        self.y = torch.from_numpy(data.y).to(device)
        self.example_id = data.example_id
        self.test_x = torch.from_numpy(data.test_x).to(device)
        self.test_y = torch.from_numpy(data.test_y).to(device)
        self.predict_x: Tensor | None = None  # the held-out examples on the device, once the first prediction is due
        self.mean, self.std = channel_stats(self.x)
        self.crop_flip = wants_crop_flip(cfg.augment, data.x.shape[1:])
        with torch.random.fork_rng(devices=[]):  # initial weights from the run's seed; the process's generator untouched
            torch.manual_seed(cfg.seed)
            model = create_model(cfg.model, in_channels=data.x.shape[1], n_classes=data.n_classes,
                                 image_size=data.x.shape[2])
        self.model = model.to(device, memory_format=torch.channels_last)
        self.ranks = distributed.current()  # under torchrun: this process's share of the run (training.distributed)
        self.train_model = (torch.nn.parallel.DistributedDataParallel(self.model) if self.ranks.active
                            else self.model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.method = create_method(cfg.method, cfg.params, batch_size=cfg.batch_size, n_train=len(data.y),
                                    device=device, generator=self.gen["select"])
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
        self.score_autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.score_precision == "bf16"
                               else self.autocast)
        self.counters = Counters()
        self.eval_interval = max(1, round(cfg.eval_every * len(data.y)))
        self.next_eval = 0
        self.last_eval_backprops: int | None = None
        self.untimed_seconds = 0.0  # evaluation and logging: not part of what training costs
        self.epoch_starts: list[int] = []  # the step each epoch began with
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)  # first step with a non-finite loss
        self.losses_since_eval: list[Tensor] = []
        self.evals: list[dict] = []
        self.best_test_error = math.inf

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, sink: Sink, *, start_epoch: int = 0) -> None:
        """Train for cfg.epochs (from `start_epoch` after `load_state_dict`), handing each finished epoch to `sink`."""
        self.sink = sink
        n, B = len(self.y), self.cfg.batch_size
        if start_epoch == 0:
            self.method.setup(self)  # work before training, e.g. rho's irreducible-loss model
            self.t0 = time.perf_counter()
            self.maybe_evaluate(epoch=0)
        for epoch in range(start_epoch, self.cfg.epochs):
            order, queue = self.start_epoch(epoch)
            size = self.method.candidate_size()
            for start in range(0, n, size):
                # candidates: the next round of the epoch's permutation, augmented once for scoring and training
                index = order[start:start + size]
                slot = torch.arange(start, start + len(index), device=self.device)
                x = self.view(index)
                # score and select; in warm-up, or with vr's switch off, every candidate is trained
                if self.method.selects(epoch):
                    queue.push(*self.select(index, x, slot, epoch))
                else:
                    ones = torch.ones(len(index), device=self.device)
                    queue.push(Batch(index, x, slot, ones, ones), len(index))
                # train: one step as soon as B picks are waiting
                while len(queue) >= B:
                    self.train_step(queue.pop(B), epoch)
                self.progress(len(index))
            if len(queue):
                self.train_step(queue.pop(len(queue)), epoch)  # the epoch's last, smaller batch
            # evaluate, then log the epoch as whole columns (never a diverged one)
            self.maybe_evaluate(epoch, final=epoch == self.cfg.epochs - 1)
            self.check_finite()
            self.log_epoch(epoch, order, *self.predict(epoch))
            if epoch + 1 < self.cfg.epochs:
                self.sink.checkpoint(epoch + 1, self.state_dict)

    def start_epoch(self, epoch: int) -> tuple[Tensor, PickQueue]:
        """All per-epoch state, made here: the lr, a fresh permutation, empty log buffers, an empty pick queue."""
        self.set_lr(lr_at(self.cfg, epoch))
        self.epoch_starts.append(self.counters.step)
        self.obs, self.steps = ObservationLog(len(self.y), self.device), StepLog()
        return torch.randperm(len(self.y), generator=self.gen["order"], device=self.device), PickQueue()

    def log_epoch(self, epoch: int, order: Tensor, predictions: pd.DataFrame | None, test: pd.DataFrame | None) -> None:
        """Hand the epoch to the sink: one device→host copy per column (the time is not charged to training)."""
        started = time.perf_counter()
        observations = self.obs.frame(epoch, self.example_id[order.cpu().numpy()])
        check_logged(observations, epoch, self.cfg.lr)  # logits that overflowed are never logged as numbers
        self.sink.write_epoch(epoch, observations=observations, steps=self.steps.table(),
                              evals=pd.DataFrame(self.evals), predictions=predictions, test_predictions=test)
        self.evals = []
        self.untimed_seconds += time.perf_counter() - started

    # -- the pieces -------------------------------------------------------------------------

    def view(self, index: Tensor) -> Tensor:
        """The candidates as the model sees them: augmented once (scoring and training share the view)."""
        x = self.x[index]
        if self.crop_flip:
            x = crop_flip(x, pad=CROP_PADDING, generator=self.gen["augment"])
        return normalise(x, self.mean, self.std).contiguous(memory_format=torch.channels_last)

    def select(self, index: Tensor, x: Tensor, slot: Tensor, epoch: int) -> tuple[Batch, int]:
        """Score the candidates (fresh or cached), let the method pick, log, and return the picks."""
        fwd, stale = self.scores(index, x, epoch) if self.method.needs_scores else (None, False)
        sel = self.method.select(fwd, index, epoch)
        if fwd is not None:
            self.obs.record(slot, fwd, step=self.counters.step, mode=SCORE, select_prob=sel.select_prob,
                            picked=sel.picked, stale=stale)
            bad = (~torch.isfinite(fwd.loss) | ~torch.isfinite(fwd.entropy)).sum()
            count, n_bad = torch.stack([sel.picked.sum(), bad]).tolist()  # one host sync per round
            if n_bad:
                self.check_finite()  # a diverged training loss explains it, and names an earlier step
                raise TrainingFailed(f"non-finite score during selection at step {self.counters.step} (epoch {epoch}): "
                                     f"{n_bad} of {len(index)} candidates have a non-finite loss or entropy; the model "
                                     f"diverged, try a lower --lr (now {self.cfg.lr:g})")
        else:
            count = int(sel.picked.sum())  # one host sync per round: how many picks to queue
        self.counters.selection_candidates += len(index)
        self.counters.selection_picks += count
        rows = torch.repeat_interleave(torch.arange(len(index), device=self.device), sel.picked, output_size=count)
        weight = sel.weight[rows] if sel.weight is not None else torch.ones(count, device=self.device)
        # unscored picks are observed by their training forward; scored ones already have their row
        pick_slot = slot[rows] if fwd is None else torch.full((count,), self.obs.dummy, device=self.device)
        return Batch(index[rows], x[rows], pick_slot, weight, sel.select_prob[rows]), count

    def scores(self, index: Tensor, x: Tensor, epoch: int) -> tuple[Forward, Tensor | bool]:
        """Per-candidate statistics: a fresh forward, or cached ones where the method allows stale scores."""
        cache = self.method.cache
        if cache is None:
            return self.score(x, self.y[index]), False
        stale = cache.usable(index, epoch)
        fresh = torch.nonzero(~stale).squeeze(1)  # host sync: the size of the forward to run
        fwd = cache.lookup(index)
        if len(fresh):
            fresh_fwd = self.score(x[fresh], self.y[index[fresh]])
            cache.store(index[fresh], fresh_fwd, epoch)
            fwd = fwd.scatter(fresh, fresh_fwd)
        return fwd, stale

    @torch.inference_mode()
    def score(self, x: Tensor, y: Tensor) -> Forward:
        """No-grad eval-mode forward: BatchNorm uses (and never updates) its running statistics. Under torchrun each
        rank forwards its share of the rows and the logits are gathered."""
        self.model.eval()
        start, stop = self.ranks.share(len(y))
        with self.score_autocast:
            logits = self.model(x[start:stop])
        if self.ranks.active:
            logits = self.ranks.gather_rows(logits.float(), len(y))
        self.counters.forwards_scoring += len(y)
        self.counters.scored_since_step += len(y)
        return Forward.from_logits(logits, y)

    def fit_holdout_model(self, *, model: str | None = None, epochs: int | None = None) -> Tensor:
        """rho's irreducible losses: a model trained on the holdout scores every training example (training.holdout)."""
        return holdout.fit_holdout_model(self, model=model, epochs=epochs)

    def train_step(self, batch: Batch, epoch: int) -> None:
        self.model.train()
        y = self.y[batch.index]
        if self.ranks.active:
            logits, loss, objective = self.train_share(batch, y)
        else:
            with self.autocast:
                logits = self.model(batch.x)
            loss = objective = (F.cross_entropy(logits.float(), y, reduction="none") * batch.weight).mean()
        # remember the first step whose loss is not finite; read at the next host sync (no sync per step)
        self.bad_step = torch.where((self.bad_step < 0) & ~torch.isfinite(loss.detach()), self.counters.step,
                                    self.bad_step)
        self.opt.zero_grad(set_to_none=True)
        objective.backward()
        self.opt.step()

        fwd = Forward.from_logits(logits, y)
        self.obs.record(batch.slot, fwd, step=self.counters.step, mode=TRAIN, select_prob=batch.prob, picked=1)
        if self.method.cache is not None:
            self.method.cache.store(batch.index, fwd, epoch)  # a back-propagated example's loss is fresh again
        self.method.trained(batch.index, fwd, epoch)
        c = self.counters
        c.forwards_training += len(batch)
        c.backprops += len(batch)
        self.steps.add(dict(step=c.step, epoch=epoch, lr=self.opt.param_groups[0]["lr"], n_scored=c.scored_since_step,
                            n_backprop=len(batch), forwards_scoring=c.forwards_scoring,
                            forwards_training=c.forwards_training, backprops=c.backprops,
                            selection_candidates=c.selection_candidates, selection_picks=c.selection_picks,
                            seconds=self.train_seconds()), loss, self.method.state())
        self.losses_since_eval.append(loss.detach())
        c.step += 1
        c.scored_since_step = 0
        self.maybe_evaluate(epoch)

    def train_share(self, batch: Batch, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's share of a step (training.distributed): (the whole batch's logits, gathered; the batch's loss
        as one process computes it; the objective whose gradient, averaged over the ranks, is that loss's)."""
        n, k = len(batch), self.ranks.world
        start, stop = self.ranks.share(n)
        rows = slice(start, stop) if stop > start else slice(0, 1)  # an empty share still joins the all-reduce
        with self.autocast:
            mine = self.train_model(batch.x[rows]).float()
        each = F.cross_entropy(mine, y[rows], reduction="none") * batch.weight[rows]
        objective = each.sum() * (k / n) * float(stop > start)
        logits = self.ranks.gather_rows(mine.detach()[:stop - start], n)
        loss = (F.cross_entropy(logits, y, reduction="none") * batch.weight).mean()
        return logits, loss, objective

    def maybe_evaluate(self, epoch: int, final: bool = False) -> None:
        """Evaluate when backprops cross the next multiple of the interval, and once at the very end."""
        c = self.counters
        if len(self.test_y) == 0:
            return  # no test split (test_fraction 0): nothing to evaluate on
        if not (c.backprops >= self.next_eval or (final and self.last_eval_backprops != c.backprops)):
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # so the clock below charges the queued training work to training
        seconds = self.train_seconds()
        started = time.perf_counter()
        self.check_finite()
        test_loss, test_error = self.evaluate()
        if not math.isfinite(test_loss):
            raise TrainingFailed(f"training diverged: the test loss is {test_loss} after step {c.step - 1} "
                                 f"(epoch {epoch}); try a lower --lr (now {self.cfg.lr:g})")
        train_loss = float(torch.stack(self.losses_since_eval).mean()) if self.losses_since_eval else None
        self.losses_since_eval = []
        self.evals.append(dict(step=c.step, epoch=epoch, backprops=c.backprops,
                               forwards=c.forwards_scoring + c.forwards_training, forwards_scoring=c.forwards_scoring,
                               forwards_training=c.forwards_training, seconds=seconds,
                               test_loss=test_loss, test_error=test_error, train_loss=train_loss))
        self.last_eval_backprops = c.backprops
        self.best_test_error = min(self.best_test_error, test_error)
        while self.next_eval <= c.backprops:
            self.next_eval += self.eval_interval
        self.untimed_seconds += time.perf_counter() - started

    def logits_of(self, x: Tensor):
        """(start, float32 logits) of images on the device, chunk by chunk, in eval mode and un-augmented."""
        self.model.eval()
        for start in range(0, len(x), EVAL_CHUNK):
            chunk = normalise(x[start:start + EVAL_CHUNK], self.mean, self.std).contiguous(
                memory_format=torch.channels_last)
            with self.autocast:
                yield start, self.model(chunk).float()

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        """Mean test cross-entropy and error over the whole (never corrupted, never augmented) test split; under
        torchrun computed on rank 0 and broadcast."""
        result = torch.zeros(2, dtype=torch.float64, device=self.device)
        if self.ranks.rank == 0:
            wrong = torch.zeros((), device=self.device, dtype=torch.int64)
            for start, logits in self.logits_of(self.test_x):
                y = self.test_y[start:start + EVAL_CHUNK]
                result[0] += F.cross_entropy(logits, y, reduction="sum").double()
                wrong += (logits.argmax(1) != y).sum()
            result[1] = wrong.double()
            result /= len(self.test_y)
        if self.ranks.active:
            self.ranks.broadcast(result)
        return float(result[0]), float(result[1])

    @torch.inference_mode()
    def predict(self, epoch: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """Softmax probabilities of the held-out examples (cross-fitting) and of the test split (how they would look
        with correct labels: audit.transition) after each epoch of the later half; (None, None) otherwise. Untimed."""
        if self.data.predict_x is None or epoch < self.cfg.epochs // 2 or self.ranks.rank != 0:
            return None, None
        started = time.perf_counter()
        if self.predict_x is None:
            self.predict_x = torch.from_numpy(self.data.predict_x).to(self.device)
        none = torch.zeros(0, self.data.n_classes, device=self.device)  # an empty test split has no chunk
        probs = [torch.cat([none, *(F.softmax(logits, dim=1) for _, logits in self.logits_of(x))]).cpu().numpy()
                 for x in (self.predict_x, self.test_x)]
        held = pd.DataFrame({"example_id": self.data.predict_id.astype(np.int32), "epoch": np.int32(epoch),
                             "probs": list(probs[0])})
        test_id = np.arange(len(self.test_y)) if self.data.test_id is None else self.data.test_id
        test = pd.DataFrame({"example_id": test_id.astype(np.int32), "epoch": np.int32(epoch),
                             "label": self.data.test_y.astype(np.int16), "probs": list(probs[1])})
        self.untimed_seconds += time.perf_counter() - started
        return held, test

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything that decides what happens after this epoch (training.state)."""
        return state_of(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint: `fit(start_epoch=state["epochs_done"])` then repeats an unbroken run."""
        restore(self, state)

    def check_finite(self) -> None:
        """Raise TrainingFailed if a training loss has been non-finite (a host sync: called at evaluations,
        selection rounds that met a non-finite score, and epoch ends)."""
        step = int(self.bad_step)
        if step >= 0:
            epoch = bisect.bisect_right(self.epoch_starts, step) - 1
            raise TrainingFailed(f"training diverged: the training loss became non-finite at step {step} "
                                 f"(epoch {epoch}); try a lower --lr (now {self.cfg.lr:g})")

    def train_seconds(self) -> float:
        """Wall-clock seconds of training so far: scoring, selection and training steps; evaluation, logging out."""
        return time.perf_counter() - self.t0 - self.untimed_seconds
