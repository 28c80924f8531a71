"""The paper's claims, checked on this experiment's runs (analysis.claims)."""

from __future__ import annotations

from html import escape

from lossaudit.analysis import claims, metrics
from lossaudit.reports.sections.base import Experiment, Section, View, h3

LEVELS = {"supported": "pays-off", "not supported": "does-not-pay-off", "not measurable": "no-baseline"}


class Claims(Section):
    key = "claims"

    def content(self, x: Experiment) -> list[dict]:
        runs = claims.per_run(metrics.compared(x.data["summary"], x.members), x.mine["seed_speedups"])
        return [c.to_dict() for c in claims.check(runs)]

    def html(self, e: dict, view: View) -> str:
        rows = e.get("claims") or []
        if not rows:
            return ""
        body = "".join(f"<tr><td>{escape(r['claim'])}</td><td>{escape(r['measured'])}</td><td class='"
                       f"{LEVELS.get(r['verdict'], 'no-baseline')}'><strong>{escape(r['verdict'])}</strong></td>"
                       f"<td>{escape(r['why'])}</td></tr>" for r in rows)
        return (h3(e, "claims", "The paper's claims, checked on this data")
                + "<p class=muted>Each quantity as mean ± standard deviation over seeds (Table 1 speedups seed by "
                  "seed, against the baseline's curve of the same seed); a claim is supported only when the whole "
                  "band lies on its side.</p><table><tr><th>claim</th><th>measured</th><th>verdict</th><th>why</th>"
                  "</tr>" + body + "</table>")
