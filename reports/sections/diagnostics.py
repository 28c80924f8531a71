"""Each diagnostic a method declares (its runs' method_traits), over training, with the share of steps its switch
was on: shown for any method that declares one, without naming it."""

from __future__ import annotations

import re
from html import escape

import pandas as pd

from lossaudit.reports import figures
from lossaudit.reports.sections.base import Experiment, Section, View, h3, records, table


def draw(rows: pd.DataFrame) -> str:
    """One diagnostic over training per run, with each method's threshold dashed (where it has one); one panel per
    corruption setting. rows: the `diagnostics` analysis for one diagnostic."""
    colours = figures.method_colours(rows.method)

    def panel(ax, part):
        for (method, seed), run in part.groupby(["method", "seed"], sort=False):
            ax.plot(run.backprops, run.value, color=colours[method], lw=1.1, label=f"{method} seed {seed}")
        for method, run in part.groupby("method", sort=False):
            if run.threshold.notna().any():
                ax.axhline(run.threshold.dropna().iloc[0], color=colours[method], ls="--", lw=1)
    return figures.per_setting(rows, panel, xlabel="examples back-propagated", ylabel=str(rows.label.iloc[0]),
                               title=lambda s, part: f"{s} (dashed: threshold)" if part.threshold.notna().any() else s,
                               ncol=1)


class Diagnostics(Section):
    key = "diagnostics"

    def content(self, x: Experiment) -> dict:
        return {"rows": records(x.mine["diagnostics"])}

    def html(self, e: dict, view: View) -> str:
        rows = pd.DataFrame(e["diagnostics"]["rows"])
        out = []
        for key, part in ([] if rows.empty else rows.groupby("diagnostic", sort=False)):
            methods = ", ".join(dict.fromkeys(part.method))
            text = (f"<p class=muted>{escape(methods)}: {escape(str(part.label.iloc[0]))} is "
                    f"{escape(str(part.meaning.iloc[0]))}. Lines: one per run (evenly spaced steps shown).</p>")
            switched = part[part.switch_on.notna()]
            if len(switched):
                on = switched.groupby(["method", "corruption"], sort=False).switch_on.mean().reset_index()
                text += ("<p class=muted>Share of steps with the method's switch on (selecting; off, it trains on "
                         "every candidate):</p>" + table(on.rename(columns={"switch_on": "share_on"})))
            anchor = "diagnostic-" + re.sub(r"[^A-Za-z0-9_-]", "-", str(key))
            out.append(h3(e, anchor, f"{part.label.iloc[0]} over training ({methods})") + text
                       + f"<img class=fig alt='{escape(str(key))} over training' src='{draw(part)}'>")
        return "".join(out)
