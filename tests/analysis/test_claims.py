"""The paper's claims and the project's questions judged on findings (lossaudit.analysis.claims): each verdict from
where the interval lies, on tables whose answers are known."""

import math

import pandas as pd
import pytest

from lossaudit.analysis import claims
from lossaudit.analysis.findings import COLUMNS

FAMILY = {"sgd": "sgd", "sb50": "sb", "sb33": "sb", "vr50": "vr", "sbe50": "sbe", "uniform50": "uniform"}


def row(method, quantity, estimate, low, high, *, corruption="none", against="", budget=math.nan, arm="paper"):
    return dict(arm=arm, corruption=corruption, method=method, family=FAMILY[method], is_baseline=method == "sgd",
                against=against,
                quantity=quantity, budget=budget, estimate=estimate, low=low, high=high, seeds=3)


def table(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def verdicts(frame, key):
    return {(c.method, c.corruption): c.verdict for c in claims.check(frame) if c.key == key}


def test_side_reads_where_the_interval_lies():
    r = dict(low=1.1, high=1.5)
    assert claims.side(r, 1.0, "above") == claims.SUPPORTED
    assert claims.side(r, 1.0, "below") == claims.CONTRADICTED
    assert claims.side(dict(low=0.9, high=1.5), 1.0, "above") == claims.INCONCLUSIVE
    assert claims.side(dict(low=math.nan, high=math.nan), 1.0, "above") == claims.INCONCLUSIVE


THE_PAPERS_STORY = table(
    row("sgd", "error", 0.3, 0.29, 0.31), row("sb50", "speedup", 1.8, 1.4, 2.2), row("vr50", "speedup", 1.3, 1.1, 1.5),
    row("vr50", "switch_on_share", 0.8, 0.7, 0.9),
    row("sb50", "speedup", 0.6, 0.5, 0.7, corruption="random_labels:0.5"),
    row("sb50", "error_difference", 0.05, 0.03, 0.07, corruption="random_labels:0.5", against="sgd"),
    row("vr50", "speedup", 0.9, 0.8, 0.97, corruption="random_labels:0.5"),
    row("vr50", "error_difference", 0.01, 0.0, 0.02, corruption="random_labels:0.5", against="sgd"),
    row("vr50", "switch_on_share", 0.7, 0.6, 0.8, corruption="random_labels:0.5"),
    row("vr50", "error_difference", -0.04, -0.06, -0.02, corruption="random_labels:0.5", against="sb50"),
    row("sb50", "corrupted_excess", 0.12, 0.1, 0.14, corruption="random_labels:0.5"),
    row("sb50", "corrupted_share", 0.62, 0.6, 0.64, corruption="random_labels:0.5"),
    row("vr50", "corrupted_excess", 0.05, 0.02, 0.08, corruption="random_labels:0.5"),
    row("vr50", "corrupted_share", 0.55, 0.52, 0.58, corruption="random_labels:0.5"),
    row("sbe50", "error_difference", -0.08, -0.1, -0.06, corruption="random_labels:0.5", against="sb50"),
    row("sbe50", "error_difference", 0.01, 0.005, 0.02, corruption="gaussian:0.5", against="sb50"),
)


def test_the_papers_story_supports_each_of_its_sentences():
    checked = claims.check(THE_PAPERS_STORY)
    by_key = {}
    for c in checked:
        by_key.setdefault(c.key, set()).add(c.verdict)
    assert by_key == {k: {claims.SUPPORTED} for k in ("a", "b", "c", "d", "e1", "e2")}
    assert all(c.quote == claims.QUOTES[c.key] for c in checked)
    assert all(c.section == claims.PAPER for c in checked)  # no budgets: the project's questions are not asked


def test_the_other_side_contradicts_and_a_straddle_is_inconclusive():
    t = THE_PAPERS_STORY.copy()
    t.loc[(t.method == "sb50") & (t.quantity == "speedup") & (t.corruption == "none"), ["estimate", "low", "high"]] \
        = [0.8, 0.7, 0.9]
    t.loc[(t.method == "vr50") & (t.quantity == "speedup") & (t.corruption == "none"), ["estimate", "low", "high"]] \
        = [1.1, 0.9, 1.3]
    assert verdicts(t, "a") == {("sb50", "none"): claims.CONTRADICTED, ("vr50", "none"): claims.INCONCLUSIVE}


def test_vr_selecting_in_under_half_its_steps_is_not_measurable_on_its_sampling():
    t = THE_PAPERS_STORY.copy()
    t.loc[(t.method == "vr50") & (t.quantity == "switch_on_share"), ["estimate", "low", "high"]] = [0.13, 0.1, 0.16]
    assert verdicts(t, "a")[("vr50", "none")] == claims.NOT_MEASURABLE
    assert verdicts(t, "d")[("vr50", "random_labels:0.5")] == claims.NOT_MEASURABLE
    assert verdicts(t, "d")[("sb50", "random_labels:0.5")] == claims.SUPPORTED
    (c,) = [c for c in claims.check(t) if c.key == "a" and c.method == "vr50"]
    assert "13% of its steps" in c.why


def test_b_judges_a_method_without_a_clean_speedup_on_its_error_alone():
    t = THE_PAPERS_STORY.copy()
    t.loc[(t.method == "sb50") & (t.quantity == "speedup") & (t.corruption == "none"), ["estimate", "low", "high"]] \
        = [1.1, 0.9, 1.3]  # no clean speedup established
    t.loc[(t.method == "sb50") & (t.quantity == "error_difference") & (t.against == "sgd"),
          ["estimate", "low", "high"]] = [-0.01, -0.02, 0.01]  # and no worse error
    (c,) = [c for c in claims.check(t) if c.key == "b" and c.method == "sb50"]
    assert c.verdict == claims.INCONCLUSIVE and "no clean speedup to lose" in c.why


def test_b_is_contradicted_by_a_method_that_keeps_its_speedup_and_sgds_error():
    t = THE_PAPERS_STORY.copy()
    t.loc[(t.method == "sb50") & (t.quantity == "speedup") & (t.corruption != "none"), ["estimate", "low", "high"]] \
        = [1.5, 1.2, 1.8]
    t.loc[(t.method == "sb50") & (t.quantity == "error_difference") & (t.against == "sgd"),
          ["estimate", "low", "high"]] = [-0.01, -0.02, 0.005]
    assert verdicts(t, "b")[("sb50", "random_labels:0.5")] == claims.CONTRADICTED


def test_claims_without_the_runs_they_need_say_what_they_need():
    checked = claims.check(table(row("sb50", "speedup", 1.8, 1.4, 2.2)))
    missing = {c.key: c for c in checked if c.verdict == claims.NOT_MEASURABLE}
    assert set(missing) == {"b", "c", "d", "e1", "e2"}
    assert missing["e2"].why == "needs entropy-SB and sb on Gaussian images"


def test_the_projects_questions_read_the_budget_arm_at_equal_budget():
    t = table(
        row("sb50", "error_difference", -0.02, -0.03, -0.01, against="uniform50", budget=0.5, arm="budget"),
        row("sb50", "error_difference", 0.01, -0.01, 0.03, against="sgd", budget=0.5, arm="budget"),
        row("uniform50", "error_difference", 0.03, 0.02, 0.04, against="sgd", budget=0.5, arm="budget"),
        row("sb50", "speedup_seconds", 0.8, 0.7, 0.9, arm="budget"),
        row("sgd", "speedup_seconds", 1.0, 0.95, 1.05, arm="budget"))
    own = {(c.key, c.method): c for c in claims.check(t) if c.section == claims.OWN}
    assert own[("f", "sb50")].verdict == claims.SUPPORTED and own[("f", "sb50")].budget == 0.5
    assert own[("g", "sb50")].verdict == claims.INCONCLUSIVE
    assert own[("h", "sb50")].verdict == claims.CONTRADICTED
    assert ("g", "uniform50") not in own and ("h", "sgd") not in own  # the control and baseline are the yardsticks
    assert claims.summary(claims.check(t)).set_index(["key", "arm"]).loc[("f", "budget"), claims.SUPPORTED] == 1
