"""Replay selection methods' pick rules on logged losses: what would sb or vr have back-propagated?

Used by the own-dataset audit, which trains plain SGD and asks afterwards how loss-based selection
would have spent its compute on the same losses. The rules are the methods' own `select`, so the
replay cannot drift from what `lossaudit run` does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from training.config import RunConfig
from training.methods import Forward, apply_preset, create_method

REPLAYED = ("sb50", "sb33", "vr50", "vr33")


def expected_picks(order: pd.DataFrame, *, methods: tuple[str, ...] = REPLAYED, batch_size: int = 128) -> pd.DataFrame:
    """Expected number of picks of every observation under each method's rule.

    order: one row per observation (epoch, example_id, loss) in the order the candidates came. sb:
    its percentile rule over a running history, warm-up epochs skipped (they train everything); the
    expected picks of a candidate are its pick probability. vr: always switched on (the switch is
    ignored, to show its bias), expected picks = picks per pool × the candidate's sampling probability.
    Returns `order` with one column of expected picks per method.
    """
    out = order.copy()
    loss = torch.tensor(order.loss.to_numpy(dtype=np.float32))
    epoch = order.epoch.to_numpy()
    bounds = np.flatnonzero(np.r_[True, np.diff(epoch) != 0, True])
    zeros = torch.zeros(len(loss))
    for name in methods:
        cfg = apply_preset(dataclasses.replace(RunConfig(method=name, batch_size=batch_size), device="cpu"))
        method = create_method(cfg, n_train=len(loss), device=torch.device("cpu"),
                               generator=torch.Generator().manual_seed(0))
        size = method.candidate_size()
        picks = np.zeros(len(loss))
        for start, end in zip(bounds[:-1], bounds[1:]):
            e = int(epoch[start])
            if e < getattr(method, "warmup_epochs", 0):
                continue  # warm-up epochs train everything: no selection to measure
            for s in range(start, end, size):
                rows = slice(s, min(s + size, end))
                n = rows.stop - rows.start
                fwd = Forward(loss[rows], zeros[rows], zeros[rows], torch.exp(-loss[rows]),
                              torch.zeros(n, dtype=torch.int64))
                picks[rows] = method.expected_picks(method.select(fwd, torch.arange(n), e)).numpy()
        out[name] = picks
    return out
