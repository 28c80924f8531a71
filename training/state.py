"""A trainer's checkpoint state: what `Trainer.state_dict` saves after an epoch and `load_state_dict` restores."""

from __future__ import annotations

import dataclasses
import time

from lossaudit.training.logs import Counters


def state_of(trainer) -> dict:
    """A trainer's checkpoint: everything that decides what happens after this epoch — weights, optimizer, the
    method's state, every random generator, the counters and the evaluation schedule (tensors and plain values)."""
    return {"epochs_done": len(trainer.epoch_starts), "model": trainer.model.state_dict(),
            "optimizer": trainer.opt.state_dict(), "method": trainer.method.state_dict(),
            "generators": {name: g.get_state() for name, g in trainer.gen.items()},
            "counters": dataclasses.asdict(trainer.counters), "next_eval": trainer.next_eval,
            "last_eval_backprops": trainer.last_eval_backprops, "epoch_starts": list(trainer.epoch_starts),
            "best_test_error": trainer.best_test_error, "bad_step": trainer.bad_step.clone(),
            "losses_since_eval": [t.detach().clone() for t in trainer.losses_since_eval],
            "seconds": trainer.train_seconds()}


def restore(trainer, state: dict) -> None:
    """Put a checkpoint back into a trainer of the same config: `fit(start_epoch=state["epochs_done"])` then
    repeats an unbroken run."""
    trainer.model.load_state_dict(state["model"])
    trainer.opt.load_state_dict(state["optimizer"])
    trainer.method.load_state_dict(state["method"])
    for name, g in trainer.gen.items():
        g.set_state(state["generators"][name])
    trainer.counters = Counters(**state["counters"])
    trainer.next_eval, trainer.last_eval_backprops = state["next_eval"], state["last_eval_backprops"]
    trainer.epoch_starts, trainer.best_test_error = list(state["epoch_starts"]), state["best_test_error"]
    trainer.bad_step = state["bad_step"].to(trainer.device)
    trainer.losses_since_eval = [t.to(trainer.device) for t in state["losses_since_eval"]]
    trainer.untimed_seconds = 0.0
    trainer.t0 = time.perf_counter() - state["seconds"]  # the seconds axis goes on where it stopped
