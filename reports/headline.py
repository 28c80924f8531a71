"""The study's findings in plain sentences and its budget curves figure: what the study README, the main README's
headline block and the report's budget section say alike (reports.study writes them; reports.content and
reports.html show them), each a pure function of the findings table (analysis.findings).
"""

from __future__ import annotations

import pandas as pd

from lossaudit.analysis import claims as claims_
from lossaudit.analysis import findings as findings_
from lossaudit.reports import figures

CLEAN = "none"


def baseline_name(f: pd.DataFrame) -> str:
    """The baseline's arm (plain training on every example), as the findings name it."""
    return next(iter(f[f.is_baseline.astype(bool)].method), "the baseline")


def _verdict_words(row: dict) -> str:
    level = claims_.side(row, 1.0, "above")
    return {claims_.SUPPORTED: "saves", claims_.CONTRADICTED: "costs more",
            claims_.INCONCLUSIVE: "no clear saving"}[level]


def headline(f: pd.DataFrame) -> list[str]:
    """The study in plain sentences, one per corruption setting: which methods match sgd's full-budget error in less
    cost (scoring forwards charged) and in less wall-clock, each with its interval; from the budget arm only."""
    lines, base = [], baseline_name(f)
    cost = f[(f.arm == "budget") & (f.quantity == "speedup_cost") & ~f.is_baseline.astype(bool)]
    seconds = f[(f.arm == "budget") & (f.quantity == "speedup_seconds") & ~f.is_baseline.astype(bool)]
    for setting in figures.settings_order(cost.corruption):
        parts = []
        for r in cost[cost.corruption == setting].to_dict("records"):
            s = seconds[(seconds.corruption == setting) & (seconds.method == r["method"])]
            wall = findings_.say(s.iloc[0].to_dict()) if len(s) else "not measured"
            if pd.isna(r["estimate"]):
                parts.append(f"{r['method']} never matched {base}'s full-budget error within the budgets trained")
            else:
                parts.append(f"{r['method']} {_verdict_words(r)}: {findings_.say(r)} in cost, {wall} in wall-clock")
        name = "clean data" if setting == CLEAN else setting
        lines.append(f"{name}: " + "; ".join(parts) + ".")
    return lines


def schedule_lines(f: pd.DataFrame) -> list[str]:
    """The paper's speedups beside the budget arm's, per method on clean data: what the epoch schedule adds."""
    out = []
    for m in dict.fromkeys(f[(f.arm == "paper") & (f.quantity == "speedup") & ~f.is_baseline.astype(bool)].method):
        paper = findings_.lookup(f, "paper", CLEAN, m, "speedup")
        own = findings_.lookup(f, "budget", CLEAN, m, "speedup")
        if paper is not None and own is not None:
            out.append(f"- {m}: {findings_.say(paper)} in the paper's protocol; {findings_.say(own)} with its "
                       "schedule spanning its own budget")
    return out


def curves_figure(curves: pd.DataFrame, baseline: str) -> str:
    """Test error at the end of each budget against the cost spent, one panel per setting: the baseline in black,
    its full-budget error dashed (what the others must match); a PNG data URI."""
    others = [m for m in dict.fromkeys(curves.method) if m != baseline]
    colours = figures.method_colours(others) | {baseline: (0, 0, 0)}

    def draw(ax, part):
        for method in [baseline, *others]:
            rows = part[part.method == method].sort_values("x")
            if len(rows):
                ax.plot(rows.x, rows.test_error * 100, marker="o", ms=3, color=colours[method], label=method,
                        lw=2.2 if method == baseline else 1.1, zorder=3 if method == baseline else 2)
        ref = part[part.method == baseline].sort_values("x")
        if len(ref):
            ax.axhline(ref.test_error.iloc[-1] * 100, color="grey", ls="--", lw=0.8)

    return figures.per_setting(curves, draw, xlabel=f"cost spent, share of a full {baseline} run",
                               ylabel="test error (%)")
