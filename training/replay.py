"""Replay selection methods' pick rules on logged losses: what would sb, vr or infobatch have back-propagated?

Used by the own-dataset audit, which trains plain SGD and asks afterwards how loss-based selection
would have spent its compute on the same losses. The rules are the methods' own `selects`, `select`
and `trained`, so the replay cannot drift from what `lossaudit run` does. Two replays:

- pick rule: every round from the method's first epoch after warm-up is selected from, a switch (vr's
  τ) forced on; this isolates what the rule does with high-loss examples.
- as run: the method's own warm-up and switch decide, round by round, as in a real run; a round it
  does not select from trains every candidate once, and those training losses update its state (vr's
  τ) in chunks of B, as the trainer does.

A method whose state comes from training's own forwards (infobatch: each example's last training loss) is given
every logged loss after its round, as the proxy trained every example; a method with a score cache (stale SB)
selects by the losses its cache would hold.
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
    position = torch.as_tensor(pd.factorize(order.example_id)[0], dtype=torch.int64)  # each example's row in a table
    n_examples = int(position.max()) + 1 if len(position) else 0
    bounds = np.flatnonzero(np.r_[True, np.diff(epoch) != 0, True])
    zeros = torch.zeros(len(loss))
    out = {}
    for name in methods:
        method = create_method(name, resolve_params(name), batch_size=batch_size, n_train=n_examples,
                               device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                               epochs=int(epoch.max()) + 1 if len(epoch) else 0)
        size = method.candidate_size()
        picks, selecting = np.zeros(len(loss)), np.zeros(len(loss), dtype=bool)
        for start, end in zip(bounds[:-1], bounds[1:]):
            e = int(epoch[start])
            for s in range(start, end, size):
                rows = slice(s, min(s + size, end))
                n, index = rows.stop - rows.start, position[rows]
                fwd = Forward(loss[rows], zeros[rows], zeros[rows], torch.exp(-loss[rows]),
                              torch.zeros(n, dtype=torch.int64))
                on = method.selects(e) if mode == AS_RUN else e >= method.warmup_epochs
                if on:
                    seen = _stale(method, index, fwd, e)
                    picks[rows] = method.expected_picks(method.select(seen, index, e)).numpy()
                    selecting[rows] = True
                    if method.learns_from_training:  # the proxy trained every candidate: its losses are the kept ones
                        method.trained(index, fwd, e)
                    continue
                if method.cache is not None:  # a round trained whole: its training forwards fill the score cache
                    method.cache.store(index, fwd, e)
                if mode == AS_RUN:
                    picks[rows] = 1.0
                    for chunk in torch.split(torch.arange(n), batch_size):
                        method.trained(index[chunk], Forward(*(getattr(fwd, f)[chunk] for f in
                                                               ("loss", "entropy", "margin", "p_true", "pred"))), e)
        out[name] = Replay(picks, selecting)
    return out


def _stale(method, index: torch.Tensor, fwd: Forward, epoch: int) -> Forward:
    """The scores a method with a score cache (stale SB) would select by: each example's cached loss while it is
    younger than the staleness, else the logged one, which refreshes the cache (a refresh by a backprop is not
    replayed: whether the example was back-propagated is what the replay estimates)."""
    cache = method.cache
    if cache is None:
        return fwd
    fresh = torch.nonzero(~cache.usable(index, epoch)).squeeze(1)
    if len(fresh):
        cache.store(index[fresh], Forward(*(getattr(fwd, f)[fresh] for f in ("loss", "entropy", "margin", "p_true",
                                                                              "pred"))), epoch)
    return cache.lookup(index)


def replay_both(order: pd.DataFrame) -> dict[tuple[str, str], Replay]:
    """Both replays of every method in REPLAYED, keyed by (method, mode)."""
    return {(name, mode): r for mode in (PICK_RULE, AS_RUN) for name, r in replay(order, mode=mode).items()}
