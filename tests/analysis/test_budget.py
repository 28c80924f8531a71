"""The budget protocol's analysis on curves whose answers are known: crossings, matching budgets, equal-budget
differences and their bootstrap intervals."""

import math

import numpy as np
import pandas as pd
import pytest

from lossaudit.analysis.budget import crossing, curves, equal_budget, matching_budget, points
from lossaudit.core.errors import UserError

BUDGETS = (0.25, 0.5, 0.75, 1.0)


def _runs(method, errors_by_seed, *, corruption="none", cost_extra=0.0):
    """Budget-protocol rows: errors_by_seed[s][i] is the final error of seed s at BUDGETS[i]."""
    rows = []
    for seed, errors in enumerate(errors_by_seed):
        for budget, err in zip(BUDGETS, errors):
            rows.append(dict(protocol="p", method=method, is_baseline=method == "sgd", corruption=corruption,
                             seed=seed, status="complete",
                             budget=budget, spent_backprops_share=budget, spent_cost_share=budget * (1 + cost_extra),
                             seconds=100 * budget * (1 + cost_extra), final_test_error=err, corrupted_share=0.0,
                             base_rate=0.0))
    return pd.DataFrame(rows)


SGD = [[0.40, 0.32, 0.28, 0.26], [0.42, 0.34, 0.30, 0.28], [0.41, 0.33, 0.29, 0.27]]  # full-budget mean: 0.27


def test_crossing_interpolates_between_the_points_around_the_first_crossing():
    x, y = np.array([0.25, 0.5, 0.75, 1.0]), np.array([0.4, 0.3, 0.2, 0.1])
    assert crossing(x, y, 0.25) == pytest.approx(0.625)
    assert crossing(x, y, 0.5) == 0.25  # already there at the first budget
    assert math.isnan(crossing(x, y, 0.05))  # never reached within the budgets trained
    assert crossing(x[::-1], y[::-1], 0.25) == pytest.approx(0.625)  # order of the points does not matter


def test_sgd_matches_itself_at_the_full_budget_and_a_better_method_earlier():
    better = [[e - 0.02 for e in row] for row in SGD]  # 2 points better at every budget
    pts = points(pd.concat([_runs("sgd", SGD), _runs("fast", better)]))
    m = matching_budget(pts, resamples=300).set_index("method")
    assert m.loc["sgd", "budget"] == pytest.approx(1.0)
    # fast's mean curve: 0.39, 0.31, 0.27, 0.25 → reaches sgd's 0.27 exactly at 0.75
    assert m.loc["fast", "budget"] == pytest.approx(0.75)
    assert m.loc["fast", "low"] <= 0.75 <= m.loc["fast", "high"]
    assert m.loc["fast", "reached_share"] == 1.0


def test_a_method_that_never_reaches_sgd_has_no_matching_budget_and_says_how_often_it_would():
    worse = [[e + 0.05 for e in row] for row in SGD]
    m = matching_budget(points(pd.concat([_runs("sgd", SGD), _runs("slow", worse)])), resamples=300)
    slow = m.set_index("method").loc["slow"]
    assert math.isnan(slow.budget) and math.isnan(slow.low) and slow.reached_share < 0.5


def test_the_cost_axis_charges_scoring_so_a_method_matching_in_backprops_needs_more_cost():
    better = [[e - 0.02 for e in row] for row in SGD]
    pts = points(pd.concat([_runs("sgd", SGD), _runs("sb", better, cost_extra=0.4)]))
    by_backprops = matching_budget(pts, "backprops", resamples=50).set_index("method").loc["sb", "budget"]
    by_cost = matching_budget(pts, "cost", resamples=50).set_index("method").loc["sb", "budget"]
    by_seconds = matching_budget(pts, "seconds", resamples=50).set_index("method").loc["sb", "budget"]
    assert by_backprops == pytest.approx(0.75) and by_cost == pytest.approx(0.75 * 1.4)
    assert by_seconds == pytest.approx(0.75 * 1.4)  # seconds ÷ sgd's full-run seconds (100)
    with pytest.raises(UserError, match="valid: backprops, cost, seconds"):
        matching_budget(pts, "passes")


def test_equal_budget_differences_have_the_right_sign_and_an_interval_around_them():
    better = [[e - 0.02 for e in row] for row in SGD]
    eq = equal_budget(points(pd.concat([_runs("sgd", SGD), _runs("fast", better)])), resamples=500)
    assert list(eq.budget) == list(BUDGETS)
    assert np.allclose(eq.difference, -0.02)
    assert (eq.low <= eq.difference).all() and (eq.difference <= eq.high).all()
    assert (eq.high < 0).all()  # seeds share their offsets here: every draw is better


def test_curves_average_over_seeds_per_budget():
    c = curves(points(_runs("sgd", SGD)))
    assert list(c.test_error) == pytest.approx([0.41, 0.33, 0.29, 0.27])
    assert (c.seeds == 3).all()


def test_incomplete_runs_are_left_out():
    runs = _runs("sgd", SGD)
    runs.loc[0, "status"] = "interrupted"
    assert len(points(runs)) == len(runs) - 1


def test_a_budgeted_grid_through_the_command_line_into_duckdb_and_back(tmp_path):
    """Real runs (digits, mlp): a grid over two budgets, read by the named query and the analyses by name."""
    import duckdb
    from typer.testing import CliRunner

    from lossaudit.analysis.analyses import ANALYSES
    from lossaudit.cli import app
    from lossaudit.core.queries import run_query

    db = tmp_path / "b.duckdb"
    out = CliRunner().invoke(app, ["run", "--method", "sgd,sb50,uniform50", "--corruption", "none", "--seeds", "0,1",
                                   "--budget", "0.5,1", "--schedule", "linear", "--epochs", "4", "--model", "mlp",
                                   "--train-size", "400", "--device", "cpu", "--db", str(db)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    with duckdb.connect(str(db), read_only=True) as con:
        runs = run_query(con, "budget_runs")
        match = ANALYSES.lookup("budget_match").function(con)
        equal = ANALYSES.lookup("budget_equal").function(con, against="uniform50")
    assert len(runs) == 12 and set(runs.budget) == {0.5, 1.0} and runs.protocol.nunique() == 1
    full = runs.full_backprops.iloc[0]  # 4 epochs × 400 examples
    for r in runs.itertuples():  # each stopped at its budget, at most one round of picks over
        assert r.budget * full <= r.spent_backprops < r.budget * full + 400
    sb = runs[runs.method == "sb50"]
    assert (sb.spent_cost == sb.spent_backprops).all()  # no forward cost given: backprops only
    assert (runs[runs.method == "uniform50"].forwards_scoring == 0).all()
    assert set(match.method) == {"sgd", "sb50", "uniform50"}
    assert match.set_index("method").loc["sgd", "budget"] == pytest.approx(1.0)
    assert set(equal.method) == {"sgd", "sb50"} and (equal.against == "uniform50").all()
