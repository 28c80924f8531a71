"""Analysis functions over a read-only connection; each returns a pandas DataFrame.

The heavy lifting (joins and aggregations over observations) is SQL in audit/queries/; what SQL
does badly (interpolating curves, ROC metrics) is done here on the small results. Definitions
follow the paper and ALGORITHMS.md Part 1; each function says its rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from audit.errors import UserError, choices
from audit.queries import run_query

SCORES = ("mean_loss_score", "final_loss_score", "mean_entropy_score", "aum_score", "forgetting_score",
          "confidence_score", "variability_score", "pick_frequency_score")
TARGET_FACTOR = 1.2
AXES = {"backprops": "backprops", "seconds": "seconds", "passes": "passes"}


# -- thin wrappers over named SQL --------------------------------------------------------------


def run_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per run: status, backprops, best and final test error, corrupted share of backprops vs base rate."""
    return run_query(con, "run_summary")


def eval_curves(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every evaluation of every run (test error vs backprops, forwards, seconds)."""
    frame = run_query(con, "eval_curves")
    frame["passes"] = frame.forwards + frame.backprops
    return frame


def corrupted_share_by_epoch(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per run and epoch: share of backprops on corrupted examples and the base rate."""
    return run_query(con, "corrupted_share")


def example_scores(con: duckdb.DuckDBPyConnection, mode: str = "any", max_epoch: int | None = None) -> pd.DataFrame:
    """One row per run × example with every `<x>_score` (higher = more suspect) and the ground truth.

    mode picks the observations the scores come from: any (every row), score (no-grad eval-mode
    scoring forwards, which cover every example each selecting epoch) or train (train-mode forwards
    of training steps, which under sb/vr cover only the picked examples). max_epoch limits them to the
    epochs up to that one (None = all).
    """
    if mode not in ("any", "score", "train"):
        raise UserError(f"unknown score mode {mode!r}; valid: any, score, train")
    return run_query(con, "example_scores", mode=mode, max_epoch=max_epoch)


def pick_gallery(con: duckdb.DuckDBPyConnection, k: int = 8, run_id: int | None = None) -> pd.DataFrame:
    """The k most and k least picked examples of each class per run, with pick counts and ground truth."""
    return run_query(con, "pick_gallery", k=int(k), run_id=run_id)


def per_class(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per run and class: corrupted share, share of picks, corrupted share of picks, mean losses."""
    return run_query(con, "per_class")


# -- curves and Table 1 --------------------------------------------------------------------------


def _per_seed(rows: pd.DataFrame, x: str, y: str = "test_error") -> tuple[np.ndarray, np.ndarray]:
    """Each seed's y(x) interpolated linearly onto the union of the seeds' x values, within the range
    every seed covers. Returns (grid, (n_seeds, len(grid)) values)."""
    seeds = [r.sort_values(x) for _, r in rows.groupby("seed")]
    hi = min(r[x].max() for r in seeds)
    grid = np.unique(np.concatenate([r[x].to_numpy(dtype=float) for r in seeds]))
    grid = grid[grid <= hi]
    return grid, np.stack([np.interp(grid, r[x].to_numpy(dtype=float), r[y].to_numpy(dtype=float)) for r in seeds])


def _seed_mean(rows: pd.DataFrame, x: str, y: str = "test_error") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, std) over seeds of y(x), see `_per_seed`."""
    grid, stack = _per_seed(rows, x, y)
    return grid, stack.mean(0), stack.std(0)


def first_reach(grid: np.ndarray, curve: np.ndarray, target: float) -> float:
    """x at which the curve first comes down to `target`, interpolated linearly between the evaluation
    before and the first at or below it; NaN if it never does."""
    below = np.flatnonzero(curve <= target)
    if len(below) == 0:
        return math.nan
    i = below[0]
    if i == 0:
        return float(grid[0])
    x0, x1, y0, y1 = grid[i - 1], grid[i], curve[i - 1], curve[i]
    return float(x0 + (x1 - x0) * (y0 - target) / (y0 - y1))


def curves(con: duckdb.DuckDBPyConnection, x: str = "backprops") -> pd.DataFrame:
    """Test error against `x` (backprops, seconds or passes) per corruption and method: seed mean and band."""
    if x not in AXES:
        raise UserError(f"unknown curve axis {x!r}; valid: {choices(AXES)}")
    ev = eval_curves(con)
    out = []
    for (corruption, method), rows in ev.groupby(["corruption", "method"], sort=False):
        grid, stack = _per_seed(rows, x)
        out.append(pd.DataFrame({"corruption": corruption, "method": method, "x": grid, "test_error": stack.mean(0),
                                 "test_error_std": stack.std(0), "test_error_min": stack.min(0),
                                 "test_error_max": stack.max(0), "n_seeds": len(stack)}))
    frame = pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        columns=["corruption", "method", "x", "test_error", "test_error_std", "test_error_min", "test_error_max", "n_seeds"])
    frame.attrs["x"] = x
    return frame


TABLE1_RULE = (f"target = {TARGET_FACTOR} × sgd's best test error (mean over seeds of each seed's best, per corruption "
               "setting); a method's cost = the x at which its seed-mean test error curve first reaches the target, "
               "interpolated linearly between evaluations; speedup = sgd's cost ÷ the method's cost; — where never "
               "reached. Best test error = mean over seeds of each seed's best (± std over seeds). x is examples "
               "back-propagated (the paper's metric), training seconds (evaluation excluded) or example passes "
               "(forwards + backprops).")


def table1(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The paper's Table 1 per corruption setting and method: speedups in backprops, seconds and passes."""
    ev = eval_curves(con)
    rows = []
    for corruption, setting in ev.groupby("corruption", sort=False):
        best = setting.groupby(["method", "seed"]).test_error.min()
        sgd_best = best.get("sgd")
        target = TARGET_FACTOR * sgd_best.mean() if sgd_best is not None else math.nan
        cost = {}
        for method, m_rows in setting.groupby("method", sort=False):
            cost[method] = {axis: first_reach(*_seed_mean(m_rows, axis)[:2], target) if not math.isnan(target)
                            else math.nan for axis in AXES}
        for method in cost:
            b = best[method]
            row = dict(corruption=corruption, method=method, n_seeds=len(b), best_test_error=b.mean(),
                       best_test_error_std=b.std(ddof=1) if len(b) > 1 else 0.0, target_error=target)
            for axis in AXES:
                mine, base = cost[method][axis], cost.get("sgd", {}).get(axis, math.nan)
                row[f"{axis}_to_target"] = mine
                row[f"speedup_{axis}"] = base / mine if mine and not math.isnan(mine) and mine > 0 else math.nan
            row["cell"] = _cell(row["speedup_backprops"], row["best_test_error"])
            rows.append(row)
    columns = ["corruption", "method", "n_seeds", "best_test_error", "best_test_error_std", "target_error",
               *[c for a in AXES for c in (f"{a}_to_target", f"speedup_{a}")], "cell"]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["rule"] = TABLE1_RULE
    return frame


def _cell(speedup: float, best: float) -> str:
    """The paper's format: '1.8× (5.2%)', or '— (7.9%)' when the target was never reached."""
    head = "—" if math.isnan(speedup) else f"{speedup:.2f}×"
    return f"{head} ({best * 100:.1f}%)"


# -- corrupted share (Figure 3) ---------------------------------------------------------------------


def corrupted_share(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per corruption setting, method and epoch: corrupted share of backprops, mean over seeds, and the base rate."""
    per_run = corrupted_share_by_epoch(con)
    per_run = per_run[per_run.base_rate > 0]
    if per_run.empty:
        return per_run.assign(n_seeds=[])
    return (per_run.groupby(["corruption", "corruption_kind", "method", "epoch"], sort=False)
            .agg(corrupted_share=("corrupted_share", "mean"), corrupted_share_std=("corrupted_share", "std"),
                 base_rate=("base_rate", "mean"), backprops=("backprops", "mean"), n_seeds=("seed", "nunique"))
            .reset_index())


# -- separability --------------------------------------------------------------------------------


TRUTH_RULE = ("Ground truth: for random_labels the examples whose label actually changed (a relabelled example that "
              "kept its label is clean data); for image corruptions every corrupted example.")


def noisy_truth(scores: pd.DataFrame) -> np.ndarray:
    """(n,) bool ground truth for separability, by TRUTH_RULE."""
    return np.where(scores.corruption == "random_labels", scores.label_changed, scores.is_corrupted).astype(bool)


def precision_at_k(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of corrupted among the k highest scores (ties broken by position, stable)."""
    if k <= 0:
        return math.nan
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].mean())


def separability(con: duckdb.DuckDBPyConnection, mode: str = "any") -> pd.DataFrame:
    """How well each score tells corrupted from clean examples: AUROC, average precision and precision at
    k = number corrupted, per run, then averaged over seeds per corruption setting, method and score.
    `best` marks the score with the highest mean AUROC for each corruption setting and method."""
    runs = con.execute("select run_id, method, corruption, corruption_kind, seed from runs").df()
    return separability_of(example_scores(con, mode), runs)


def separability_of(scores: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`separability` on already computed example scores (runs: run_id, method, corruption, corruption_kind, seed)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rows = []
    for run_id, group in scores.groupby("run_id"):
        y = noisy_truth(group)
        if y.all() or not y.any():
            continue
        for name in SCORES:
            s = group[name].to_numpy(dtype=float)
            s = np.nan_to_num(s, nan=np.nanmin(s) if np.isfinite(s).any() else 0.0)
            rows.append(dict(run_id=run_id, score=name, n_examples=len(y), n_corrupted=int(y.sum()),
                             auroc=roc_auc_score(y, s), average_precision=average_precision_score(y, s),
                             precision_at_k=precision_at_k(y, s, int(y.sum()))))
    columns = ["corruption", "corruption_kind", "method", "score", "n_seeds", "auroc", "auroc_std",
               "average_precision", "precision_at_k", "base_rate", "best"]
    if not rows:
        return pd.DataFrame(columns=columns)
    per_run = pd.DataFrame(rows).merge(runs, on="run_id")
    out = (per_run.groupby(["corruption", "corruption_kind", "method", "score"], sort=False)
           .agg(n_seeds=("seed", "nunique"), auroc=("auroc", "mean"), auroc_std=("auroc", "std"),
                average_precision=("average_precision", "mean"), precision_at_k=("precision_at_k", "mean"),
                n_corrupted=("n_corrupted", "mean"), n_examples=("n_examples", "mean"))
           .reset_index())
    out["base_rate"] = out.n_corrupted / out.n_examples
    out["best"] = out.auroc == out.groupby(["corruption", "method"]).auroc.transform("max")
    out.attrs["truth"] = TRUTH_RULE
    return out[columns]


# -- the registry of analyses the CLI can run by name ---------------------------------------------


@dataclass(frozen=True)
class Analysis:
    function: Callable[..., pd.DataFrame]
    description: str


ANALYSES: dict[str, Analysis] = {
    "table1": Analysis(table1, "the paper's Table 1: speedup to 1.2 × sgd's best error in backprops, seconds, passes"),
    "curves": Analysis(curves, "test error vs x (backprops, seconds or passes): seed mean and band per method"),
    "corrupted_share_mean": Analysis(corrupted_share, "corrupted share of backprops per epoch, mean over seeds"),
    "separability": Analysis(separability, "AUROC, average precision and precision@k of every score, per method"),
}
