"""The audit's noise-share estimate: mixture-proportion estimation against label canaries of two kinds, mixed by what
the label pairs of the high-scoring examples look like, with a bootstrap interval; and its split over the classes.

Pure numpy over scores (higher = more suspect); lossaudit.audit.noise feeds it a proxy's scores and canaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LABEL_KINDS = ("random_labels", "confusable_labels")  # as training.canaries.KINDS
MIN_LABEL_CANARIES = 5  # of each kind the estimate uses
NOISE_LEVELS = (0.3, 0.9, 25)  # thresholds keeping 30% .. 90% of the label canaries, 25 of them
MIX_ROUNDS = 5  # rounds of (threshold at this mix → mix of the pairs above it)
BOOTSTRAP = 200
TOP_SUGGESTED = 3  # suggested classes listed per given label
NOISE_METHOD = ("mixture-proportion estimate against label canaries: share = min over thresholds t of "
                "P(user score >= t) / P(label-canary score >= t), over the thresholds keeping 30% to 90% of the "
                "canaries; the canaries are uniform and confusable label flips, weighted by the mix of the two that "
                "the label pairs of the examples above t show (a confusable flip lands on a class the proxy confuses "
                "with the image's, a uniform one on any). Reported: the estimate, the estimate under each canary kind alone, "
                "and an interval spanning the 5-95% ranges over 200 bootstrap resamples of the canaries and the "
                "examples of all three")


def tail_share(user: np.ndarray, canaries: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(share, threshold): the share of mislabeled examples among `user` scores, given scores of known mislabeled
    examples (optionally weighted), and the threshold it was read at.

    With q(t) the share of user examples scoring >= t and r(t) the (weighted) share of canaries,
    q(t) = share · r_noisy(t) + (1 - share) · r_clean(t) >= share · r(t) when the canaries score like the user's
    mislabeled examples; so share <= q(t) / r(t) for every t, with equality where clean examples do not reach t. The
    estimate is the minimum over the thresholds keeping 30%..90% of the canaries.
    """
    w = np.full(len(canaries), 1.0 / len(canaries)) if weights is None else weights / weights.sum()
    order = np.argsort(-canaries, kind="stable")
    kept = np.cumsum(w[order])  # share of the canary weight at or above each canary's score, highest first
    best, at = math.inf, math.nan
    for level in np.linspace(*NOISE_LEVELS):
        t = canaries[order][min(np.searchsorted(kept, level - 1e-12), len(order) - 1)]
        ratio = (user >= t).mean() / w[canaries >= t].sum()
        if ratio < best:
            best, at = ratio, float(t)
    return float(min(1.0, max(0.0, best))), at


def label_mix(given: np.ndarray, other: np.ndarray, confusion: np.ndarray, *, rounds: int = 100) -> float:
    """The share of these (given label, most likely other class) pairs that look like uniform flips rather than
    confusable ones: the maximum-likelihood λ of P(given | other) = λ/(K-1) + (1-λ)·W[other, given]/W[other].sum()
    (W without its diagonal, a row with no weight uniform), by EM. 0.5 with no pairs."""
    if not len(given):
        return 0.5
    k = len(confusion)
    w = np.where(np.eye(k, dtype=bool), 0.0, confusion)
    sums = w.sum(1, keepdims=True)
    w = np.where(sums > 0, w / np.where(sums > 0, sums, 1), (1 - np.eye(k)) / (k - 1))
    uniform, confusable = 1.0 / (k - 1), w[other, given]
    lam = 0.5
    for _ in range(rounds):  # kept off 0 and 1, where a pair of zero likelihood under one kind would give 0/0
        lam = float(np.clip(np.mean(lam * uniform / (lam * uniform + (1 - lam) * confusable)), 1e-9, 1 - 1e-9))
    return lam


@dataclass
class Estimate:
    share: float  # at the estimated mix of uniform and confusable canaries
    low: float  # the lowest 5% bootstrap point of the estimate at the mix and under each kind alone
    high: float  # the highest 95% point of those
    threshold: float  # the score the share was read at
    uniform_weight: float  # the mix: share of the label noise that looks like uniform flips
    by_kind: dict[str, float]  # the estimate under each label canary kind alone


def mixed_share(user: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], confusion: np.ndarray,
                canaries: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """(share, threshold, uniform weight): `tail_share` against the label canaries weighted by the mix the label
    pairs above the threshold show, from an even mix, for `MIX_ROUNDS` rounds. With one kind of label canary only,
    that kind alone."""
    if set(canaries) != set(LABEL_KINDS):
        (kind, values), = canaries.items()
        share, t = tail_share(user, values)
        return share, t, float(kind == "random_labels")
    uni, con = canaries["random_labels"], canaries["confusable_labels"]
    values = np.concatenate([uni, con])

    def read_at(lam: float) -> tuple[float, float]:
        weights = np.concatenate([np.full(len(uni), lam / len(uni)), np.full(len(con), (1 - lam) / len(con))])
        return tail_share(user, values, weights)

    lam = 0.5
    for _ in range(MIX_ROUNDS - 1):
        _, t = read_at(lam)
        above = user >= t
        seen = label_mix(pairs[0][above], pairs[1][above], confusion)  # the mix among those detected ...
        r_u, r_c = max((uni >= t).mean(), 1e-9), max((con >= t).mean(), 1e-9)
        lam = (seen / r_u) / (seen / r_u + (1 - seen) / r_c)  # ... undone for each kind's detection rate
    share, t = read_at(lam)
    return share, t, lam


def estimate_share(values: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], confusion: np.ndarray,
                   canaries: dict[str, np.ndarray], *, seed: int = 0, n_boot: int = BOOTSTRAP) -> Estimate | None:
    """The noise share among the user's scores `values`, with their (given label, most likely other class) `pairs`,
    against the label canaries' scores by kind (those with fewer than MIN_LABEL_CANARIES left out); None when no kind
    has enough. The interval spans the 5-95% bootstrap range (resampling the canaries and the user's examples) of the
    estimate at the mix and of the estimate against each canary kind alone: it holds both the sampling error and what
    the noise is assumed to look like."""
    canaries = {k: v for k, v in canaries.items() if len(v) >= MIN_LABEL_CANARIES}
    if not canaries:
        return None
    share, t, lam = mixed_share(values, pairs, confusion, canaries)
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {"mix": [], **{k: [] for k in canaries}}
    for _ in range(n_boot):
        pick = rng.integers(0, len(values), len(values))
        resampled = {k: rng.choice(v, len(v)) for k, v in canaries.items()}
        boots["mix"].append(mixed_share(values[pick], (pairs[0][pick], pairs[1][pick]), confusion, resampled)[0])
        for k, v in resampled.items():
            boots[k].append(tail_share(values[pick], v)[0])
    ranges = np.array([np.quantile(b, [0.05, 0.95]) for b in boots.values()])
    by_kind = {k: tail_share(values, v)[0] for k, v in canaries.items()}
    high = max(ranges[:, 1].max(), share)
    if high == 0:  # every resample read none: the interval reaches what none could not be told from
        high = resolution(values, np.concatenate(list(canaries.values())))
    return Estimate(share, float(min(ranges[:, 0].min(), share)), float(high), t, lam, by_kind)


ZERO_SEEN_95 = 3.0  # a Poisson count of which 0 is seen 5% of the time ("rule of three")


def resolution(values: np.ndarray, canaries: np.ndarray) -> float:
    """The smallest share the estimate could have told from none: when no user example scores as high as a share r of
    the label canaries, every bootstrap resample reads 0 — yet a share s of mislabeled examples scoring like the
    canaries would put only s·n·r of the n examples up there, and 0 of them is still likely (5%) at s·n·r = 3. So
    the interval reaches at least 3 / (n·r) (1 when no canary scores above every example)."""
    if not len(values):
        return 1.0
    r = float((canaries > values.max()).mean())
    return min(1.0, ZERO_SEEN_95 / (len(values) * r)) if r > 0 else 1.0


def per_class(label: np.ndarray, values: np.ndarray, est: Estimate | None, suspects: pd.DataFrame,
              classes: list[str]) -> pd.DataFrame:
    """Per given label: its examples, the estimated noise share (the overall estimate apportioned by where the
    examples above its threshold fall: q_c(t) / q(t) · share), its suspects and the classes they most likely are.
    label, values: the user's examples; suspects: given_label and suggested_label of each suspect."""
    above = values >= est.threshold if est is not None else np.zeros(len(values), bool)
    q = above.mean() if len(above) else 0.0
    rows = []
    for c, name in enumerate(classes):
        mine = label == c
        n = int(mine.sum())
        share = (min(1.0, above[mine].mean() / q * est.share) if q > 0 else 0.0) if est is not None and n else math.nan
        flagged = suspects[suspects.given_label == name]
        moved = flagged[flagged.suggested_label != name].suggested_label.value_counts().head(TOP_SUGGESTED)
        rows.append({"class": name, "n": n, "noise_share": share, "suspects": len(flagged),
                     "suggested": ", ".join(f"{k} ({v / len(flagged):.0%})" for k, v in moved.items())})
    return pd.DataFrame(rows)


def confusion_table(suspects: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Among the suspects: given label (rows) → suggested label (columns), counts."""
    table = pd.crosstab(pd.Categorical(suspects.given_label, categories=classes),
                        pd.Categorical(suspects.suggested_label, categories=classes), dropna=False)
    table.index.name, table.columns.name = "given", "suggested"
    return table
