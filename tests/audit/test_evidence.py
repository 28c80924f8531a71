"""The audit's verdict lines from the project's budget study: derived from the findings table exactly as documented,
and shipped with the package as the committed findings give them."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossaudit.audit import evidence
from lossaudit.audit.noise import judge, method_verdicts, verdict_rule
from lossaudit.reports.study import read_findings

ROOT = Path(__file__).resolve().parents[2]
NAN = math.nan


def finding(corruption, method, quantity, estimate, low=NAN, high=NAN, seeds=3, against="", budget=NAN,
            baseline=False, arm="budget"):
    return dict(arm=arm, corruption=corruption, method=method, family=method, is_baseline=baseline, against=against,
                quantity=quantity, budget=budget, estimate=estimate, low=low, high=high, seeds=seeds)


def study(speedups: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Findings of a budget arm: per method and setting its speedup_cost (NaN: never matched) and error difference."""
    rows = []
    for corruption in ("none", "random_labels:0.2", "confusable_labels:0.2", "random_labels:0.5", "gaussian:0.5"):
        rows.append(finding(corruption, "sgd", "speedup_cost", 1.0, baseline=True))
        rows.append(finding(corruption, "sgd", "error", 0.3, baseline=True))
        for method, by_cell in speedups.items():
            if corruption not in by_cell:
                continue
            speed = by_cell[corruption]
            rows.append(finding(corruption, method, "speedup_cost", speed, speed - 0.1, speed + 0.1))
            rows.append(finding(corruption, method, "error", 0.32))
            rows.append(finding(corruption, method, "error_difference", 0.02, 0.01, 0.03, against="sgd"))
            rows.append(finding(corruption, method, "error_difference", 0.05, against="sgd", budget=0.5))
            rows.append(finding(corruption, method, "error_difference", -0.01, against="uniform50"))
            rows.append(finding(corruption, method, "speedup", 9.0, arm="paper"))  # another arm: never read
    return pd.DataFrame(rows)


LOSES_AT_CONFUSABLE = {"none": 1.3, "random_labels:0.2": 1.2, "confusable_labels:0.2": NAN, "random_labels:0.5": NAN,
                       "gaussian:0.5": NAN}
NEVER_LOSES = {"none": 1.5, "random_labels:0.2": 1.4, "confusable_labels:0.2": 1.2, "random_labels:0.5": 1.1}
NO_SAVING = {c: NAN for c in LOSES_AT_CONFUSABLE}


def test_the_table_keeps_the_budget_arm_on_clean_and_label_noise_only_with_the_full_budget_difference():
    table = evidence.from_findings(study({"sb50": LOSES_AT_CONFUSABLE}))
    assert list(table.columns) == evidence.COLUMNS
    assert sorted(table.corruption) == ["confusable_labels:0.2", "none", "random_labels:0.2", "random_labels:0.5"]
    row = table.set_index("corruption").loc["random_labels:0.2"]
    assert (row.kind, row.share, row.seeds, bool(row.matched)) == ("random_labels", 0.2, 3, True)
    assert (row.speedup_cost, row.speedup_low, row.speedup_high) == pytest.approx((1.2, 1.1, 1.3))
    assert (row.error_difference, row.difference_low, row.difference_high) == pytest.approx((0.02, 0.01, 0.03))
    assert not table.set_index("corruption").loc["confusable_labels:0.2"].matched
    assert "sgd" not in set(table.method)  # the baseline is what the others are measured against


def test_a_method_loses_at_the_lowest_share_it_did_not_match_and_keeps_up_to_the_share_below():
    table = evidence.from_findings(study({"sb50": LOSES_AT_CONFUSABLE, "ibp30": NEVER_LOSES, "sb33": NO_SAVING}))
    sb50 = evidence.line_of(table, "sb50")
    assert (sb50.lost_at, sb50.kept_to, sb50.lost.kind, sb50.tried) == (0.2, 0.0, "confusable_labels", 0.5)
    ibp = evidence.line_of(table, "ibp30")
    assert math.isnan(ibp.lost_at) and ibp.kept_to == 0.5 and ibp.lost is None
    sb33 = evidence.line_of(table, "sb33")
    assert sb33.lost_at == 0.2 and math.isnan(sb33.kept_to)  # no saving on clean data: nothing kept
    assert evidence.line_of(table, "vr33") is None and evidence.line_of(None, "sb50") is None


@pytest.mark.parametrize("method, share, high, expected", [
    ("sb50", 0.40, 0.45, "unsafe"), ("sb50", 0.20, 0.25, "unsafe"), ("sb50", 0.19, 0.25, "caution"),
    ("sb50", 0.01, 0.029, "safe"), ("sb50", 0.01, 0.03, "caution"),
    ("ibp30", 0.40, 0.45, "safe"), ("ibp30", 0.45, 0.55, "caution"),
    ("sb33", 0.01, 0.02, "safe"), ("sb33", 0.05, 0.10, "caution"), ("sb33", 0.25, 0.3, "unsafe"),
])
def test_the_verdict_follows_the_lines(method, share, high, expected):
    table = evidence.from_findings(study({"sb50": LOSES_AT_CONFUSABLE, "ibp30": NEVER_LOSES, "sb33": NO_SAVING}))
    assert evidence.verdict(evidence.line_of(table, method), share, high) == expected


def replay(ratio_by_method: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "replay": "pick rule", "share_of_picks_on_suspects": 0.4 * r,
                          "suspects_share_of_data": 0.4, "overpick_ratio": r, "selecting_share": 1.0}
                         for m, r in ratio_by_method.items()])


def test_the_audit_verdict_quotes_the_study_and_rests_on_it_not_on_the_pick_ratio():
    table = evidence.from_findings(study({"sb50": LOSES_AT_CONFUSABLE}))
    picks = replay({"sb50": 1.1, "vr33": 2.0})
    verdict, line = judge(0.4, 0.45, 100, picks, "sb50", n_label_canaries=0, advice="", evidence=table)
    assert verdict == "unsafe"  # the fixed rule would say caution: 1.1x is under its 1.5x line
    assert "results/cifar10-budget/findings.csv" in line and "lost at 20% confusable labels" in line
    assert "did not match sgd's error within sgd's budget" in line and "3 seeds" in line
    assert judge(0.4, 0.45, 100, picks, "sb50", n_label_canaries=0, advice="", evidence=None)[0] == "caution"
    per = {v["method"]: v for v in method_verdicts(0.4, 0.45, picks, table)}
    assert per["sb50"]["verdict"] == "unsafe" and "budget study" in per["sb50"]["line"]
    assert per["vr33"]["verdict"] == "unsafe" and "not in the project's study: the fixed rule" in per["vr33"]["line"]
    assert "lowest label-noise share at which sb50 lost" in verdict_rule("sb50", table)
    assert "1.5x" in verdict_rule("sb50", None)


def test_the_packaged_evidence_is_what_the_committed_findings_give():
    findings = ROOT / "results" / "cifar10-budget" / "findings.csv"
    shipped = evidence.load()
    assert shipped is not None, f"{evidence.EVIDENCE} is missing: examples/budget_study.py --evidence writes it"
    expected = evidence.from_findings(read_findings(findings))
    pd.testing.assert_frame_equal(shipped.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False, atol=1e-9)
    assert set(np.unique(shipped.kind)) <= {"none", *evidence.LABEL_NOISE}
