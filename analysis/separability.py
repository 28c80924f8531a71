"""Separability: how well each per-example score tells corrupted from clean examples (AUROC, average precision,
precision at k, ROC points), against the ground truth the runs recorded."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd

from lossaudit.core import scores as score_registry
from lossaudit.analysis.metrics import EXPERIMENT, compared, example_scores, run_standing


TRUTH_RULE = ("Ground truth: for random_labels the examples whose label actually changed (a relabelled example that "
              "kept its label is clean data); for image corruptions every corrupted example.")


def noisy_truth(scores: pd.DataFrame) -> np.ndarray:
    """(n,) bool ground truth for separability, by TRUTH_RULE."""
    return np.where(scores.corruption_kind == "random_labels", scores.label_changed, scores.is_corrupted).astype(bool)


def precision_at_k(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of corrupted among the k highest scores (ties broken by position, stable)."""
    if k <= 0:
        return math.nan
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].mean())


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random negative, ties counting one
    half (Mann-Whitney, from average ranks). y: (n,) bool with both classes; score: (n,) float."""
    ranks = pd.Series(score).rank(method="average").to_numpy()
    pos = int(y.sum())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def _cumulative(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct threshold, from the highest score down."""
    order = np.argsort(-score, kind="stable")
    s, hits = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last position of each group of equal scores
    tps = np.cumsum(hits)[last]
    return tps, last + 1 - tps


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Σ over distinct thresholds (from the highest) of (recall gained) × (precision there), as scikit-learn's."""
    tps, fps = _cumulative(y, score)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * tps / (tps + fps)))


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) at every distinct threshold, starting at (0, 0)."""
    tps, fps = _cumulative(y, score)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def roc_points(scores_of_run: pd.DataFrame, max_points: int = 200) -> dict[str, dict]:
    """ROC curve of every score on one run's examples against TRUTH_RULE, thinned to at most max_points points:
    {score: {"fpr": [...], "tpr": [...], "auroc": float}}; empty when the run has only clean or only noisy ones."""
    truth = noisy_truth(scores_of_run)
    if scores_of_run.empty or truth.all() or not truth.any():
        return {}
    out = {}
    for name in score_registry.names():
        s = _filled(scores_of_run[name].to_numpy(dtype=float))
        fpr, tpr = roc_curve(truth, s)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), max_points)).astype(int))
        out[name] = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "auroc": auroc(truth, s)}
    return out


def _filled(s: np.ndarray) -> np.ndarray:
    """A score with missing values (e.g. the variability of a single observation) ranked lowest."""
    return np.nan_to_num(s, nan=np.nanmin(s) if np.isfinite(s).any() else 0.0)


def separability(con: duckdb.DuckDBPyConnection, mode: str = "any", include_incomplete: bool = False) -> pd.DataFrame:
    """How well each score tells corrupted from clean examples: AUROC, average precision and precision at
    k = number corrupted, per run, then averaged over seeds per experiment, corruption setting, method and score.
    `best` marks the score with the highest mean AUROC for each experiment, corruption setting and method."""
    standing = run_standing(con, include_incomplete)
    return separability_of(compared(example_scores(con, mode), standing), standing)


def separability_of(scores: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`separability` on already computed example scores (runs: run_id, experiment_id, experiment, method,
    corruption, corruption_kind, seed)."""
    rows = []
    for run_id, group in scores.groupby("run_id"):
        y = noisy_truth(group)
        if y.all() or not y.any():
            continue
        for name in score_registry.names():
            s = _filled(group[name].to_numpy(dtype=float))
            rows.append(dict(run_id=run_id, score=name, n_examples=len(y), n_corrupted=int(y.sum()),
                             auroc=auroc(y, s), average_precision=average_precision(y, s),
                             precision_at_k=precision_at_k(y, s, int(y.sum()))))
    columns = [*EXPERIMENT, "corruption", "corruption_kind", "method", "score", "n_seeds", "auroc", "auroc_std",
               "average_precision", "precision_at_k", "base_rate", "best"]
    if not rows:
        return pd.DataFrame(columns=columns)
    keys = [*EXPERIMENT, "corruption", "corruption_kind", "method"]
    per_run = pd.DataFrame(rows).merge(runs[["run_id", *keys, "seed"]], on="run_id")
    out = (per_run.groupby([*keys, "score"], sort=False, dropna=False)
           .agg(n_seeds=("seed", "nunique"), auroc=("auroc", "mean"), auroc_std=("auroc", "std"),
                average_precision=("average_precision", "mean"), precision_at_k=("precision_at_k", "mean"),
                n_corrupted=("n_corrupted", "mean"), n_examples=("n_examples", "mean"))
           .reset_index())
    out["base_rate"] = out.n_corrupted / out.n_examples
    out["best"] = out.auroc == out.groupby(["experiment_id", "corruption", "method"]).auroc.transform("max")
    out.attrs["truth"] = TRUTH_RULE
    return out[columns]
