"""Table 1: speedup to the target error, in the paper's format, with each speedup's spread over seeds."""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from lossaudit.analysis import claims, metrics
from lossaudit.reports import figures
from lossaudit.reports.sections.base import Experiment, Section, View, h3, records, table


def with_spread(table1: pd.DataFrame, speeds: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with each speedup's spread over seeds (mean and standard deviation of the seeds' own speedups,
    metrics.seed_speedups; NaN where no seed reached the target)."""
    out = table1.copy()
    for axis in metrics.AXES:
        spread = (speeds.groupby(["corruption", "method"])[f"speedup_{axis}"]
                  .agg(lambda v: claims.band(v)).to_dict())
        out[f"speedup_{axis}_seeds"] = [
            "—" if math.isnan(spread.get((c, m), (math.nan,))[0]) else
            f"{spread[(c, m)][0]:.2f} ± {spread[(c, m)][1]:.2f}×" for c, m in zip(out.corruption, out.method)]
    return out


def quantised(after: list[dict], cells: int) -> str:
    """The sentence on what the epoch schedule does to Table 1, when targets were reached just after a drop."""
    if not after:
        return ""
    names = ", ".join(f"{r['method']} ({r['corruption']}, drop {r['drop']})" for r in after)
    return (f"<p class=note>{len(after)} of these {cells} cells first reached the target within "
            f"{metrics.AFTER_DROP:.0%} of the backprops after one of the method's learning-rate drops: "
            f"{escape(names)}. The schedule drops at fixed epochs, so a method back-propagating a share s of its "
            "candidates drops after s × the baseline's backprops, and its speedup lands near 1 ÷ s whatever it "
            "selected: such a speedup measures where the drops fall as much as the selection. The uniform control "
            "of the same share and the budget protocol (--budget with --schedule linear) tell the two apart.</p>")


class Table1(Section):
    key = "table1"

    def content(self, x: Experiment) -> dict:
        return {"rule": x.data["table1"].attrs.get("rule", ""),
                "rows": records(with_spread(x.mine["table1"], x.mine["seed_speedups"])),
                "after_drop": records(metrics.reached_after_drop(x.mine["table1"], x.mine["lr_drops"]))}

    def html(self, e: dict, view: View) -> str:
        t = pd.DataFrame(e["table1"]["rows"])
        head = h3(e, "table1", "Table 1: speedup to target")
        if t.empty:
            return head + "<p class=muted>No evaluations of compared runs.</p>"
        order = list(dict.fromkeys(t.method))
        settings = figures.settings_order(t.corruption)
        cells = t.pivot(index="method", columns="corruption", values="cell").reindex(index=order, columns=settings)
        controls = t.groupby("method", sort=False).control.first().reindex(order)
        cells.insert(0, "control", [c if isinstance(c, str) else "" for c in controls])
        more = t[["corruption", "method", "seeds", "best_test_error", "best_test_error_std", "target_error",
                  "backprops_to_target", "speedup_backprops", "speedup_backprops_seeds", "upfront_backprops",
                  "backprops_to_target_selection_only", "speedup_backprops_selection_only", "seconds_to_target",
                  "speedup_seconds", "speedup_seconds_seeds", "passes_to_target", "speedup_passes",
                  "speedup_passes_seeds"]]
        return (head + "<p>Speedup in examples back-propagated to reach 1.2 × the baseline's best test error (the "
                "arm that trains every example); best test error in parentheses; — where the target was never "
                "reached (the paper's format). Work a method does before its own training (a model it fits first) "
                "is counted in; its selection-only speedup follows. Each loss-based method is followed by its "
                "control, a uniform random subset at its nominal selectivity.</p>"
                + table(cells.reset_index()) + quantised(e["table1"].get("after_drop") or [], len(t))
                + "<h4>Speedup in what a user pays</h4>" + table(more) +
                f"<p class=muted>Rule: {escape(e['table1']['rule'])}</p>")
