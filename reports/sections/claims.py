"""The paper's claims, checked on this experiment's runs: its findings (analysis.findings, the paper's protocol) judged
by analysis.claims, each claim in the paper's words."""

from __future__ import annotations

from html import escape

import pandas as pd

from lossaudit.analysis import claims, findings, metrics
from lossaudit.reports.sections.base import Experiment, Section, View, h3

LEVELS = {claims.SUPPORTED: "pays-off", claims.CONTRADICTED: "does-not-pay-off", claims.INCONCLUSIVE: "no-baseline",
          claims.NOT_MEASURABLE: "no-baseline"}


def experiment_findings(x: Experiment) -> pd.DataFrame:
    """The findings of one experiment's compared runs, as the paper's protocol (seed by seed against the baseline)."""
    summary = metrics.compared(x.data["summary"], x.members)
    paper = findings.paper_outcomes(summary, x.mine["seed_speedups"], metrics.arms(x.members))
    return findings.build(paper, pd.DataFrame())


class Claims(Section):
    key = "claims"

    def content(self, x: Experiment) -> list[dict]:
        from lossaudit.reports.sections.verdicts import budgeted
        if budgeted(x):  # the paper's claims are about its protocol; a budget protocol's are in its own section
            return []
        return [c.to_dict() for c in claims.check(experiment_findings(x)) if c.section == claims.PAPER]

    def html(self, e: dict, view: View) -> str:
        rows = e.get("claims") or []
        if not rows:
            return ""
        body = "".join(f"<tr><td>({escape(r['key'])}) “{escape(r['quote'])}”</td><td>{escape(r['method'])}</td>"
                       f"<td>{escape(r['corruption'])}</td><td>{escape(r['measured'])}</td><td class='"
                       f"{LEVELS.get(r['verdict'], 'no-baseline')}'><strong>{escape(r['verdict'])}</strong></td>"
                       f"<td>{escape(r['why'])}</td></tr>" for r in rows)
        return (h3(e, "claims", "The paper's claims, checked on this data")
                + "<p class=muted>Each sentence is the paper's; each row judges it for one method and setting on the "
                  "90% interval over seeds of the quantity it is about (speedups seed by seed against the baseline's run "
                  "of the same seed; errors at the lowest validation error where a validation split ran, else at the end): "
                  "supported when the interval lies wholly on the sentence's side, contradicted when wholly on the "
                  "other, inconclusive when it straddles; not measurable when the mechanism under test did not "
                  "operate.</p><table><tr><th>claim</th><th>method</th><th>setting</th><th>measured</th>"
                  "<th>verdict</th><th>why</th></tr>" + body + "</table>")
