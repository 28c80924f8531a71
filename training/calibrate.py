"""What a scoring forward costs against a training step, measured on this machine: the `--forward-cost` of a
budget counted in cost (training.budget).

Both are timed as the trainer runs them, per example, on batches of the run's B of its own (augmented) training
images: F, the no-grad eval-mode scoring forward (the selector's); T, a training step (forward, backward, optimizer
step). Trials interleave the two, so that both see the same load, and each keeps its fastest repetition block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Seconds per example of a scoring forward and of a training step, and their ratio, the forward cost."""

    forward: float
    step: float
    batch_size: int
    device: str
    threads: int

    @property
    def forward_cost(self) -> float:
        return self.forward / self.step


def calibrate(trainer, *, reps: int = 10, trials: int = 3) -> Calibration:
    """Time `trainer`'s scoring forward and training step (training.trainer.Trainer; its weights change)."""
    B = min(trainer.cfg.batch_size, len(trainer.y))
    index = torch.arange(B, device=trainer.device)
    x, y = trainer.view(index), trainer.y[index]
    model, opt = trainer.model, trainer.opt

    def score():
        trainer.score(x, y)

    def step():
        model.train()
        with trainer.autocast:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def seconds(fn) -> float:
        fn()  # warm
        _sync(trainer)
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(trainer)
        return (time.perf_counter() - start) / reps / B

    best = {"forward": float("inf"), "step": float("inf")}
    for _ in range(trials):
        for name, fn in (("forward", score), ("step", step)):
            best[name] = min(best[name], seconds(fn))
    return Calibration(forward=best["forward"], step=best["step"], batch_size=B, device=str(trainer.device),
                       threads=torch.get_num_threads())


def _sync(trainer) -> None:
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
