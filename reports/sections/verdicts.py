"""Verdict: does loss-based selection pay off here, per corruption setting (reports.verdict)."""

from __future__ import annotations

from html import escape

from lossaudit.reports.sections.base import Experiment, Section, View, h3
from lossaudit.reports.verdict import verdicts


class Verdicts(Section):
    key = "verdicts"

    def content(self, x: Experiment) -> list[dict]:
        return [v.to_dict() for v in verdicts(x.mine["table1"], x.mine["summary"], x.members)]

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
