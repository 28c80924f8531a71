"""The budget protocol's answers (training.budget): test error at the end of each budget, the budget at which a method
matches sgd's full-budget error, and error at equal budget against sgd and against the uniform control — each
with a bootstrap interval over seeds.

A budgeted run is one point: x = what it spent, as a share of a full sgd run, on one of three axes (`BUDGET_AXES`),
y = its test error at the end (no model selection: the error of the model the budget bought). A method's curve is
the seed mean at each budget it was given. Every rule is written out in the function that applies it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossaudit.core.errors import UserError, choices
from lossaudit.analysis.interpolation import first_reach
from lossaudit.core.queries import run_query

BUDGET_AXES = {"backprops": "spent_backprops_share", "cost": "spent_cost_share", "seconds": "seconds_share"}
INTERVAL = 0.90  # bootstrap percentile interval
BOOTSTRAP = 2000  # resamples
CELL = ["protocol", "method", "corruption"]


def points(runs: pd.DataFrame) -> pd.DataFrame:
    """The complete budgeted runs (rows of the query `budget_runs`) with `seconds_share`: a run's training seconds ÷
    the mean seconds of the baseline's runs (the method whose traits say is_baseline: plain training) at the largest
    budget of its protocol and corruption, ÷ that budget (so that a full baseline run is 1 on every axis)."""
    done = runs[runs.status == "complete"].copy()
    if done.empty:
        return done.assign(seconds_share=pd.Series(dtype=float))
    ref = done[done.is_baseline]
    top = ref.loc[ref.groupby(["protocol", "corruption"]).budget.transform("max") == ref.budget]
    per = top.groupby(["protocol", "corruption"]).agg(seconds=("seconds", "mean"), budget=("budget", "first"))
    full = (per.seconds / per.budget).rename("full_seconds")
    done = done.join(full, on=["protocol", "corruption"])
    return done.assign(seconds_share=done.seconds / done.full_seconds).drop(columns="full_seconds")


def axis_column(axis: str) -> str:
    if axis not in BUDGET_AXES:
        raise UserError(f"budget axis {axis!r} is unknown; valid: {choices(BUDGET_AXES)}")
    return BUDGET_AXES[axis]


def curves(pts: pd.DataFrame, axis: str = "backprops") -> pd.DataFrame:
    """Per cell (protocol, method, corruption) and budget given: the seeds, their mean x on `axis` and mean and sd
    of the test error at the end."""
    x = axis_column(axis)
    return (pts.groupby([*CELL, "budget"], as_index=False)
            .agg(seeds=("seed", "nunique"), x=(x, "mean"), test_error=("final_test_error", "mean"),
                 test_error_sd=("final_test_error", "std"), corrupted_share=("corrupted_share", "mean"),
                 base_rate=("base_rate", "mean")))


def crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """The smallest x at which the curve through (x, y), sorted by x, comes down to `target`: Table 1's
    `interpolation.first_reach` (linear between the points around the first crossing; x[0] when the first point is
    already there; NaN when none is: the budget needed lies beyond those trained)."""
    order = np.argsort(x)
    return first_reach(np.asarray(x, float)[order], np.asarray(y, float)[order], target)


def _grid(rows: pd.DataFrame, x: str) -> tuple[np.ndarray, np.ndarray]:
    """(seeds × budgets) arrays of x and of the final test error (NaN where a seed lacks a budget), budgets sorted."""
    xs = rows.pivot_table(index="seed", columns="budget", values=x, aggfunc="mean").sort_index(axis=1)
    ys = rows.pivot_table(index="seed", columns="budget", values="final_test_error", aggfunc="mean")
    return xs.to_numpy(float), ys[xs.columns].to_numpy(float)


def _curve(xs: np.ndarray, ys: np.ndarray, take: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The seed-mean curve of the seeds `take` (indices, repeats allowed; all when None)."""
    if take is not None:
        xs, ys = xs[take], ys[take]
    with np.errstate(all="ignore"):
        mx, my = np.nanmean(xs, axis=0), np.nanmean(ys, axis=0)
    keep = np.isfinite(mx) & np.isfinite(my)
    return mx[keep], my[keep]


def _draw(rng: np.random.Generator, n: int) -> np.ndarray:
    """A bootstrap draw of n seeds (indices, with replacement): each drawn seed's runs stay together."""
    return rng.integers(0, n, size=n)


def _interval(draws: list[float]) -> tuple[float, float, float]:
    """(low, high, share of draws that are finite) of the percentile interval; NaN bounds when fewer than half
    the draws are finite."""
    values = np.asarray(draws, float)
    finite = values[np.isfinite(values)]
    share = len(finite) / max(1, len(values))
    if share < 0.5:
        return math.nan, math.nan, share
    tail = (1 - INTERVAL) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail)), share


def matching_budget(pts: pd.DataFrame, axis: str = "backprops", *, seed: int = 0,
                    resamples: int = BOOTSTRAP) -> pd.DataFrame:
    """Per cell: the budget at which the method's seed-mean curve comes down to the baseline's error at its largest
    budget (the seed mean there: its own full-run error), by `crossing` on `axis`, with a bootstrap interval: seeds
    are resampled independently for the method and for the baseline, target and crossing recomputed.
    `reached_share`: the share of draws in which the curve reaches the target at all."""
    x = axis_column(axis)
    rng = np.random.default_rng(seed)
    out = []
    for (protocol, corruption), cell in pts.groupby(["protocol", "corruption"]):
        ref = cell[cell.is_baseline]
        if ref.empty:
            continue
        top = ref[ref.budget == ref.budget.max()]
        target = float(top.final_test_error.mean())
        ref_y = top.groupby("seed").final_test_error.mean().to_numpy(float)
        for method, rows in cell.groupby("method"):
            xs, ys = _grid(rows, x)
            point = crossing(*_curve(xs, ys), target)
            draws = [crossing(*_curve(xs, ys, _draw(rng, len(xs))), float(ref_y[_draw(rng, len(ref_y))].mean()))
                     for _ in range(resamples)]
            low, high, reached = _interval(draws)
            out.append(dict(protocol=protocol, method=method, corruption=corruption, axis=axis,
                            target_error=target, budget=point, low=low, high=high, reached_share=reached,
                            seeds=rows.seed.nunique(), budgets=rows.budget.nunique()))
    return pd.DataFrame(out, columns=[*CELL, "axis", "target_error", "budget", "low", "high", "reached_share",
                                      "seeds", "budgets"])


def seed_matching(pts: pd.DataFrame, axis: str = "backprops") -> pd.DataFrame:
    """Per cell and seed: the budget at which that seed's own curve comes down to the baseline's full-budget error
    (the seed mean, as in `matching_budget`); NaN when it never does within the budgets trained."""
    x = axis_column(axis)
    out = []
    for (protocol, corruption), cell in pts.groupby(["protocol", "corruption"]):
        ref = cell[cell.is_baseline]
        if ref.empty:
            continue
        target = float(ref[ref.budget == ref.budget.max()].final_test_error.mean())
        for (method, seed), rows in cell.groupby(["method", "seed"]):
            out.append(dict(protocol=protocol, method=method, corruption=corruption, seed=seed,
                            budget=crossing(rows[x].to_numpy(float), rows.final_test_error.to_numpy(float), target)))
    return pd.DataFrame(out, columns=[*CELL, "seed", "budget"])


def equal_budget(pts: pd.DataFrame, against: str | None = None, *, seed: int = 0,
                 resamples: int = BOOTSTRAP) -> pd.DataFrame:
    """Per cell and budget given: the method's mean test error minus `against`'s (an arm; the baseline when None) at
    the same budget — a difference of error rates, 0.012 = 1.2 points, negative when the method is better — with a
    bootstrap interval over seeds resampled independently for both. The arms compared are given the same budget in
    the same unit, so the difference is at equal spend."""
    rng = np.random.default_rng(seed)
    out = []
    for (protocol, corruption, budget), cell in pts.groupby(["protocol", "corruption", "budget"]):
        other = cell[cell.is_baseline] if against is None else cell[cell.method == against]
        if other.empty:
            continue
        for method, rows in cell.groupby("method"):
            if method in set(other.method):
                continue
            mine = rows.groupby("seed").final_test_error.mean().to_numpy(float)
            theirs = other.groupby("seed").final_test_error.mean().to_numpy(float)
            diff = mine.mean() - theirs.mean()
            draws = [mine[_draw(rng, len(mine))].mean() - theirs[_draw(rng, len(theirs))].mean()
                     for _ in range(resamples)]
            low, high, _ = _interval(draws)
            out.append(dict(protocol=protocol, method=method, corruption=corruption, budget=budget,
                            against=other.method.iloc[0],
                            difference=float(diff), low=low, high=high, seeds=rows.seed.nunique(),
                            seeds_against=other.seed.nunique()))
    return pd.DataFrame(out, columns=[*CELL, "budget", "against", "difference", "low", "high", "seeds",
                                      "seeds_against"])


# -- over a database (lossaudit sql --query NAME) --------------------------------------------------


def budget_points(con) -> pd.DataFrame:
    return points(run_query(con, "budget_runs"))


def budget_curves(con, axis: str = "backprops") -> pd.DataFrame:
    return curves(budget_points(con), axis)


def budget_match(con, axis: str = "backprops") -> pd.DataFrame:
    return matching_budget(budget_points(con), axis)


def budget_equal(con, against: str | None = None) -> pd.DataFrame:
    return equal_budget(budget_points(con), against)
