"""rho's irreducible-loss model: plain SGD on the run's holdout, then one eval-mode forward of every training
example. Under torchrun the model trains like any run (training.distributed) and rank 0 scores the examples and
broadcasts the losses: they are computed once."""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import Tensor
from torch.nn import functional as F

from lossaudit.core.errors import TrainingFailed
from lossaudit.training.augment import normalise
from lossaudit.training.logs import NullSink
from lossaudit.training.methods import BASELINE


def fit_holdout_model(run, *, model: str | None = None, epochs: int | None = None) -> Tensor:
    """Train a model on the holdout, then score every training example once (rho's irreducible losses).

    The holdout run is plain SGD with this run's recipe (`model` and `epochs` default to the run's);
    its losses are computed in eval mode on un-augmented images. What it cost is handed to the sink
    with the losses, so that it is counted into the method's cost. Returns (N,) losses on the device.
    `run`: the training.trainer.Trainer of the run (the holdout model is another of its kind).
    """
    cfg, data = run.cfg, run.data
    if data.holdout_x is None:
        raise ValueError(f"{cfg.method} needs a holdout, but its holdout_share is 0")
    il_cfg = dataclasses.replace(cfg, method=BASELINE, params=None, model=model or cfg.model,
                                 epochs=epochs or cfg.epochs)
    il_data = type(data)(x=data.holdout_x, y=data.holdout_y, example_id=data.holdout_id, test_x=data.test_x,
                         test_y=data.test_y, n_classes=data.n_classes)
    il = type(run)(il_cfg, il_data, progress=run.progress)
    try:
        il.fit(NullSink())
    except TrainingFailed as err:
        raise TrainingFailed(f"the irreducible-loss model: {err}") from None
    il_seconds = il.train_seconds()  # its training, evaluation excluded, as for the run itself
    started = time.perf_counter()
    il.model.eval()
    losses = [torch.zeros(0, device=run.device)]
    with torch.no_grad():
        chunks = torch.split(torch.arange(len(run.y), device=run.device), run.EVAL_CHUNK) if run.ranks.rank == 0 else []
        for chunk in chunks:
            x = normalise(run.x[chunk], il.mean, il.std).contiguous(memory_format=torch.channels_last)
            with run.autocast:
                logits = il.model(x).float()
            losses.append(F.cross_entropy(logits, run.y[chunk], reduction="none"))
    irreducible = torch.cat(losses) if run.ranks.rank == 0 else torch.zeros(len(run.y), device=run.device)
    if run.ranks.active:
        run.ranks.broadcast(irreducible)  # rank 0's losses on every rank: computed once
    if not bool(torch.isfinite(irreducible).all()):
        raise TrainingFailed("the irreducible-loss model gives non-finite losses; try a lower --lr "
                             f"(now {cfg.lr:g}) or more --il-epochs")
    # what the model cost: its training passes plus one forward of every training example
    run.counters.upfront_backprops += il.counters.backprops
    run.counters.upfront_forwards += il.counters.forwards_scoring + len(run.y)
    summary = dict(model=il_cfg.model, epochs=il_cfg.epochs, holdout_size=len(il_data.y),
                   backprops=il.counters.backprops, forwards=il.counters.forwards_training + len(run.y),
                   forwards_scoring=il.counters.forwards_scoring + len(run.y),
                   seconds=il_seconds + time.perf_counter() - started, best_test_error=il.best_test_error)
    run.sink.write_irreducible(run.example_id, irreducible.cpu().numpy(), summary, purpose=run.method.upfront)
    return irreducible
