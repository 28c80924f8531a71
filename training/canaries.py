"""Canaries: corrupted copies of real training examples, added as known positives.

A user's own data has no ground truth. Canaries give some: a small share of examples is copied,
each copy corrupted with one of the paper's three kinds, and added to the training set. Whatever
finds the canaries among the user's examples has a measured recall on *their* data. Originals are
never changed on disk; canaries are never reported as suspects.

A random-label canary replaces its original in training: next to a correctly labelled twin, a
wrongly labelled copy is far harder to memorise than a real mislabeled image, so it would stop
looking like one as training goes on (seen on digits: twins kept 75% of label canaries unfitted
while 83% of real flipped labels were memorised). `Canaries.replaces` marks those originals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossaudit.training.corruptions import CORRUPTIONS

KINDS = ("random_labels", "shuffle_pixels", "gaussian")


@dataclass(frozen=True)
class Canaries:
    """n canaries. x: (n, C, H, W) uint8; label: (n,) as trained; origin: (n,) row of the copied example;
    kind: (n,) corruption kind of each."""

    x: np.ndarray
    label: np.ndarray
    origin: np.ndarray
    kind: np.ndarray

    @property
    def replaces(self) -> np.ndarray:
        """Rows of the originals that leave the training set (those of the random-label canaries)."""
        return self.origin[self.kind == "random_labels"]

    def __len__(self) -> int:
        return len(self.label)


def make_canaries(x: np.ndarray, y: np.ndarray, n_classes: int, share: float, seed: int) -> Canaries:
    """round(share · N) copies of distinct random examples: half of them random-label canaries (label noise
    is what the audit estimates, and their number sets its precision), a quarter each shuffled-pixel and
    Gaussian. A random-label canary always gets a label other than its original's, so every canary is
    truly corrupted."""
    n = int(round(share * len(y)))
    rng = np.random.default_rng([seed, 0xCA1A])
    origin = rng.choice(len(y), size=n, replace=False)
    n_label = int(round(n / 2))
    n_shuffle = int(round((n - n_label) / 2))
    kind = np.array([KINDS[0]] * n_label + [KINDS[1]] * n_shuffle + [KINDS[2]] * (n - n_label - n_shuffle), dtype=object)
    out_x, out_y = x[origin].copy(), y[origin].copy()
    for name in KINDS:
        rows = np.flatnonzero(kind == name)
        if not len(rows):
            continue
        if name == "random_labels":
            out_y[rows] = (out_y[rows] + rng.integers(1, n_classes, size=len(rows))) % n_classes
        else:
            done = CORRUPTIONS[name].apply(out_x[rows], out_y[rows], n_classes, np.ones(len(rows), bool), rng, 1.0)
            out_x[rows] = done.x
    return Canaries(out_x, out_y.astype(np.int64), origin, kind)
