"""The study's findings: one table from which every output that judges a method is written (the claims, the report's
headlines, the study README, the main README's headline), so that they cannot disagree.

Each row is one measured quantity of one method in one setting, with its 90% interval over seeds:

- arm: `paper` (the paper's protocol: an epoch schedule, Table 1's speedup to 1.2 × sgd's best error) or `budget`
  (each method trained to shares of a full sgd run, its schedule spanning its own budget: analysis.budget);
- corruption, method, family (the registry method the arm resolves to), against (the arm compared with, or '');
- quantity, budget (the share of a full run, for the budget arm's equal-budget rows; NaN otherwise), estimate,
  low, high, seeds.

Quantities (`QUANTITIES` says each in words): `speedup` (backprops), `speedup_cost`, `speedup_seconds`, `error`,
`error_difference` (the method's error minus `against`'s, seed by seed where both ran that seed),
`corrupted_excess` (corrupted share of backprops minus the base rate), `corrupted_share`, `switch_on_share`.

Intervals: the percentile bootstrap of the seed mean (seeds resampled with replacement, 2,000 draws), widened to at
least the Student-t interval of the same level when fewer than 5 seeds ran: the bootstrap of 3 values has only 10
distinct resamples and understates the spread. The budget arm's speedups are 1 ÷ the budget at which a method's
seed-mean curve matches sgd's full-budget error (analysis.budget.matching_budget), with that interval inverted.

Pure pandas: the outcomes come from metrics (paper arm) and analysis.budget (budget arm); see `from_database`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from lossaudit.analysis import budget as budgets
from lossaudit.analysis import metrics
from lossaudit.core.errors import UserError, choices
from lossaudit.core.queries import run_query

INTERVAL = 0.90
BOOTSTRAP = 2000
FEW_SEEDS = 5  # below this many seeds the interval is widened to Student-t's
COLUMNS = ["arm", "corruption", "method", "family", "is_baseline", "against", "quantity", "budget", "estimate", "low", "high",
           "seeds"]
QUANTITIES = {
    "speedup": "the baseline's backprops to its target ÷ the method's (paper: Table 1's target, seed by seed against "
               "the baseline's run of the same seed; budget: 1 ÷ the budget in backprops at which the method matches "
               "the baseline's full-budget error)",
    "speedup_cost": "as speedup, with scoring forwards charged (budget arm: the budget in cost)",
    "speedup_seconds": "as speedup, in training seconds",
    "error": "test error (paper: at the lowest validation error, else at the end; budget: at the end of the full "
             "budget)",
    "error_difference": "the method's test error minus `against`'s, in error-rate units (0.01 = 1 point); negative "
                        "is better",
    "corrupted_share": "share of the method's backprops spent on corrupted examples",
    "corrupted_excess": "corrupted share of backprops minus the share of corrupted examples in the data",
    "switch_on_share": "share of steps in which a method with a switch selected",
}


def interval(values, *, seed: int = 0, resamples: int = BOOTSTRAP) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite `values` (one per seed): the percentile bootstrap of the mean, widened to at
    least the Student-t interval when n < FEW_SEEDS; NaN bounds for one value, all NaN for none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    n = len(v)
    if not n:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    draws = np.random.default_rng(seed).choice(v, size=(resamples, n)).mean(axis=1)
    tail = (1 - INTERVAL) / 2 * 100
    low, high = float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))
    if n < FEW_SEEDS:
        half = float(stats.t.ppf(1 - (1 - INTERVAL) / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
        low, high = min(low, mean - half), max(high, mean + half)
    return mean, low, high, n


def _row(arm, cell, method, quantity, values, against="", budget=math.nan) -> dict:
    est, low, high, n = interval(values)
    return dict(arm=arm, corruption=cell, method=method, family=None, is_baseline=False, against=against,
                quantity=quantity,
                budget=budget, estimate=est, low=low, high=high, seeds=n)


def _paired(a: pd.DataFrame, b: pd.DataFrame, column: str) -> np.ndarray:
    """a's column minus b's, seed by seed over the seeds both ran."""
    joined = a[["seed", column]].merge(b[["seed", column]], on="seed", suffixes=("_a", "_b"))
    return (joined[f"{column}_a"] - joined[f"{column}_b"]).to_numpy(float)


def traits(frame: pd.DataFrame) -> pd.DataFrame:
    """Per arm (`method`): family, loss_based, is_baseline, is_control, nominal_selectivity (its runs' traits)."""
    return (frame.groupby("method", sort=False)
            .agg(family=("family", "first"), loss_based=("loss_based", "first"), is_baseline=("is_baseline", "first"),
                 is_control=("is_control", "first"), nominal_selectivity=("nominal_selectivity", "first")))


def rivals(info: pd.DataFrame, method: str) -> list[str]:
    """The arms a method's error is compared with: the baseline, its uniform control (same nominal selectivity) and,
    for a loss-based method, every other loss-based arm (the paper compares its methods with each other)."""
    me = info.loc[method]
    out = [m for m in info.index[info.is_baseline] if m != method]
    if me.loss_based and not pd.isna(me.nominal_selectivity):
        out += [m for m in info.index[info.is_control]
                if abs(info.loc[m].nominal_selectivity - me.nominal_selectivity) <= metrics.CONTROL_TOLERANCE]
    if me.loss_based:
        out += [m for m in info.index[info.loss_based.astype(bool)] if m != method]
    return list(dict.fromkeys(out))


def per_seed(arm: str, outcomes: pd.DataFrame) -> list[dict]:
    """The rows read seed by seed from one arm's outcomes (one row per corruption, method and seed with error,
    corrupted_share, base_rate, switch_on_share and, for the paper arm, speedup_<axis>)."""
    rows, info = [], traits(outcomes)
    for (cell, method), mine in outcomes.groupby(["corruption", "method"], sort=False):
        if arm == "paper":
            for quantity, column in (("speedup", "speedup_backprops"), ("speedup_seconds", "speedup_seconds")):
                rows.append(_row(arm, cell, method, quantity, mine[column]))
        rows.append(_row(arm, cell, method, "error", mine.error))
        if mine.base_rate.gt(0).any() and mine.corrupted_share.notna().any():
            rows.append(_row(arm, cell, method, "corrupted_share", mine.corrupted_share))
            rows.append(_row(arm, cell, method, "corrupted_excess", mine.corrupted_share - mine.base_rate))
        if mine.switch_on_share.notna().any():
            rows.append(_row(arm, cell, method, "switch_on_share", mine.switch_on_share))
        setting = outcomes[outcomes.corruption == cell]
        for other in rivals(info, method):
            theirs = setting[setting.method == other]
            if len(theirs):
                rows.append(_row(arm, cell, method, "error_difference", _paired(mine, theirs, "error"), against=other))
    return rows


def paper_outcomes(summary: pd.DataFrame, speeds: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """Per (corruption, method, seed) of the paper arm: error (at the lowest validation error where a validation
    split ran, else at the end — never the best on the test split), speedups, corrupted share, base rate, switch."""
    keys = ["experiment_id", "corruption", "method", "seed"]
    out = summary.merge(speeds[[*keys, *[f"speedup_{a}" for a in metrics.AXES]]], on=keys, how="left")
    out = out.merge(info[["experiment_id", "method", "loss_based", "is_baseline", "is_control"]],
                    on=["experiment_id", "method"], how="left")
    out["error"] = out.selected_test_error.fillna(out.final_test_error)
    return out


def budget_outcomes(pts: pd.DataFrame) -> pd.DataFrame:
    """Per (corruption, method, seed) of the budget arm at its largest budget: its test error at the end, corrupted
    share and base rate."""
    top = pts[pts.budget == pts.groupby(["protocol", "corruption"]).budget.transform("max")]
    return top.assign(error=top.final_test_error)


def budget_speedups(pts: pd.DataFrame) -> list[dict]:
    """1 ÷ the matching budget on each axis, its interval inverted. The interval is matching_budget's bootstrap,
    widened with fewer than FEW_SEEDS seeds to at least the Student-t interval of the seeds' own matching budgets
    (analysis.budget.seed_matching); none from one seed. A curve that never reaches sgd's error within the budgets
    trained has no estimate: it needs more than they gave."""
    rows = []
    for quantity, axis in (("speedup", "backprops"), ("speedup_cost", "cost"), ("speedup_seconds", "seconds")):
        per_seed_budget = budgets.seed_matching(pts, axis)
        for r in budgets.matching_budget(pts, axis).itertuples():
            low, high = r.low, r.high
            mine = per_seed_budget[(per_seed_budget.method == r.method) & (per_seed_budget.corruption == r.corruption)]
            _, t_low, t_high, n = interval(mine.budget)
            if r.seeds < 2:  # one curve: a bootstrap over it has no spread to show, so no interval
                low = high = math.nan
            elif n >= 2 and n < FEW_SEEDS and np.isfinite(r.budget):
                half = (t_high - t_low) / 2
                floor = pts[(pts.method == r.method) & (pts.corruption == r.corruption)][
                    budgets.axis_column(axis)].min()  # no curve crosses before its first point
                low = max(np.nanmin([low, r.budget - half]), floor)
                high = np.nanmax([high, r.budget + half])
            rows.append(dict(arm="budget", corruption=r.corruption, method=r.method, family=None, is_baseline=False,
                             against="",
                             quantity=quantity, budget=math.nan, estimate=_inverse(r.budget), low=_inverse(high),
                             high=_inverse(low), seeds=r.seeds))
    return rows


def _inverse(x: float) -> float:
    """1 / x for a positive budget; NaN otherwise."""
    if x is None or not np.isfinite(x) or x <= 0:
        return math.nan
    return 1 / x


def equal_budget_rows(pts: pd.DataFrame) -> list[dict]:
    """The budget arm's error difference at every budget given, against the baseline and the method's control."""
    rows, info = [], traits(pts)
    for (cell, budget), setting in pts.groupby(["corruption", "budget"]):
        for method, mine in setting.groupby("method", sort=False):
            for other in rivals(info, method):
                theirs = setting[setting.method == other]
                if len(theirs) and (info.loc[other].is_baseline or info.loc[other].is_control):
                    rows.append(_row("budget", cell, method, "error_difference",
                                     _paired(mine.assign(error=mine.final_test_error),
                                             theirs.assign(error=theirs.final_test_error), "error"),
                                     against=other, budget=float(budget)))
    return rows


def build(paper: pd.DataFrame, pts: pd.DataFrame) -> pd.DataFrame:
    """The findings table from the paper arm's outcomes (`paper_outcomes`) and the budget arm's points
    (analysis.budget.points)."""
    rows = per_seed("paper", paper) if len(paper) else []
    families = dict(zip(paper.method, paper.family)) if len(paper) else {}
    baselines = set(paper[paper.is_baseline.astype(bool)].method) if len(paper) else set()
    if len(pts):
        rows += per_seed("budget", budget_outcomes(pts)) + budget_speedups(pts) + equal_budget_rows(pts)
        families |= dict(zip(pts.method, pts.family))
        baselines |= set(pts[pts.is_baseline.astype(bool)].method)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["family"] = out.method.map(families)
    out["is_baseline"] = out.method.isin(baselines).astype(bool)
    return out


def from_database(con) -> pd.DataFrame:
    """The findings of one study's database (`from_frames` of its runs)."""
    return from_frames(metrics.run_standing(con), metrics.run_summary(con), metrics.eval_curves(con),
                       run_query(con, "budget_runs"))


def from_frames(standing: pd.DataFrame, summary: pd.DataFrame, evals: pd.DataFrame,
                budget_runs: pd.DataFrame) -> pd.DataFrame:
    """The findings of one study from its runs (metrics.run_standing, metrics.run_summary, metrics.eval_curves and
    the query budget_runs; from a database or a ledger, analysis.ledger): the unbudgeted runs as the paper arm (one
    experiment), the budgeted ones as the budget arm (one protocol: the same experiment at several budgets)."""
    budget_runs = budget_runs.sort_values(["protocol", "method", "corruption", "budget", "seed"], kind="stable")
    pts = budgets.points(budget_runs)  # in the query's order, whatever order the runs came in
    budgeted = set(budget_runs.experiment_id)
    summary = metrics.compared(summary, standing)
    summary = summary[~summary.experiment_id.isin(budgeted)]
    for what, names in (("unbudgeted experiments", set(summary.experiment)), ("budget protocols", set(pts.protocol))):
        if len(names) > 1:
            raise UserError(f"the findings read one study, but these runs hold {len(names)} {what}: "
                            f"{choices(sorted(names))}; put each study in a database (or ledger) of its own")
    info = metrics.arms(standing[standing.standing == "compared"])
    ev = metrics.compared(evals, standing)
    ev = ev[~ev.experiment_id.isin(budgeted)]
    paper = paper_outcomes(summary, metrics.seed_speedups_of(ev, metrics.table1_of(ev, standing)), info)
    return build(paper, pts)


# -- in words: the one formatter every output uses -------------------------------------------------


def _num(x: float, quantity: str, unit: bool = True) -> str:
    if quantity.startswith("speedup"):
        return f"{x:.2f}" + ("×" if unit else "")
    if quantity in ("error_difference", "corrupted_excess"):
        return f"{x * 100:+.1f}" + (" points" if unit else "")
    return f"{x * 100:.1f}" + ("%" if unit else "")


def say(row) -> str:
    """A finding in words: its estimate and 90% interval over seeds, e.g. "1.31× (90%: 1.02 to 1.60×, 3 seeds)" or
    "+2.1 points (90%: +0.8 to +3.4, 3 seeds)"; a speedup never reached says so."""
    q = row["quantity"]
    if pd.isna(row["estimate"]):
        if q.startswith("speedup"):
            return "never reached the target" if row["arm"] == "paper" else "never matched the full-budget error"
        return "not measured"
    text = _num(row["estimate"], q)
    seeds = f"{int(row['seeds'])} seed" + ("s" if row["seeds"] != 1 else "")
    if pd.isna(row["low"]) or pd.isna(row["high"]):
        return f"{text} ({seeds}: no interval)"
    tail = "" if q in ("error_difference", "corrupted_excess") else _num(row["high"], q)[-1]
    return f"{text} (90%: {_num(row['low'], q, False)} to {_num(row['high'], q, False)}{tail}, {seeds})"


def lookup(table: pd.DataFrame, arm: str, corruption: str, method: str, quantity: str, against: str = "",
           budget: float = math.nan):
    """The one finding matching the keys (a row as a dict), or None."""
    hit = table[(table.arm == arm) & (table.corruption == corruption) & (table.method == method)
                & (table.quantity == quantity) & (table.against == against)]
    hit = hit[hit.budget.isna()] if math.isnan(budget) else hit[np.isclose(hit.budget, budget)]
    return None if hit.empty else hit.iloc[0].to_dict()
