"""Data maps (Swayamdipta et al.): each example's confidence against its variability, for one run per setting."""

from __future__ import annotations

import pandas as pd

from lossaudit.analysis import separability
from lossaudit.reports import figures
from lossaudit.reports.sections.base import Experiment, Section, View, h3, records

DATA_MAP_POINTS = 2000  # per panel; the full data stays in the database


def draw(panels: list[tuple[str, pd.DataFrame]]) -> str:
    """Confidence (mean p_true) against variability (std of p_true), coloured by corrupted; one panel per run."""
    fig, axes = figures.panels(len(panels), width=4.0, height=3.6)
    for ax, (title, pts) in zip(axes, panels):
        clean, bad = pts[~pts.noisy], pts[pts.noisy]
        ax.scatter(clean.variability, clean.confidence, s=4, alpha=0.5, color="#4c78a8", label="clean", lw=0)
        ax.scatter(bad.variability, bad.confidence, s=4, alpha=0.6, color="#e45756", label="corrupted", lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("variability (std of p_true)")
        ax.set_ylabel("confidence (mean p_true)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, markerscale=3)
    return figures.png_data_uri(fig)


class DataMap(Section):
    key = "data_map"

    def content(self, x: Experiment) -> dict:
        panels = []
        for setting, run in x.representatives("scores"):
            part = x.mine["scores"][x.mine["scores"].run_id == run.run_id]
            if part.empty:
                continue
            pts = pd.DataFrame({"example_id": part.example_id, "confidence": -part.confidence_score,
                                "variability": part.variability_score, "noisy": separability.noisy_truth(part)})
            if len(pts) > DATA_MAP_POINTS:
                pts = pts.sample(DATA_MAP_POINTS, random_state=0).sort_values("example_id")
            panels.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method,
                           "seed": int(run.seed), "n_examples": int(len(part)), "points": records(pts)})
        return {"max_points": DATA_MAP_POINTS, "panels": panels}

    def html(self, e: dict, view: View) -> str:
        d = e["data_map"]
        head = h3(e, "data-map", "Data map")
        if not d["panels"]:
            return head + "<p class=muted>No observations.</p>"
        panels = [(f"{p['corruption']}: {p['method']}, seed {p['seed']} (run {p['run_id']})\n"
                   f"{len(p['points'])} of {p['n_examples']} examples", pd.DataFrame(p["points"]))
                  for p in d["panels"]]
        return head + ("<p class=muted>Per example: mean and standard deviation of the probability given to its label "
                       f"over the observations (Swayamdipta et al.), at most {d['max_points']} random examples per "
                       "panel; mislabeled examples gather at low confidence and low variability.</p>"
                       f"<img class=fig alt='data map' src='{draw(panels)}'>")
