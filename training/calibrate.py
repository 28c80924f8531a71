"""What a scoring forward costs against a training step, measured on this machine: the `--forward-cost` of a
budget counted in cost (training.budget).

Both are timed as the trainer runs them, per example, on batches of the run's B of its own (augmented) training
images: F, the no-grad eval-mode scoring forward (the selector's); T, a training step (forward, backward, optimizer
step). Trials interleave the two, so that both see the same load, and each keeps its fastest repetition block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
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


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on a CPU), so that a clock read after it charges that work."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def training_step(trainer, x: Tensor, y: Tensor) -> None:
    """One plain training step of `trainer`'s model on (x, y): forward, backward, optimizer step."""
    trainer.model.train()
    with trainer.autocast:
        loss = F.cross_entropy(trainer.model(x).float(), y)
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()


def per_example_seconds(trainer, fns: dict[str, Callable[[], None]], *, batch: int, reps: int = 10,
                        trials: int = 3, warm: int = 1) -> dict[str, float]:
    """Seconds per example of each of `fns` (each processes one batch of `batch` examples): `trials` rounds that
    interleave them, so that all see the same load, each keeping its fastest block of `reps` calls."""
    def seconds(fn) -> float:
        for _ in range(warm):
            fn()
        synchronize(trainer.device)
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        synchronize(trainer.device)
        return (time.perf_counter() - start) / reps / batch

    best = {name: float("inf") for name in fns}
    for _ in range(trials):
        for name, fn in fns.items():
            best[name] = min(best[name], seconds(fn))
    return best


def calibrate(trainer, *, reps: int = 10, trials: int = 3) -> Calibration:
    """Time `trainer`'s scoring forward and training step (training.trainer.Trainer; its weights change)."""
    B = min(trainer.cfg.batch_size, len(trainer.y))
    index = torch.arange(B, device=trainer.device)
    x, y = trainer.view(index), trainer.y[index]
    best = per_example_seconds(trainer, {"forward": lambda: trainer.score(x, y),
                                         "step": lambda: training_step(trainer, x, y)},
                               batch=B, reps=reps, trials=trials)
    return Calibration(forward=best["forward"], step=best["step"], batch_size=B, device=str(trainer.device),
                       threads=torch.get_num_threads())
