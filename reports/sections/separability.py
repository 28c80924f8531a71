"""Separability: how well each per-example score tells corrupted from clean examples, with ROC curves."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

from lossaudit.analysis import separability
from lossaudit.reports import figures
from lossaudit.reports.sections.base import Experiment, Section, View, fmt, h3, records, true

ROC_POINTS = 200  # per curve


def draw(panels: list[tuple[str, dict[str, tuple[np.ndarray, np.ndarray, float]]]]) -> str:
    """One panel per (title, {score: (fpr, tpr, auroc)})."""
    fig, axes = figures.panels(len(panels), width=4.0, height=3.6)
    for ax, (title, curves) in zip(axes, panels):
        for i, (score, (fpr, tpr, auc)) in enumerate(curves.items()):
            ax.plot(fpr, tpr, color=figures.PALETTE[i % len(figures.PALETTE)], lw=1.2,
                    label=f"{score.removesuffix('_score')} {auc:.3f}")
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=6.5, title="AUROC", title_fontsize=7)
    return figures.png_data_uri(fig)


class Separability(Section):
    key = "separability"

    def content(self, x: Experiment) -> dict:
        rocs = []
        for setting, run in x.representatives("scores", [s for s in x.settings if s != "none"]):
            curves = separability.roc_points(x.mine["scores"][x.mine["scores"].run_id == run.run_id], ROC_POINTS)
            if curves:
                rocs.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method,
                             "seed": int(run.seed), "curves": curves})
        return {"truth": separability.TRUTH_RULE, "rows": records(x.mine["separability"]), "roc": rocs}

    def html(self, e: dict, view: View) -> str:
        s = e["separability"]
        head = h3(e, "separability", "Separability: telling corrupted from clean")
        rows = pd.DataFrame(s["rows"])
        if rows.empty:
            return head + "<p class=note>No compared run in this experiment has both corrupted and clean examples.</p>"
        parts = [head, f"<p class=muted>AUROC of each per-example score (higher = more suspect) for separating "
                       f"corrupted from clean examples, mean over seeds; bold = best per method (the scores are "
                       f"described at <a href='#scores'>the end of the page</a>). {escape(s['truth'])} "
                       "Scores use every observation of a run (train-mode rows of the baseline and warm-up epochs, "
                       "scoring rows after). An AUROC well below 0.5 means the score ranks the other way round (low "
                       "data-map variability marks mislabeled examples).</p>"]
        for setting in figures.settings_order(rows.corruption):
            part = rows[rows.corruption == setting]
            auroc = part.pivot(index="score", columns="method", values="auroc").reindex(view.scores)
            best = part.pivot(index="score", columns="method", values="best").reindex(view.scores)
            methods = list(dict.fromkeys(part.method))
            body = "".join("<tr><td class=l>" + escape(score) + "</td>" + "".join(
                f"<td class='{'best' if true(best.loc[score, m]) else ''}'>{fmt(auroc.loc[score, m])}</td>"
                for m in methods) + "</tr>" for score in auroc.index)
            heads = "".join(f"<th>{escape(m)}</th>" for m in methods)
            parts.append(f"<h4>{escape(setting)}</h4><table><thead><tr><th class=l>score</th>{heads}</tr></thead>"
                         f"<tbody>{body}</tbody></table>")
        if s["roc"]:
            panels = [(f"{r['corruption']}: {r['method']}, seed {r['seed']} (run {r['run_id']})",
                       {k: (np.array(v["fpr"]), np.array(v["tpr"]), v["auroc"]) for k, v in r["curves"].items()})
                      for r in s["roc"]]
            parts.append(f"<img class=fig alt='ROC curves' src='{draw(panels)}'>")
        return "".join(parts)
