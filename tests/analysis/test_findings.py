"""The findings table (lossaudit.analysis.findings): its intervals, its paired differences, its rivals and its words,
on outcomes whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lossaudit.analysis import findings
from lossaudit.analysis.budget import points

ARMS = {"sgd": ("sgd", 1.0, False, True, False), "sb50": ("sb", 0.5, True, False, False),
        "vr50": ("vr", 0.5, True, False, False), "uniform50": ("uniform", 0.5, False, False, True),
        "uniform33": ("uniform", 0.33, False, False, True)}


def outcomes(errors: dict, seeds=(0, 1, 2), corruption="random_labels:0.5") -> pd.DataFrame:
    """Paper-arm outcomes: errors[method] is a per-seed list of test errors."""
    rows = []
    for method, errs in errors.items():
        family, nominal, loss_based, baseline, control = ARMS[method]
        for seed, err in zip(seeds, errs):
            rows.append(dict(corruption=corruption, method=method, family=family, seed=seed, error=err,
                             nominal_selectivity=nominal, loss_based=loss_based, is_baseline=baseline,
                             is_control=control, speedup_backprops=1.0, speedup_seconds=1.0,
                             corrupted_share=0.6 if loss_based else 0.5, base_rate=0.5,
                             switch_on_share=0.2 if family == "vr" else math.nan))
    return pd.DataFrame(rows)


def test_the_interval_is_the_bootstrap_widened_to_students_t_below_five_seeds():
    v = [0.30, 0.32, 0.37]
    mean, low, high, n = findings.interval(v)
    half = stats.t.ppf(0.95, 2) * np.std(v, ddof=1) / math.sqrt(3)
    assert n == 3 and mean == pytest.approx(np.mean(v))
    assert low == pytest.approx(mean - half) and high == pytest.approx(mean + half)  # t is the wider here
    many = [0.30, 0.32, 0.37, 0.31, 0.35, 0.33]
    m, lo, hi, n = findings.interval(many)
    assert n == 6 and min(many) <= lo < m < hi <= max(many)  # the plain percentile bootstrap
    assert findings.interval([0.3])[1:3] == pytest.approx([math.nan, math.nan], nan_ok=True)
    assert findings.interval([math.nan, None])[3] == 0


def test_error_differences_are_paired_by_seed_against_the_baseline_the_control_and_each_other():
    sgd = [0.40, 0.45, 0.50]  # seed offsets shared by every method: pairing removes them
    table = pd.DataFrame(findings.per_seed("paper", outcomes({
        "sgd": sgd, "sb50": [e + 0.05 for e in sgd], "vr50": [e + 0.01 for e in sgd],
        "uniform50": [e + 0.02 for e in sgd], "uniform33": sgd})))
    diff = table[table.quantity == "error_difference"].set_index(["method", "against"])
    assert diff.loc[("sb50", "sgd"), "estimate"] == pytest.approx(0.05)
    assert diff.loc[("sb50", "sgd"), "high"] - diff.loc[("sb50", "sgd"), "low"] < 1e-9  # no spread left
    assert diff.loc[("sb50", "uniform50"), "estimate"] == pytest.approx(0.03)  # its control: the same selectivity
    assert ("sb50", "uniform33") not in diff.index
    assert diff.loc[("vr50", "sb50"), "estimate"] == pytest.approx(-0.04)  # loss-based methods against each other
    assert diff.loc[("sb50", "vr50"), "estimate"] == pytest.approx(0.04)
    assert ("uniform50", "uniform33") not in diff.index and ("uniform50", "sb50") not in diff.index
    excess = table[(table.quantity == "corrupted_excess") & (table.method == "sb50")].iloc[0]
    assert excess.estimate == pytest.approx(0.1)
    assert table[(table.quantity == "switch_on_share")].method.tolist() == ["vr50"]


def test_budget_speedups_invert_the_matching_budget_and_its_interval():
    budgets = (0.25, 0.5, 0.75, 1.0)
    sgd = [[0.40, 0.32, 0.28, 0.26], [0.42, 0.34, 0.30, 0.28], [0.41, 0.33, 0.29, 0.27]]
    rows = []
    for method, shift in (("sgd", 0.0), ("fast", -0.02)):
        for seed, errs in enumerate(sgd):
            for b, e in zip(budgets, errs):
                rows.append(dict(protocol="p", method=method, family=method, is_baseline=method == "sgd",
                                 is_control=False, loss_based=method != "sgd", nominal_selectivity=1.0,
                                 corruption="none", seed=seed, status="complete", budget=b, spent_backprops_share=b,
                                 spent_cost_share=b, seconds=100 * b, final_test_error=e + shift,
                                 corrupted_share=0.0, base_rate=0.0, switch_on_share=math.nan))
    table = findings.build(pd.DataFrame(), points(pd.DataFrame(rows)))
    fast = findings.lookup(table, "budget", "none", "fast", "speedup")
    assert fast["estimate"] == pytest.approx(1 / 0.75)  # fast's mean curve reaches sgd's 0.27 at 0.75
    assert fast["low"] <= fast["estimate"] <= fast["high"]
    eq = findings.lookup(table, "budget", "none", "fast", "error_difference", against="sgd", budget=0.5)
    assert eq["estimate"] == pytest.approx(-0.02)
    assert table[table.is_baseline].method.unique().tolist() == ["sgd"]
    assert set(table[table.arm == "budget"].quantity) >= {"speedup", "speedup_cost", "speedup_seconds", "error",
                                                           "error_difference"}
    one = findings.build(pd.DataFrame(), points(pd.DataFrame(rows).query("seed == 0")))
    alone = findings.lookup(one, "budget", "none", "fast", "speedup")
    assert alone["seeds"] == 1 and math.isnan(alone["low"]) and math.isnan(alone["high"])  # one curve: no interval
    assert findings.say(alone).endswith("(1 seed: no interval)")


def test_findings_in_words():
    row = dict(arm="paper", quantity="speedup", estimate=1.314, low=1.02, high=1.6, seeds=3)
    assert findings.say(row) == "1.31× (90%: 1.02 to 1.60×, 3 seeds)"
    assert findings.say(row | dict(quantity="error_difference", estimate=0.021, low=0.008, high=0.034)) == \
        "+2.1 points (90%: +0.8 to +3.4, 3 seeds)"
    assert findings.say(row | dict(quantity="corrupted_share", estimate=0.616, low=0.601, high=0.63)) == \
        "61.6% (90%: 60.1 to 63.0%, 3 seeds)"
    assert findings.say(row | dict(estimate=math.nan)) == "never reached the target"
    assert findings.say(row | dict(arm="budget", estimate=math.nan)) == "never matched the full-budget error"
    assert findings.say(row | dict(low=math.nan, high=math.nan, seeds=1)) == "1.31× (1 seed: no interval)"
