"""Most and least picked examples per class, as image tiles, for one run per corruption setting."""

from __future__ import annotations

import json
from html import escape

import pandas as pd

from lossaudit.reports import figures
from lossaudit.reports.sections.base import Experiment, Section, View, h3, records


def gallery(x: Experiment, run: pd.Series) -> dict:
    g = x.mine["gallery"]
    g = g[g.run_id == run.run_id]
    runs = x.data["runs"]
    detail = runs[runs.run_id == run.run_id].iloc[0]
    out = {"corruption": run.corruption, "run_id": int(run.run_id), "method": run.method, "seed": int(run.seed),
           "classes": list(detail.classes), "examples": records(g.drop(columns=["run_id"])), "images": None}
    if x.images is None or g.empty:
        out["images_note"] = "no image source was given" if x.images is None else "no observations"
        return out
    try:
        row = detail.to_dict()
        row["config"] = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
        row["sources"] = dict(zip(g.example_id.astype(int), g.source))  # where a recorded run's images are
        pixels = x.images(row, g.example_id.astype(int).tolist())
        out["images"] = {int(e): figures.tile(p) for e, p in zip(g.example_id, pixels)}
    except Exception as err:  # the dataset may have moved since training; the page says so
        out["images_note"] = f"images unavailable: {type(err).__name__}: {err}"
    return out


def tile(r: dict, g: dict) -> str:
    bad = bool(r["is_corrupted"])
    tip = (f"example {r['example_id']} · {r['source']} · label {r['label']} (true {r['true_label']})"
           + (f" · corrupted: {r['corruption_kind']}" if bad else ""))
    src = (g["images"] or {}).get(int(r["example_id"]))
    img = f"<img alt='' src='{src}'>" if src else "<div style='width:48px;height:48px;background:#eee'></div>"
    return (f"<div class='tile{' bad' if bad else ''}' title='{escape(tip, quote=True)}'>{img}"
            f"<span>{int(r['picks'])}/{int(r['n_observations'])}</span></div>")


class Galleries(Section):
    key = "galleries"

    def content(self, x: Experiment) -> list[dict]:
        return [gallery(x, run) for _, run in x.representatives("gallery")]

    def html(self, e: dict, view: View) -> str:
        parts = [h3(e, "galleries", "Most and least picked examples"),
                 "<p class=muted>Per class (label as trained): the examples back-propagated most and least often by "
                 "one run per setting (a loss-based one that selected, where there is one). Red frames mark "
                 "corrupted examples; the caption is picks / observations. Hover for the source.</p>"]
        for g in e["galleries"]:
            parts.append(f"<h4>{escape(g['corruption'])}: {escape(g['method'])}, seed {g['seed']} "
                         f"(run {g['run_id']})</h4>")
            if g.get("images_note"):
                parts.append(f"<p class=muted>{escape(g['images_note'])}</p>")
            ex = pd.DataFrame(g["examples"])
            if ex.empty:
                continue
            grid = ["<div class=gallery><div></div><div><strong>most picked</strong></div><div><strong>least picked"
                    "</strong></div>"]
            for label, rows in ex.groupby("label"):
                name = g["classes"][int(label)] if int(label) < len(g["classes"]) else str(label)
                grid.append(f"<div class=l>{escape(str(name))}</div>")
                for which in ("most", "least"):
                    tiles = "".join(tile(r, g) for r in rows[rows.which == which].sort_values("rank").to_dict("records"))
                    grid.append(f"<div class=tiles>{tiles}</div>")
            parts.append("".join(grid) + "</div>")
        return "".join(parts)
