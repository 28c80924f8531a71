"""Out-of-sample probabilities from the user's own backbone: cross-fitted heads on one embedding per example.

The examples are dealt into FOLDS folds, stratified by their given label; for each fold a multinomial logistic
regression on the standardised features of the other folds predicts it, and predicts the trusted test examples too
(so each test example has one prediction per head, read by the examples that head predicted, as with the audit's
proxy runs). A head never sees the label of an example it predicts. Pure scikit-learn over arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossaudit.core.errors import UserError
from lossaudit.core.folds import deal

FOLDS = 5
PENALTY = 1.0  # inverse L2 strength (scikit-learn's C) on standardised features
MAX_ITER = 500


@dataclass(frozen=True)
class Heads:
    """probs: (n, K) each example's probabilities from the head that did not train on it; reader: (n,) which head that
    was; test_probs: (FOLDS, m, K) every head's probabilities of the test examples, or None."""

    probs: np.ndarray
    reader: np.ndarray
    test_probs: np.ndarray | None


def features_array(values, n: int, what: str) -> np.ndarray:
    f = np.asarray(values, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != n or not f.shape[1]:
        raise UserError(f"{what}: expected shape ({n}, dimensions), one embedding per example, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise UserError(f"{what}: {int((~np.isfinite(f)).any(1).sum())} row(s) hold NaN or infinite values")
    return f


def cross_fitted(features: np.ndarray, label: np.ndarray, n_classes: int, *, test_features: np.ndarray | None = None,
                 folds: int = FOLDS, seed: int = 0) -> Heads:
    """Each example's probabilities from a head fitted on the other folds (module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(label, minlength=n_classes)
    if counts[counts > 0].min() < folds:
        small = int(np.flatnonzero((counts > 0) & (counts < folds))[0])
        raise UserError(f"features: class {small} has {counts[small]} example(s); the {folds} cross-fitted heads "
                        f"need at least {folds} of every class present")
    fold = deal(label, folds, [seed, 0x4EAD])  # stratified by label (lossaudit.core.folds)
    probs = np.zeros((len(label), n_classes))
    test = None if test_features is None else np.zeros((folds, len(test_features), n_classes))
    for k in range(folds):
        fit, out = fold != k, fold == k
        scaler = StandardScaler().fit(features[fit])
        head = LogisticRegression(C=PENALTY, max_iter=MAX_ITER).fit(scaler.transform(features[fit]), label[fit])
        probs[np.ix_(np.flatnonzero(out), head.classes_)] = head.predict_proba(scaler.transform(features[out]))
        if test is not None:
            test[k][:, head.classes_] = head.predict_proba(scaler.transform(test_features))
    return Heads(probs, fold, test)
