"""The loop's selector: scores a round of candidates (a fresh forward, or cached scores a method allows), asks the
method for its picks, logs the round and queues the picks."""

from __future__ import annotations

import torch
from torch import Tensor

from lossaudit.core.errors import TrainingFailed
from lossaudit.training.logs import SCORE, Batch, ObservationLog
from lossaudit.training.methods import Forward


class Selector:
    """`run`: the Trainer whose model, method, labels and counters it uses."""

    def __init__(self, run):
        self.run = run

    def sync(self) -> None:
        if self.run.device.type == "cuda":
            torch.cuda.synchronize()

    def everything(self, index: Tensor, x: Tensor, slot: Tensor) -> tuple[Batch, int]:
        """A round the method does not select from (warm-up, a switch off): every candidate is trained once."""
        ones = torch.ones(len(index), device=self.run.device)
        return Batch(index, x, slot, ones, ones), len(index)

    def select(self, index: Tensor, x: Tensor, slot: Tensor, epoch: int, obs: ObservationLog) -> tuple[Batch, int]:
        """Score the candidates (fresh or cached), let the method pick, log, and return the picks. Scores a method
        only logs (its picks never read them) are neither timed nor counted as scoring: they cost it nothing."""
        run, method = self.run, self.run.method
        if method.needs_scores and method.scores_log_only:
            self.sync()  # queued training work stays charged to training, the logging forward is not
            with run.clock.untimed():
                fwd, stale = self.scores(index, x, epoch)
                self.sync()
        else:
            fwd, stale = self.scores(index, x, epoch) if method.needs_scores else (None, False)
        sel = method.select(fwd, index, epoch)
        if fwd is not None:
            obs.record(slot, fwd, step=run.counters.step, mode=SCORE, select_prob=sel.select_prob, picked=sel.picked,
                       stale=stale)
            bad = (~torch.isfinite(fwd.loss) | ~torch.isfinite(fwd.entropy)).sum()
            count, n_bad = torch.stack([sel.picked.sum(), bad]).tolist()  # one host sync per round
            if n_bad:
                run.guard.check()  # a diverged training loss explains it, and names an earlier step
                raise TrainingFailed(f"non-finite score during selection at step {run.counters.step} (epoch {epoch}): "
                                     f"{n_bad} of {len(index)} candidates have a non-finite loss or entropy; the model "
                                     f"diverged, try a lower --lr (now {run.cfg.lr:g})")
        else:
            if sel.cached is not None:
                # what it judged by, a row per candidate: a left-out one keeps it, a pick's training forward replaces it
                obs.record(slot, sel.cached, step=run.counters.step, mode=SCORE, select_prob=sel.select_prob,
                           picked=sel.picked, stale=True)
            count = int(sel.picked.sum())  # one host sync per round: how many picks to queue
        run.counters.selection_candidates += len(index)
        run.counters.selection_picks += count
        rows = torch.repeat_interleave(torch.arange(len(index), device=run.device), sel.picked, output_size=count)
        weight = sel.weight[rows] if sel.weight is not None else torch.ones(count, device=run.device)
        # unscored picks are observed by their training forward; scored ones already have their row
        pick_slot = slot[rows] if fwd is None else torch.full((count,), obs.dummy, device=run.device)
        return Batch(index[rows], x[rows], pick_slot, weight, sel.select_prob[rows]), count

    def scores(self, index: Tensor, x: Tensor, epoch: int) -> tuple[Forward, Tensor | bool]:
        """Per-candidate statistics: a fresh forward, or cached ones where the method allows stale scores."""
        run, cache = self.run, self.run.method.cache
        if cache is None:
            return self.score(x, run.y[index]), False
        stale = cache.usable(index, epoch)
        fresh = torch.nonzero(~stale).squeeze(1)  # host sync: the size of the forward to run
        fwd = cache.lookup(index)
        if len(fresh):
            fresh_fwd = self.score(x[fresh], run.y[index[fresh]])
            cache.store(index[fresh], fresh_fwd, epoch)
            fwd = fwd.scatter(fresh, fresh_fwd)
        return fwd, stale

    @torch.inference_mode()
    def score(self, x: Tensor, y: Tensor) -> Forward:
        """No-grad eval-mode forward: BatchNorm uses (and never updates) its running statistics. Under torchrun each
        rank forwards its share of the rows and the logits are gathered."""
        run = self.run
        run.model.eval()
        start, stop = run.ranks.share(len(y))
        with run.score_autocast:
            logits = run.model(x[start:stop])
        if run.ranks.active:
            logits = run.ranks.gather_rows(logits.float(), len(y))
        if run.method.scores_log_only:
            run.counters.forwards_logging += len(y)
        else:
            run.counters.forwards_scoring += len(y)
            run.counters.scored_since_step += len(y)
        return Forward.from_logits(logits, y)
