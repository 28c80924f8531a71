"""The loop's training step (one back-propagation of a batch of picks, logged) and its guard against divergence."""

from __future__ import annotations

import bisect

import torch
from torch import Tensor
from torch.nn import functional as F

from lossaudit.core.errors import TrainingFailed
from lossaudit.training.logs import TRAIN, Batch, ObservationLog, StepLog
from lossaudit.training.methods import Forward


class Guard:
    """Remembers the first step whose training loss is not finite without a host sync per step; `check` (a host sync,
    at evaluations, selection rounds that met a non-finite score, and epoch ends) raises TrainingFailed naming it."""

    def __init__(self, device: torch.device, lr: float):
        self.lr = lr
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.epoch_starts: list[int] = []  # the step each epoch began with

    def note(self, loss: Tensor, step: int) -> None:
        self.bad_step = torch.where((self.bad_step < 0) & ~torch.isfinite(loss.detach()), step, self.bad_step)

    def check(self) -> None:
        step = int(self.bad_step)
        if step >= 0:
            epoch = bisect.bisect_right(self.epoch_starts, step) - 1
            raise TrainingFailed(f"training diverged: the training loss became non-finite at step {step} "
                                 f"(epoch {epoch}); try a lower --lr (now {self.lr:g})")


class Stepper:
    """`run`: the Trainer whose model, optimizer, method, counters and clock a step uses."""

    def __init__(self, run):
        self.run = run

    def step(self, batch: Batch, epoch: int, obs: ObservationLog, steps: StepLog) -> Tensor:
        """Back-propagate the batch (weighted mean cross-entropy), log every pick's training forward and the step;
        returns the step's loss (on the device)."""
        run, c = self.run, self.run.counters
        run.model.train()
        y = run.y[batch.index]
        if run.ranks.active:
            logits, loss, objective = self.share(batch, y)
        else:
            with run.autocast:
                logits = run.model(batch.x)
            loss = objective = (F.cross_entropy(logits.float(), y, reduction="none") * batch.weight).mean()
        run.guard.note(loss, c.step)  # read at the next host sync (no sync per step)
        run.opt.zero_grad(set_to_none=True)
        objective.backward()
        run.opt.step()

        fwd = Forward.from_logits(logits, y)
        obs.record(batch.slot, fwd, step=c.step, mode=TRAIN, select_prob=batch.prob, picked=1)
        if run.method.cache is not None:
            run.method.cache.store(batch.index, fwd, epoch)  # a back-propagated example's loss is fresh again
        run.method.trained(batch.index, fwd, epoch)
        c.forwards_training += len(batch)
        c.backprops += len(batch)
        steps.add(dict(step=c.step, epoch=epoch, lr=run.opt.param_groups[0]["lr"], n_scored=c.scored_since_step,
                       n_backprop=len(batch), forwards_scoring=c.forwards_scoring,
                       forwards_training=c.forwards_training, backprops=c.backprops,
                       forwards_logging=c.forwards_logging,
                       selection_candidates=c.selection_candidates, selection_picks=c.selection_picks,
                       seconds=run.clock.seconds()), loss, run.method.state())
        c.step += 1
        c.scored_since_step = 0
        return loss.detach()

    def share(self, batch: Batch, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's share of a step (training.distributed): (the whole batch's logits, gathered; the batch's loss
        as one process computes it; the objective whose gradient, averaged over the ranks, is that loss's)."""
        run = self.run
        n, k = len(batch), run.ranks.world
        start, stop = run.ranks.share(n)
        rows = slice(start, stop) if stop > start else slice(0, 1)  # an empty share still joins the all-reduce
        with run.autocast:
            mine = run.train_model(batch.x[rows]).float()
        each = F.cross_entropy(mine, y[rows], reduction="none") * batch.weight[rows]
        objective = each.sum() * (k / n) * float(stop > start)
        logits = run.ranks.gather_rows(mine.detach()[:stop - start], n)
        loss = (F.cross_entropy(logits, y, reduction="none") * batch.weight).mean()
        return logits, loss, objective
