"""Test error against examples back-propagated: seed-mean curves with their band."""

from __future__ import annotations

import pandas as pd

from lossaudit.reports import figures
from lossaudit.reports.sections.base import Experiment, Section, View, h3, records


def draw(curves: pd.DataFrame, colours: dict, drops: pd.DataFrame | None = None) -> str:
    """Small multiples, one panel per corruption setting; a line per method (seed mean), band = min..max over seeds;
    each learning-rate drop of a step schedule a short tick at the bottom, in its method's colour."""
    settings = figures.settings_order(curves.corruption)
    fig, axes = figures.panels(len(settings))
    for ax, setting in zip(axes, settings):
        for method, rows in curves[curves.corruption == setting].groupby("method", sort=False):
            ax.plot(rows.x, rows.test_error * 100, color=colours[method], label=method, lw=1.3)
            if rows.n_seeds.iloc[0] > 1:
                ax.fill_between(rows.x, rows.test_error_min * 100, rows.test_error_max * 100,
                                color=colours[method], alpha=0.15, lw=0)
            if drops is not None and len(drops):
                for x in drops[(drops.corruption == setting) & (drops.method == method)].x:
                    ax.axvline(x, ymin=0, ymax=0.07, color=colours[method], lw=1.6)
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("examples back-propagated")
        ax.set_ylabel("test error (%)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    return figures.png_data_uri(fig)


class Curves(Section):
    key = "curves"

    def content(self, x: Experiment) -> dict:
        return {"x": "backprops", "rows": records(x.mine["curves"]), "drops": records(x.mine["lr_drops"])}

    def html(self, e: dict, view: View) -> str:
        rows = pd.DataFrame(e["curves"]["rows"])
        drops = pd.DataFrame(e["curves"].get("drops") or [])
        head = h3(e, "curves", "Test error vs examples back-propagated")
        if rows.empty:
            return head + "<p>No evaluations.</p>"
        return (head + "<p class=muted>Mean over seeds (each seed interpolated onto the union of evaluation points); "
                "the band spans the seeds. Upfront work (a model a method fits first) is counted in, so such a curve "
                "starts to the right. The test split is never corrupted."
                + (" Ticks at the bottom: where each method's learning rate dropped (its step schedule's milestones, "
                   "at fixed epochs: a method back-propagating a share of its candidates drops after that share of "
                   "the baseline's backprops)." if drops.size else "") + "</p>"
                f"<img class=fig alt='test error curves' src='{draw(rows, view.colours, drops)}'>")
