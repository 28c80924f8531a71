"""Replay selection methods' pick rules on logged losses: what would sb or vr have back-propagated?

Used by the own-dataset audit, which trains plain SGD and asks afterwards how loss-based selection
would have spent its compute on the same losses. The rules are the methods' own `selects`, `select`
and `trained`, so the replay cannot drift from what `lossaudit run` does. Two replays:

- pick rule: every round from the method's first epoch after warm-up is selected from, a switch (vr's
  τ) forced on; this isolates what the rule does with high-loss examples.
- as run: the method's own warm-up and switch decide, round by round, as in a real run; a round it
  does not select from trains every candidate once, and those training losses update its state (vr's
  τ) in chunks of B, as the trainer does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lossaudit.training.methods import REPLAYED, Forward, create_method, resolve_params

PICK_RULE, AS_RUN = "pick rule", "as run"


@dataclass(frozen=True)
class Replay:
    """One method's replay over n logged observations. picks: (n,) expected times each is back-propagated;
    selecting: (n,) bool, whether its round was selected from (rather than trained whole, or skipped)."""

    picks: np.ndarray
    selecting: np.ndarray


def replay(order: pd.DataFrame, *, methods: tuple[str, ...] = REPLAYED, batch_size: int = 128,
           mode: str = PICK_RULE) -> dict[str, Replay]:
    """Expected picks of every observation under each method's rule.

    order: one row per observation (epoch, example_id, loss) in the order the candidates came. The
    expected picks of a selected candidate are the method's `expected_picks` (sb: its pick probability;
    vr: picks per pool × its sampling probability). In the pick-rule replay, warm-up rounds count 0 picks
    (nothing to measure); in the as-run replay, every round the method does not select from counts 1.
    """
    if mode not in (PICK_RULE, AS_RUN):
        raise ValueError(f"unknown replay mode {mode!r}; valid: {PICK_RULE}, {AS_RUN}")
    loss = torch.tensor(order.loss.to_numpy(dtype=np.float32))
    epoch = order.epoch.to_numpy()
    bounds = np.flatnonzero(np.r_[True, np.diff(epoch) != 0, True])
    zeros = torch.zeros(len(loss))
    out = {}
    for name in methods:
        method = create_method(name, resolve_params(name), batch_size=batch_size, n_train=len(loss),
                               device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
        size = method.candidate_size()
        picks, selecting = np.zeros(len(loss)), np.zeros(len(loss), dtype=bool)
        for start, end in zip(bounds[:-1], bounds[1:]):
            e = int(epoch[start])
            for s in range(start, end, size):
                rows = slice(s, min(s + size, end))
                n = rows.stop - rows.start
                fwd = Forward(loss[rows], zeros[rows], zeros[rows], torch.exp(-loss[rows]),
                              torch.zeros(n, dtype=torch.int64))
                on = method.selects(e) if mode == AS_RUN else e >= method.warmup_epochs
                if on:
                    picks[rows] = method.expected_picks(method.select(fwd, torch.arange(n), e)).numpy()
                    selecting[rows] = True
                elif mode == AS_RUN:
                    picks[rows] = 1.0
                    for chunk in torch.split(torch.arange(n), batch_size):
                        method.trained(chunk, Forward(*(getattr(fwd, f)[chunk] for f in
                                                        ("loss", "entropy", "margin", "p_true", "pred"))), e)
        out[name] = Replay(picks, selecting)
    return out


def replay_both(order: pd.DataFrame) -> dict[tuple[str, str], Replay]:
    """Both replays of every method in REPLAYED, keyed by (method, mode)."""
    return {(name, mode): r for mode in (PICK_RULE, AS_RUN) for name, r in replay(order, mode=mode).items()}
