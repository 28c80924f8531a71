"""A trainer's checkpoint state: what `Trainer.state_dict` saves after an epoch and `load_state_dict` restores."""

from __future__ import annotations

import dataclasses

from lossaudit.training.logs import Counters


def state_of(trainer) -> dict:
    """A trainer's checkpoint: everything that decides what happens after this epoch — weights, optimizer, the
    method's state, every random generator, the counters and the evaluation schedule (tensors and plain values)."""
    ev, guard = trainer.evaluator, trainer.guard
    return {"epochs_done": len(guard.epoch_starts), "model": trainer.model.state_dict(),
            "optimizer": trainer.opt.state_dict(), "method": trainer.method.state_dict(),
            "generators": {name: g.get_state() for name, g in trainer.gen.items()},
            "counters": dataclasses.asdict(trainer.counters), "next_eval": ev.next_eval,
            "last_eval_backprops": ev.last_eval_backprops, "epoch_starts": list(guard.epoch_starts),
            "best_test_error": ev.best_test_error, "bad_step": guard.bad_step.clone(),
            "losses_since_eval": [t.detach().clone() for t in ev.losses_since_eval],
            "seconds": trainer.clock.seconds()}


def restore(trainer, state: dict) -> None:
    """Put a checkpoint back into a trainer of the same config: `fit(start_epoch=state["epochs_done"])` then
    repeats an unbroken run."""
    trainer.model.load_state_dict(state["model"])
    trainer.opt.load_state_dict(state["optimizer"])
    trainer.method.load_state_dict(state["method"])
    for name, g in trainer.gen.items():
        g.set_state(state["generators"][name])
    trainer.counters = Counters(**state["counters"])
    ev, guard = trainer.evaluator, trainer.guard
    ev.next_eval, ev.last_eval_backprops = state["next_eval"], state["last_eval_backprops"]
    guard.epoch_starts, ev.best_test_error = list(state["epoch_starts"]), state["best_test_error"]
    guard.bad_step = state["bad_step"].to(trainer.device)
    ev.losses_since_eval = [t.to(trainer.device) for t in state["losses_since_eval"]]
    trainer.clock.start(state["seconds"])  # the seconds axis goes on where it stopped
