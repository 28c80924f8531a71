"""Per-class breakdown of one run per corruption setting (the gallery's run)."""

from __future__ import annotations

from html import escape

import pandas as pd

from lossaudit.reports.sections.base import Experiment, Section, View, h3, records, table


class PerClass(Section):
    key = "per_class"

    def content(self, x: Experiment) -> list[dict]:
        out = []
        for setting, run in x.representatives("gallery"):
            rows = x.mine["per_class"][x.mine["per_class"].run_id == run.run_id]
            out.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method,
                        "rows": records(rows.drop(columns=["run_id", "method", "corruption", "seed"]))})
        return out

    def html(self, e: dict, view: View) -> str:
        parts = [h3(e, "per-class", "Per-class breakdown")]
        for p in e["per_class"]:
            parts.append(f"<h4>{escape(p['corruption'])}: {escape(p['method'])} (run {p['run_id']})</h4>")
            parts.append(table(pd.DataFrame(p["rows"])))
        return "".join(parts)
