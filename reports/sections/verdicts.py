"""Verdict: does loss-based selection pay off here, per corruption setting (reports.verdict)."""

from __future__ import annotations

from html import escape

from lossaudit.reports.sections.base import Experiment, Section, View, h3
from lossaudit.reports.verdict import Verdict, verdicts


def budgeted(x: Experiment) -> bool:
    """Whether the experiment is one budget of a budget protocol (its runs stop at a share of a full sgd run)."""
    pts = x.data.get("budget_points")
    return pts is not None and x.eid in set(pts.experiment_id)


class Verdicts(Section):
    key = "verdicts"

    def content(self, x: Experiment) -> list[dict]:
        if budgeted(x):  # one point of each method's budget curve: judged with the protocol's other budgets
            return [Verdict(x.eid, "all", "no-baseline", "One budget of a budget protocol: judged at the top of the "
                            "report (Budget protocol), where every budget of it is read together; Table 1's target "
                            "inside one budget says nothing about what a method saves.", ()).to_dict()]
        return [v.to_dict() for v in verdicts(x.mine["table1"], x.mine["summary"], x.members,
                                              x.mine["seed_speedups"])]

    def html(self, e: dict, view: View) -> str:
        items = []
        for v in e["verdicts"]:
            details = "".join(f"<li>{escape(d)}</li>" for d in v["details"])
            items.append(f"<div class='verdict {escape(v['level'])}'><strong>{escape(v['headline'])}</strong>"
                         f"{f'<ul>{details}</ul>' if details else ''}</div>")
        if not items:
            items = ["<p class=muted>No compared run here was evaluated on a test split, so there is no speedup to "
                     "judge.</p>"]
        return h3(e, "verdict", "Verdict") + "".join(items)
