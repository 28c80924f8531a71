"""Cross-fitting's one way of dealing examples into folds, for the proxy runs (lossaudit.training) and the heads on a
backbone's features (lossaudit.audit) alike."""

from __future__ import annotations

import numpy as np


def deal(label: np.ndarray, folds: int, seed) -> np.ndarray:
    """(N,) fold of each example, 0..folds-1: within each label, a permutation seeded by `seed` (anything
    numpy.random.default_rng takes) dealt round-robin, so every fold holds each label's examples in equal shares
    (±1)."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(label), dtype=np.int64)
    for value in np.unique(label):
        rows = np.flatnonzero(label == value)
        out[rng.permutation(rows)] = np.arange(len(rows)) % folds
    return out
