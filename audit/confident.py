"""The noise share from out-of-sample predicted probabilities alone, when there are no trusted labels and no canaries:
the confident joint (Northcutt, Jiang and Chuang, "Confident learning", JAIR 2021).

With p the out-of-sample probabilities and t_k the mean p_k over the examples labelled k (the model's typical
confidence in k on its own examples), an example labelled j is counted as truly k when p_k >= t_k, k the most
probable such class (none above its threshold: not counted). The counts C[j, k], each row rescaled to the number of
examples labelled j, estimate how many examples labelled j truly are k; the noise share is the off-diagonal total
over n. Assumes the noise depends on the true class only and the probabilities rank each class's own examples above
the others'; an overconfident or underfit model bends the counts either way, so the interval (over bootstrap
resamples of the examples within each given label) covers the sampling error only.

Pure numpy over arrays; lossaudit.audit.arrays feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 200
METHOD = ("confident joint (confident learning): an example labelled j is counted as truly k when its out-of-sample "
          "probability of k reaches the mean probability of k over the examples labelled k, k the most probable such "
          "class; each given label's counts rescaled to its examples; noise share = the off-diagonal share. "
          "Interval: 5-95% over 200 bootstrap resamples of the examples within their given label. Assumes the noise "
          "depends on the true class only")


@dataclass(kw_only=True)
class ConfidentEstimate:
    share: float
    low: float
    high: float
    per_class: np.ndarray  # (K,) estimated share mislabeled among the examples of each given label (NaN if none)
    matrix: np.ndarray  # (K, K) given label (rows) → true class (columns), shares, rows summing to 1
    counts: np.ndarray  # (K,) examples per given label


def thresholds(probs: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(K,) t_k = mean p_k over the examples labelled k; inf for a class no example is labelled with."""
    k = probs.shape[1]
    out = np.full(k, np.inf)
    for c in range(k):
        mine = label == c
        if mine.any():
            out[c] = probs[mine, c].mean()
    return out


def confident_class(probs: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n,) the class each example is confidently counted as (the most probable class at or above its threshold),
    -1 for none."""
    above = probs >= t[None, :]
    masked = np.where(above, probs, -np.inf)
    return np.where(above.any(1), masked.argmax(1), -1)


def joint(label: np.ndarray, confident: np.ndarray, k: int) -> np.ndarray:
    """(K, K) the calibrated counts: C[j, :] rescaled to the examples labelled j (the identity row when none of
    them is counted)."""
    counts = np.bincount(label, minlength=k).astype(float)
    c = np.zeros((k, k))
    kept = confident >= 0
    np.add.at(c, (label[kept], confident[kept]), 1.0)
    sums = c.sum(1, keepdims=True)
    shares = np.where(sums > 0, c / np.where(sums > 0, sums, 1.0), np.eye(k))
    return shares * counts[:, None]


def _share(matrix: np.ndarray) -> float:
    total = matrix.sum()
    return float(1.0 - np.trace(matrix) / total) if total else float("nan")


def estimate(probs: np.ndarray, label: np.ndarray, *, seed: int = 0, n_boot: int = BOOTSTRAP) -> ConfidentEstimate:
    """The noise share with its bootstrap interval, per given label, and the given → true shares (module docstring)."""
    k = probs.shape[1]
    counts = np.bincount(label, minlength=k)
    confident = confident_class(probs, thresholds(probs, label))
    calibrated = joint(label, confident, k)
    share = _share(calibrated)
    rng = np.random.default_rng([seed, 0xC0F1])
    groups = [np.flatnonzero(label == c) for c in range(k) if counts[c]]
    boots = []
    for _ in range(n_boot):
        rows = np.concatenate([rng.choice(g, len(g)) for g in groups])
        p, y = probs[rows], label[rows]
        boots.append(_share(joint(y, confident_class(p, thresholds(p, y)), k)))
    low, high = np.quantile(boots, [0.05, 0.95]) if boots else (share, share)
    present = counts[:, None] > 0  # a calibrated row sums to its label's count
    matrix = np.where(present, calibrated / np.where(present, counts[:, None], 1), np.eye(k))
    per_class = np.where(counts > 0, 1.0 - np.diag(matrix), np.nan)
    return ConfidentEstimate(share=share, low=float(min(low, share)), high=float(max(high, share)),
                             per_class=per_class, matrix=matrix, counts=counts)
