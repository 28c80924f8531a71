"""Alerts: plain one-line warnings (reports.verdict.alerts)."""

from __future__ import annotations

from html import escape

from lossaudit.reports.sections.base import Experiment, Section, View, h3
from lossaudit.reports.verdict import alerts


class Alerts(Section):
    key = "alerts"

    def content(self, x: Experiment) -> list[str]:
        return alerts(x.mine["table1"], x.mine["summary"], x.members).get(x.eid, [])

    def html(self, e: dict, view: View) -> str:
        if not e["alerts"]:
            return h3(e, "alerts", "Alerts") + "<p class=muted>None.</p>"
        return (h3(e, "alerts", "Alerts") + "<ul class=alerts>" + "".join(f"<li>{escape(a)}</li>" for a in e["alerts"])
                + "</ul>")
