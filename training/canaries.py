"""Canaries: corrupted copies of real training examples, added as known positives.

A user's own data has no ground truth. Canaries give some: a small share of examples is copied,
each copy corrupted with one of four kinds (`KINDS`: two kinds of wrong label, shuffled pixels and Gaussian
noise), and added to the training set. Whatever
finds the canaries among the user's examples has a measured recall on *their* data. Originals are
never changed on disk; canaries are never reported as suspects.

Label canaries come in two kinds: uniform (`random_labels`, any other class) and confusable
(`confusable_labels`, a class the true class is confused with, drawn as the corruption of that name
draws it from the data's own clean-proxy confusions), because real annotation errors are mostly of
the second kind and score far closer to clean examples than uniform flips do.

A label canary replaces its original in training: next to a correctly labelled twin, a
wrongly labelled copy is far harder to memorise than a real mislabeled image, so it would stop
looking like one as training goes on (seen on digits: twins kept 75% of label canaries unfitted
while 83% of real flipped labels were memorised). `Canaries.replaces` marks those originals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossaudit.training.corruptions import CORRUPTIONS

KINDS = ("random_labels", "confusable_labels", "shuffle_pixels", "gaussian")
LABEL_KINDS = ("random_labels", "confusable_labels")


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
        return self.origin[np.isin(self.kind, LABEL_KINDS)]

    def __len__(self) -> int:
        return len(self.label)


def canary_counts(n: int, confusable: bool) -> dict[str, int]:
    """How n canaries split over the kinds: 3/4 label canaries (label noise is what the audit estimates, and their
    number sets its precision), half of those confusable when there are confusions to draw from; 1/8 each
    shuffled-pixel and Gaussian."""
    n_label = int(round(3 * n / 4))
    n_confusable = n_label // 2 if confusable else 0
    n_shuffle = (n - n_label) // 2
    return {"random_labels": n_label - n_confusable, "confusable_labels": n_confusable,
            "shuffle_pixels": n_shuffle, "gaussian": n - n_label - n_shuffle}


def make_canaries(x: np.ndarray, y: np.ndarray, n_classes: int, share: float, seed: int,
                  confusion: np.ndarray | None = None) -> Canaries:
    """round(share · N) copies of distinct random examples, split over the kinds by `canary_counts`; confusable
    label canaries only with `confusion`, W[true, given] (training.confusions). A label canary always gets a label
    other than its original's, so every canary is truly corrupted; a confusable one keeps a uniform label when its
    class has no confusable class."""
    n = int(round(share * len(y)))
    rng = np.random.default_rng([seed, 0xCA1A])
    origin = rng.choice(len(y), size=n, replace=False)
    counts = canary_counts(n, confusion is not None)
    kind = np.array([k for k in KINDS for _ in range(counts[k])], dtype=object)
    out_x, out_y = x[origin].copy(), y[origin].copy()
    for name in KINDS:
        rows = np.flatnonzero(kind == name)
        if not len(rows):
            continue
        if name == "random_labels":
            out_y[rows] = (out_y[rows] + rng.integers(1, n_classes, size=len(rows))) % n_classes
        elif name == "confusable_labels":
            w = np.where(np.eye(n_classes, dtype=bool), 0.0, confusion)
            stuck = w[out_y[rows]].sum(1) == 0
            out_y[rows[stuck]] = (out_y[rows[stuck]] + rng.integers(1, n_classes, size=int(stuck.sum()))) % n_classes
            moved = rows[~stuck]
            done = CORRUPTIONS[name].apply(out_x[moved], out_y[moved], n_classes, np.ones(len(moved), bool), rng, 1.0,
                                           confusion=w)
            out_y[moved] = done.label
        else:
            done = CORRUPTIONS[name].apply(out_x[rows], out_y[rows], n_classes, np.ones(len(rows), bool), rng, 1.0)
            out_x[rows] = done.x
    return Canaries(out_x, out_y.astype(np.int64), origin, kind)
