"""The training loop: candidates → score and select → training step → evaluate → log.

`Trainer.fit` is the algorithm on one screen; each part is a named collaborator: the `Selector` (scoring and the
method's picks, training.selection), the `Stepper` and its divergence `Guard` (training.stepping), the `Evaluator`
and the `Clock` (training.evaluation). Data lives on the training device as uint8 tensors and is augmented in
batches. Per-example statistics go into preallocated device tensors (training.logs) and reach the host once per
epoch, when the epoch is handed to the sink (the database writer, injected: training knows nothing of it).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lossaudit.core.errors import UserError
from lossaudit.training import distributed, holdout
from lossaudit.training.augment import channel_stats, crop_flip, normalise
from lossaudit.training.budget import PASS_SLACK, Budget, lr_at
from lossaudit.training.config import RunConfig
from lossaudit.training.evaluation import EVAL_CHUNK, Clock, Evaluator
from lossaudit.training.logs import Batch, Counters, ObservationLog, PickQueue, Sink, StepLog, check_logged
from lossaudit.training.methods import Forward, create_method
from lossaudit.training.models import create_model
from lossaudit.training.selection import Selector
from lossaudit.training.state import restore, state_of
from lossaudit.training.stepping import Guard, Stepper

CROP_PADDING = 4  # random crop with this much zero padding, the paper's augmentation for 32×32 images


@dataclass(frozen=True, kw_only=True)
class TrainData:
    """Host arrays for one run. x: (N, C, H, W) uint8; y: (N,) int64 labels as trained; example_id: (N,).

    holdout_*: examples kept out of training for the method's own use (rho's irreducible-loss model), else None.
    predict_*: examples kept out of training to be predicted out-of-sample (cross-fitting), else None.
    val_*: the validation split (labels as given), evaluated with the test split, else None.
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
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; valid here: cpu, auto")
    return device


def planned_passes(cfg: RunConfig) -> int:
    """The candidate passes a run plans: its epochs, or with a budget the budget at its method's nominal selectivity
    (training.budget)."""
    if not cfg.budget:
        return cfg.epochs
    probe = create_method(cfg.method, cfg.params, batch_size=cfg.batch_size, n_train=1, epochs=cfg.epochs,
                          device=torch.device("cpu"), generator=torch.Generator())
    return Budget.of(cfg, 1).passes(cfg.epochs, probe.nominal_selectivity)


def wants_crop_flip(augment: str, image_shape: tuple[int, ...]) -> bool:
    return augment == "crop-flip" or (augment == "auto" and tuple(image_shape[1:]) == (32, 32))


STREAM_STRIDE = 1_000_003  # a prime: the streams of seed s never collide with those of seed s + 1


def _generator(device: torch.device, seed: int, stream: int) -> torch.Generator:
    """One of a run's independent random streams (candidate order, augmentation, selection)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * STREAM_STRIDE + stream)
    return g


class Trainer:
    """Holds the model, optimizer, method and counters of one run and its collaborators; `fit` is the loop."""

    EVAL_CHUNK = EVAL_CHUNK

    def __init__(self, cfg: RunConfig, data: TrainData, *, progress: Callable[[int], None] | None = None):
        self.cfg, self.data, self.progress = cfg, data, progress or (lambda n: None)
        self.device = device = resolve_device(cfg.device)
        self.gen = {name: _generator(device, cfg.seed, i) for i, name in enumerate(("order", "augment", "select"))}
        self.x = torch.from_numpy(data.x).to(device)
        self.y = torch.from_numpy(data.y).to(device)
        self.example_id = data.example_id
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
        # a full sgd run: every example the run could train on, its method's holdout included (rho trains fewer)
        self.budget = Budget.of(cfg, len(data.y) + (0 if data.holdout_y is None else len(data.holdout_y)))
        self.passes = planned_passes(cfg)
        self.method = create_method(cfg.method, cfg.params, batch_size=cfg.batch_size, n_train=len(data.y),
                                    device=device, generator=self.gen["select"], epochs=self.passes)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
        self.score_autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.score_precision == "bf16"
                               else self.autocast)
        self.counters = Counters()
        self.clock = Clock()
        self.guard = Guard(device, cfg.lr)
        self.selector = Selector(self)
        self.stepper = Stepper(self)
        self.evaluator = Evaluator(self)

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, sink: Sink, *, start_epoch: int = 0) -> None:
        """Train for cfg.epochs passes, or until the budget is spent (from `start_epoch` after `load_state_dict`),
        handing each finished epoch to `sink`."""
        self.sink = sink
        B = self.cfg.batch_size
        if start_epoch == 0:
            self.method.setup(self)  # work before training, e.g. a model the method fits first
            self.clock.start()
            self.evaluator.maybe(epoch=0)
        last = self.passes * PASS_SLACK if self.budget.on else self.cfg.epochs
        for epoch in range(start_epoch, last):
            order, queue, obs, steps = self.start_epoch(epoch)
            for index, slot in self.rounds(order):
                if self.budget.spent_out(self.counters, waiting=len(queue)):
                    break  # spent: train the picks waiting, offer no more candidates
                x = self.view(index)  # candidates, augmented once for scoring and training
                if self.method.selects(epoch):  # score and select
                    queue.push(*self.selector.select(index, x, slot, epoch, obs))
                else:  # in warm-up, or with a method's switch off, every candidate is trained
                    queue.push(*self.selector.everything(index, x, slot))
                while len(queue) >= B:  # step as soon as B picks are waiting, then evaluate when due
                    self.step(queue.pop(B), epoch, obs, steps)
                self.progress(len(index))
            if len(queue):
                self.step(queue.pop(len(queue)), epoch, obs, steps)  # the epoch's last, smaller batch
            done = epoch == last - 1 or self.budget.spent_out(self.counters)
            self.evaluator.maybe(epoch, final=done)
            self.guard.check()  # never log a diverged epoch
            self.log_epoch(epoch, order, obs, steps)
            if done:
                break
            self.sink.checkpoint(epoch + 1, self.state_dict)

    def start_epoch(self, epoch: int) -> tuple[Tensor, PickQueue, ObservationLog, StepLog]:
        """All per-epoch state, made here: the lr, a fresh permutation, an empty pick queue and log buffers."""
        self.offered = 0
        self.set_lr(lr_at(self.cfg, self.schedule_progress(epoch), epoch))
        self.guard.epoch_starts.append(self.counters.step)
        order = torch.randperm(len(self.y), generator=self.gen["order"], device=self.device)
        return order, PickQueue(), ObservationLog(len(self.y), self.device), StepLog()

    def rounds(self, order: Tensor):
        """(candidates, their slots in the epoch's log) round by round: the next `candidate_size` of the permutation."""
        size = self.method.candidate_size()
        for start in range(0, len(order), size):
            index = order[start:start + size]
            self.offered = start + len(index)
            yield index, torch.arange(start, start + len(index), device=self.device)

    def schedule_progress(self, epoch: int) -> float:
        """The schedule's progress in [0, 1]: the share of the budget spent, or of the candidate passes made."""
        if self.budget.on:
            return min(1.0, self.budget.spent(self.counters) / self.budget.total)
        return min(1.0, (epoch + self.offered / max(1, len(self.y))) / self.cfg.epochs)

    def step(self, batch: Batch, epoch: int, obs: ObservationLog, steps: StepLog) -> None:
        if self.cfg.schedule != "step" or self.budget.on:  # the lr moves within the epoch
            self.set_lr(lr_at(self.cfg, self.schedule_progress(epoch), epoch))
        self.evaluator.losses_since_eval.append(self.stepper.step(batch, epoch, obs, steps))
        self.evaluator.maybe(epoch)

    def log_epoch(self, epoch: int, order: Tensor, obs: ObservationLog, steps: StepLog) -> None:
        """Hand the epoch to the sink: one device→host copy per column (the time is not charged to training)."""
        predictions, test = self.evaluator.predict(epoch)
        with self.clock.untimed():
            observations = obs.frame(epoch, self.example_id[order.cpu().numpy()])
            check_logged(observations, epoch, self.cfg.lr)  # logits that overflowed are never logged as numbers
            self.sink.write_epoch(epoch, observations=observations, steps=steps.table(),
                                  evals=pd.DataFrame(self.evaluator.taken()), predictions=predictions,
                                  test_predictions=test)

    # -- the pieces the collaborators and a method's own model share ------------------------------

    def view(self, index: Tensor) -> Tensor:
        """The candidates as the model sees them: augmented once (scoring and training share the view)."""
        x = self.x[index]
        if self.crop_flip:
            x = crop_flip(x, pad=CROP_PADDING, generator=self.gen["augment"])
        return normalise(x, self.mean, self.std).contiguous(memory_format=torch.channels_last)

    def score(self, x: Tensor, y: Tensor) -> Forward:
        """A no-grad eval-mode forward of x with labels y (the selector's scoring pass)."""
        return self.selector.score(x, y)

    def fit_holdout_model(self, *, model: str | None = None, epochs: int | None = None) -> Tensor:
        """A method's irreducible losses: a model trained on the holdout scores every training example
        (training.holdout)."""
        return holdout.fit_holdout_model(self, model=model, epochs=epochs)

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def train_seconds(self) -> float:
        """Wall-clock seconds of training so far: scoring, selection and training steps; evaluation, logging out."""
        return self.clock.seconds()

    @property
    def best_test_error(self) -> float:
        return self.evaluator.best_test_error

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything that decides what happens after this epoch (training.state)."""
        return state_of(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint: `fit(start_epoch=state["epochs_done"])` then repeats an unbroken run."""
        restore(self, state)
