"""The corrupted share of backprops over training against the base rate (the paper's Figure 3)."""

from __future__ import annotations

import pandas as pd

from lossaudit.reports import figures
from lossaudit.reports.sections.base import Experiment, Section, View, h3, records


def draw(shares: pd.DataFrame, colours: dict) -> str:
    """Corrupted share of backprops per epoch, per method, against the base rate; one panel per corruption."""
    def panel(ax, part):
        for method, rows in part.groupby("method", sort=False):
            ax.plot(rows.epoch, rows.corrupted_share * 100, color=colours[method], label=method, lw=1.3)
        ax.axhline(part.base_rate.mean() * 100, color="black", ls="--", lw=1, label="base rate")
    return figures.per_setting(shares, panel, xlabel="epoch", ylabel="corrupted share of backprops (%)")


class CorruptedShare(Section):
    key = "corrupted_share"

    def content(self, x: Experiment) -> dict:
        return {"rows": records(x.mine["shares"])}

    def html(self, e: dict, view: View) -> str:
        rows = pd.DataFrame(e["corrupted_share"]["rows"])
        head = h3(e, "corrupted-share", "Corrupted share of backprops over training")
        if rows.empty:
            return head + ("<p class=note>No compared run in this experiment has corrupted examples, so there is no "
                           "corrupted share to show. Add one with e.g. <code>--corruption random_labels:0.25</code>."
                           "</p>")
        return head + ("<p class=muted>Per epoch: back-propagated corrupted examples ÷ all back-propagated examples, "
                       "mean over seeds. The dashed line is the share of corrupted examples among those trained on: a "
                       "method above it spends more than its fair share of compute on them.</p>"
                       f"<img class=fig alt='corrupted share' src='{draw(rows, view.colours)}'>")
