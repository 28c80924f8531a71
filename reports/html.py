"""The report: one self-contained HTML page (nothing fetched at view time) and its JSON twin.

Everything on the page comes from the analysis functions of `audit.metrics`; the page and the
JSON are rendered from one `content` dict, so they cannot disagree. Every string that came from
the data (class names, paths, config values, commands) is escaped.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from audit import __version__, metrics
from audit.store import connect_readonly
from reports import figures
from reports.verdict import alerts, verdicts

# (run row with its parsed config, example ids) → (n, C, H, W) uint8 images as trained
ImageSource = Callable[[dict, Sequence[int]], np.ndarray]

DATA_MAP_POINTS = 2000  # per panel; the full data stays in the database
ROC_POINTS = 200  # per curve
GALLERY_PREFERENCE = ("sb", "sbe", "vr", "rho", "uniform", "sgd")
SCORE_RUN_PREFERENCE = ("sgd", "sb", "sbe", "vr", "rho", "uniform")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1240px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:2.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0} th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
th{background:#f6f6f6} .l{text-align:left} .muted{color:#666} img.fig{max-width:100%} code{font-size:12px}
.note{background:#f7f7f2;border-left:4px solid #cc9;padding:.5em 1em}
.verdict{padding:.6em 1em;margin:.5em 0;border-radius:4px;border-left:6px solid}
.pays-off{background:#eef8ee;border-color:#2e8b57} .no-better-than-random{background:#fff8e6;border-color:#e0a800}
.does-not-pay-off{background:#fdeeee;border-color:#c0392b} .no-baseline{background:#f3f3f3;border-color:#999}
.verdict ul{margin:.3em 0 0 1em;padding:0} .alerts li{margin:.15em 0}
.gallery{display:grid;grid-template-columns:8em 1fr 1fr;gap:4px 12px;align-items:center;font-size:12px}
.tiles{display:flex;flex-wrap:wrap;gap:3px} .tile{display:flex;flex-direction:column;align-items:center;width:52px}
.tile img{width:48px;height:48px;image-rendering:pixelated;border:2px solid #ddd}
.tile.bad img{border-color:#d62728} .tile span{font-size:10px;color:#555;max-width:52px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.best{font-weight:bold} .scroll{overflow-x:auto;max-width:100%}
"""


def build_report(db: str | Path, *, html: Path | None = None, json_path: Path | None = None, where: str | None = None,
                 run_ids: list[int] | None = None, gallery_size: int = 8, images: ImageSource | None = None) -> list[Path]:
    """Write the HTML page and/or the JSON twin for the selected runs of `db`; returns the paths written."""
    with connect_readonly(db, where=where, run_ids=run_ids) as con:
        data = gather(con, gallery_size)
    content = compose(str(db), data, images, gallery_size)
    written = []
    if json_path is not None:
        Path(json_path).write_text(json.dumps(_jsonable(content), indent=1, allow_nan=False))
        written.append(Path(json_path))
    if html is not None:
        Path(html).write_text(render(content))
        written.append(Path(html))
    return written


# -- gathering: the analysis layer, once ----------------------------------------------------------


def gather(con, gallery_size: int) -> dict:
    runs = con.execute("""
        select run_id, method, coalesce(config->>'method_resolved', method) as method_resolved, dataset, model,
               corruption, corruption_kind, seed, status, epochs, epochs_done, n_train, n_test, classes, config,
               command, version, device, started_at, finished_at, error
        from runs order by run_id""").df()
    if runs.empty:
        return {"runs": runs}
    scores = metrics.example_scores(con)
    return {
        "runs": runs,
        "summary": metrics.run_summary(con),
        "table1": metrics.table1(con),
        "curves": metrics.curves(con, "backprops"),
        "shares": metrics.corrupted_share(con),
        "scores": scores,
        "separability": metrics.separability_of(scores, runs),
        "gallery": metrics.pick_gallery(con, k=gallery_size),
        "per_class": metrics.per_class(con),
    }


def _pick_run(runs: pd.DataFrame, corruption: str, preference: tuple[str, ...]) -> pd.Series | None:
    rows = runs[runs.corruption == corruption].sort_values(["seed", "run_id"])
    for method in preference:
        hit = rows[rows.method_resolved == method]
        if len(hit):
            return hit.iloc[0]
    return rows.iloc[0] if len(rows) else None


# -- composing: every number of the page, JSON-ready ----------------------------------------------


def compose(db: str, data: dict, images: ImageSource | None, gallery_size: int) -> dict:
    runs = data["runs"]
    content = {"lossaudit_version": __version__, "database": db,
               "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "n_runs": len(runs)}
    if runs.empty:
        return content
    summary, table1 = data["summary"], data["table1"]
    resolved = dict(zip(runs.method, runs.method_resolved))
    settings = figures.settings_order(runs.corruption)
    noisy = [s for s in settings if s != "none"]
    colours = figures.method_colours(runs.method)
    content.update({
        "n_complete": int((runs.status == "complete").sum()),
        "verdicts": [v.to_dict() for v in verdicts(table1, summary, resolved)],
        "alerts": alerts(table1, summary),
        "metadata": _metadata(runs, summary),
        "table1": {"rule": table1.attrs.get("rule", ""), "rows": _records(table1)},
        "curves": {"x": "backprops", "rows": _records(data["curves"]),
                   "figure": figures.test_error_curves(data["curves"], colours) if len(data["curves"]) else None},
        "corrupted_share": {"rows": _records(data["shares"]),
                            "figure": figures.corrupted_share(data["shares"], colours) if len(data["shares"]) else None},
    })
    content["audits"] = _audits(runs, images)
    content["separability"] = _separability(data, runs, noisy)
    content["galleries"] = [_gallery(data, runs, s, images, gallery_size) for s in settings]
    content["data_map"] = _data_map(data, runs, settings)
    content["per_class"] = _per_class(data, runs, settings)
    return content


def _metadata(runs: pd.DataFrame, summary: pd.DataFrame) -> dict:
    configs = [json.loads(c) if isinstance(c, str) else dict(c) for c in runs.config]
    keys = sorted({k for c in configs for k in c})
    common = {k: configs[0].get(k) for k in keys if all(json.dumps(c.get(k), sort_keys=True) ==
                                                       json.dumps(configs[0].get(k), sort_keys=True) for c in configs)}
    shown = {"method", "corruption", "seed", "dataset", "model", "epochs", "device",  # already columns of the table
             "method_resolved", "n_holdout", "n_canaries"}  # implied by the method and its parameters
    varying = [k for k in keys if k not in common and k not in shown]
    seconds = dict(zip(summary.run_id, summary.seconds))
    rows = [dict(run_id=int(r.run_id), method=r.method, dataset=r.dataset, model=r.model, corruption=r.corruption,
                 seed=int(r.seed), status=r.status, epochs=f"{r.epochs_done}/{r.epochs}", device=r.device,
                 train_seconds=seconds.get(r.run_id), started_at=str(r.started_at)[:19], version=r.version,
                 settings=", ".join(f"{k}={json.dumps(configs[i].get(k), sort_keys=True)}" for k in varying
                                    if not isinstance(configs[i].get(k), (dict, list))),
                 details={k: configs[i].get(k) for k in varying if isinstance(configs[i].get(k), (dict, list))})
            for i, r in enumerate(runs.itertuples())]
    return {"commands": list(dict.fromkeys(c for c in runs.command if c)), "common_config": common,
            "varying_config": varying, "runs": rows, "seeds": sorted(int(s) for s in runs.seed.unique()),
            "versions": sorted(runs.version.unique().tolist())}


def _audits(runs: pd.DataFrame, images: ImageSource | None) -> list[dict]:
    """The results of `lossaudit audit` stored with its proxy runs, with tiles of the top suspects."""
    out = []
    for r in runs.itertuples():
        config = json.loads(r.config) if isinstance(r.config, str) else dict(r.config)
        if "audit" not in config:
            continue
        audit = dict(config["audit"], run_id=int(r.run_id), dataset=r.dataset, model=r.model, epochs=int(r.epochs))
        tiles = None
        if images is not None and audit.get("top_suspects"):
            try:
                ids = [s["example_id"] for s in audit["top_suspects"]]
                tiles = {int(e): figures.tile(p) for e, p in zip(ids, images({"config": config}, ids))}
            except Exception as err:
                audit["images_note"] = f"images unavailable: {type(err).__name__}: {err}"
        audit["images"] = tiles
        out.append(audit)
    return out


def _separability(data: dict, runs: pd.DataFrame, noisy: list[str]) -> dict:
    sep = data["separability"]
    panels, rocs = [], []
    from sklearn.metrics import roc_curve
    scores = data["scores"]
    for setting in noisy:
        run = _pick_run(runs, setting, SCORE_RUN_PREFERENCE)
        part = scores[scores.run_id == run.run_id]
        truth = metrics.noisy_truth(part)
        if part.empty or truth.all() or not truth.any():
            continue
        curves = {}
        for name in metrics.SCORES:
            s = np.nan_to_num(part[name].to_numpy(dtype=float))
            fpr, tpr, _ = roc_curve(truth, s)
            keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).astype(int))
            auc = float(sep[(sep.corruption == setting) & (sep.method == run.method) & (sep.score == name)].auroc.mean())
            curves[name] = (fpr[keep], tpr[keep], auc)
        title = f"{setting}: {run.method}, seed {run.seed} (run {run.run_id})"
        panels.append((title, curves))
        rocs.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method,
                     "curves": {k: {"fpr": v[0].tolist(), "tpr": v[1].tolist(), "auroc": v[2]} for k, v in curves.items()}})
    return {"truth": metrics.TRUTH_RULE,
            "rows": _records(sep), "roc": rocs, "figure": figures.roc_curves(panels) if panels else None}


def _gallery(data: dict, runs: pd.DataFrame, setting: str, images: ImageSource | None, k: int) -> dict:
    run = _pick_run(runs, setting, GALLERY_PREFERENCE)
    g = data["gallery"]
    g = g[g.run_id == run.run_id]
    out = {"corruption": setting, "run_id": int(run.run_id), "method": run.method, "seed": int(run.seed),
           "classes": list(run.classes), "examples": _records(g.drop(columns=["run_id"])), "images": None}
    if images is None or g.empty:
        out["images_note"] = "no image source was given" if images is None else "no observations"
        return out
    try:
        row = run.to_dict()
        row["config"] = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
        pixels = images(row, g.example_id.astype(int).tolist())
        out["images"] = {int(e): figures.tile(p) for e, p in zip(g.example_id, pixels)}
    except Exception as err:  # the dataset may have moved since training; the page says so
        out["images_note"] = f"images unavailable: {type(err).__name__}: {err}"
    return out


def _data_map(data: dict, runs: pd.DataFrame, settings: list[str]) -> dict:
    panels, points = [], []
    for setting in settings:
        run = _pick_run(runs, setting, SCORE_RUN_PREFERENCE)
        part = data["scores"][data["scores"].run_id == run.run_id]
        if part.empty:
            continue
        pts = pd.DataFrame({"example_id": part.example_id, "confidence": -part.confidence_score,
                            "variability": part.variability_score, "noisy": metrics.noisy_truth(part)})
        if len(pts) > DATA_MAP_POINTS:
            pts = pts.sample(DATA_MAP_POINTS, random_state=0).sort_values("example_id")
        title = f"{setting}: {run.method}, seed {run.seed} (run {run.run_id})\n{len(pts)} of {len(part)} examples"
        panels.append((title, pts))
        points.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method,
                       "n_examples": int(len(part)), "points": _records(pts)})
    return {"panels": points, "figure": figures.data_maps(panels) if panels else None}


def _per_class(data: dict, runs: pd.DataFrame, settings: list[str]) -> list[dict]:
    out = []
    for setting in settings:
        run = _pick_run(runs, setting, GALLERY_PREFERENCE)
        rows = data["per_class"][data["per_class"].run_id == run.run_id]
        out.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method,
                    "rows": _records(rows.drop(columns=["run_id", "method", "corruption", "seed"]))})
    return out


# -- rendering ------------------------------------------------------------------------------------


def render(c: dict) -> str:
    head = (f"<h1>lossaudit report</h1><p class=muted>database {escape(c['database'])} · lossaudit "
            f"{escape(c['lossaudit_version'])} · {escape(c['generated_at'])}</p>")
    if c["n_runs"] == 0:
        return _page([head, "<p class=note>This database holds no runs yet (or none match the selection). "
                            "Train some with <code>lossaudit run</code>.</p>"])
    parts = [head]
    if c["n_complete"] == 0:
        parts.append("<p class=note>No run in this selection has finished; every number below covers only the "
                     "epochs logged so far.</p>")
    parts += [_verdict_html(c), _audits_html(c), _alerts_html(c), _metadata_html(c), _table1_html(c), _curves_html(c),
              _share_html(c), _separability_html(c), _galleries_html(c), _data_map_html(c), _per_class_html(c)]
    return _page(parts)


def _verdict_html(c: dict) -> str:
    items = []
    for v in c["verdicts"]:
        details = "".join(f"<li>{escape(d)}</li>" for d in v["details"])
        items.append(f"<div class='verdict {escape(v['level'])}'><strong>{escape(v['headline'])}</strong>"
                     f"{f'<ul>{details}</ul>' if details else ''}</div>")
    if not items:
        items = ["<p class=muted>No run here was evaluated on a test split, so there is no speedup to judge.</p>"]
    return "<h2 id=verdict>Verdict</h2>" + "".join(items)


def _audits_html(c: dict) -> str:
    if not c.get("audits"):
        return ""
    parts = ["<h2 id=audit>Own-dataset audit</h2>"]
    for a in c["audits"]:
        level = {"safe": "pays-off", "caution": "no-better-than-random", "unsafe": "does-not-pay-off"}[a["verdict"]]
        recall = ", ".join(f"{k} {_pct(v, 0)}" for k, v in a["canary_recall"].items())
        parts.append(
            f"<div class='verdict {level}'><strong>{escape(a['dataset'])}: {escape(a['verdict_line'])}</strong><ul>"
            f"<li>{a['n_examples']} examples audited by a {escape(a['model'])} proxy run ({a['epochs']} epochs, run "
            f"{a['run_id']}); canaries: {escape(', '.join(f'{n} {k}' for k, n in a['canaries'].items()))}</li>"
            f"<li>suspicion score: {escape(a['score'])}; canary recall at the suspect threshold: {escape(recall)}</li>"
            f"<li>estimated noise share {_pct(a['noise_share'])} (bootstrap 5-95%: {_pct(a['noise_interval'][0])} to "
            f"{_pct(a['noise_interval'][1])}; {escape(a['noise_method'])})</li>"
            f"<li>rule: {escape(a['verdict_rule'])}</li></ul></div>")
        parts.append("<h3>Canary AUROC of each candidate score</h3>" + _table(pd.DataFrame(a["score_table"])))
        parts.append("<h3>Replayed pick rules: share of backprops on the suspects</h3>" + _table(pd.DataFrame(a["replay"])))
        top = pd.DataFrame(a.get("top_suspects") or [])
        if not top.empty:
            parts.append(f"<h3>Top suspects (of {a['n_suspects']}; all in {escape(a.get('suspects_csv', 'the suspects file'))})</h3>")
            if a.get("images"):
                tiles = "".join(
                    f"<div class='tile' title='{escape(f'{s.path} · given {s.given_label}, suggested {s.suggested_label}', quote=True)}'>"
                    f"<img alt='' src='{a['images'][int(s.example_id)]}'><span>{escape(str(s.given_label))}→"
                    f"{escape(str(s.suggested_label))}</span></div>" for s in top.itertuples() if int(s.example_id) in a["images"])
                parts.append(f"<div class=tiles>{tiles}</div>")
            parts.append(_table(top))
    return "".join(parts)


def _alerts_html(c: dict) -> str:
    if not c["alerts"]:
        return "<h2 id=alerts>Alerts</h2><p class=muted>None.</p>"
    return "<h2 id=alerts>Alerts</h2><ul class=alerts>" + "".join(f"<li>{escape(a)}</li>" for a in c["alerts"]) + "</ul>"


def _metadata_html(c: dict) -> str:
    m = c["metadata"]
    cmds = "".join(f"<li><code>{escape(cmd)}</code></li>" for cmd in m["commands"]) or "<li>not recorded</li>"
    common = "".join(f"<tr><td class=l>{escape(k)}</td><td class=l><code>{escape(json.dumps(v))}</code></td></tr>"
                     for k, v in m["common_config"].items() if k != "corruption_record")
    runs = pd.DataFrame(m["runs"])
    details = "".join(f"<tr><td>{r['run_id']}</td><td class=l><code>{escape(json.dumps(r['details'], sort_keys=True))}"
                      "</code></td></tr>" for r in m["runs"] if r["details"])
    return ("<h2 id=runs>Runs</h2>"
            f"<p>Seeds {escape(', '.join(map(str, m['seeds'])))}; lossaudit {escape(', '.join(m['versions']))}. "
            f"Reproduce with:</p><ul>{cmds}</ul>" + _table(runs.drop(columns=["details"])) +
            f"<details><summary>Configuration shared by every run</summary><table>{common}</table></details>"
            + (f"<details><summary>Per-run records (method parameters, corruption, irreducible-loss model)</summary>"
               f"<table>{details}</table></details>" if details else ""))


def _table1_html(c: dict) -> str:
    t = pd.DataFrame(c["table1"]["rows"])
    if t.empty:
        return "<h2 id=table1>Table 1: speedup to target</h2><p class=muted>No evaluations logged yet.</p>"
    order = list(dict.fromkeys(t.method))
    settings = figures.settings_order(t.corruption)
    cells = t.pivot(index="method", columns="corruption", values="cell").reindex(index=order, columns=settings)
    more = t[["corruption", "method", "n_seeds", "best_test_error", "best_test_error_std", "target_error",
              "backprops_to_target", "speedup_backprops", "seconds_to_target", "speedup_seconds", "passes_to_target",
              "speedup_passes"]]
    return ("<h2 id=table1>Table 1: speedup to target</h2>"
            "<p>Speedup in examples back-propagated to reach 1.2 × sgd's best test error; best test error in "
            "parentheses; — where the target was never reached (the paper's format).</p>"
            + _table(cells.reset_index()) +
            "<h3>Speedup in what a user pays</h3>" + _table(more) +
            f"<p class=muted>Rule: {escape(c['table1']['rule'])}</p>")


def _curves_html(c: dict) -> str:
    fig = c["curves"]["figure"]
    return ("<h2 id=curves>Test error vs examples back-propagated</h2><p class=muted>Mean over seeds (each seed "
            "interpolated onto the union of evaluation points); the band spans the seeds. The test split is never "
            "corrupted.</p>" + (f"<img class=fig alt='test error curves' src='{fig}'>" if fig else "<p>No evaluations.</p>"))


def _share_html(c: dict) -> str:
    fig = c["corrupted_share"]["figure"]
    head = "<h2 id=corrupted-share>Corrupted share of backprops over training</h2>"
    if fig is None:
        return head + ("<p class=note>No run in this selection has corrupted examples, so there is no corrupted share "
                       "to show. Add one with e.g. <code>--corruption random_labels:0.25</code>.</p>")
    return head + ("<p class=muted>Per epoch: back-propagated corrupted examples ÷ all back-propagated examples, mean "
                   "over seeds. The dashed line is the share of corrupted examples in the data: a method above it "
                   f"spends more than its fair share of compute on them.</p><img class=fig alt='corrupted share' src='{fig}'>")


def _separability_html(c: dict) -> str:
    s = c["separability"]
    head = "<h2 id=separability>Separability: telling corrupted from clean</h2>"
    rows = pd.DataFrame(s["rows"])
    if rows.empty:
        return head + "<p class=note>No run in this selection has both corrupted and clean examples.</p>"
    parts = [head, f"<p class=muted>AUROC of each per-example score (higher = more suspect) for separating corrupted "
                   f"from clean examples, mean over seeds; bold = best per method. {escape(s['truth'])} "
                   "Scores use every observation of a run (train-mode rows of sgd and warm-up epochs, scoring rows "
                   "after). An AUROC well below 0.5 means the score ranks the other way round (low data-map "
                   "variability marks mislabeled examples).</p>"]
    for setting in figures.settings_order(rows.corruption):
        part = rows[rows.corruption == setting]
        auroc = part.pivot(index="score", columns="method", values="auroc").reindex(list(metrics.SCORES))
        best = part.pivot(index="score", columns="method", values="best").reindex(list(metrics.SCORES))
        methods = list(dict.fromkeys(part.method))
        body = "".join("<tr><td class=l>" + escape(score) + "</td>" + "".join(
            f"<td class='{'best' if bool(best.loc[score, m]) else ''}'>{_fmt(auroc.loc[score, m])}</td>" for m in methods)
            + "</tr>" for score in auroc.index)
        heads = "".join(f"<th>{escape(m)}</th>" for m in methods)
        parts.append(f"<h3>{escape(setting)}</h3><table><thead><tr><th class=l>score</th>{heads}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    if s["figure"]:
        parts.append(f"<img class=fig alt='ROC curves' src='{s['figure']}'>")
    return "".join(parts)


def _galleries_html(c: dict) -> str:
    parts = ["<h2 id=galleries>Most and least picked examples</h2><p class=muted>Per class (label as trained): the "
             "examples back-propagated most and least often by one run per setting (a loss-based one where there is "
             "one). Red frames mark corrupted examples; the caption is picks / observations. Hover for the source.</p>"]
    for g in c["galleries"]:
        parts.append(f"<h3>{escape(g['corruption'])}: {escape(g['method'])}, seed {g['seed']} (run {g['run_id']})</h3>")
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
                tiles = "".join(_tile_html(r, g) for r in rows[rows.which == which].sort_values("rank").to_dict("records"))
                grid.append(f"<div class=tiles>{tiles}</div>")
        parts.append("".join(grid) + "</div>")
    return "".join(parts)


def _tile_html(r: dict, g: dict) -> str:
    bad = bool(r["is_corrupted"])
    tip = (f"example {r['example_id']} · {r['source']} · label {r['label']} (true {r['true_label']})"
           + (f" · corrupted: {r['corruption']}" if bad else ""))
    src = (g["images"] or {}).get(int(r["example_id"]))
    img = f"<img alt='' src='{src}'>" if src else "<div style='width:48px;height:48px;background:#eee'></div>"
    return (f"<div class='tile{' bad' if bad else ''}' title='{escape(tip, quote=True)}'>{img}"
            f"<span>{int(r['picks'])}/{int(r['n_observations'])}</span></div>")


def _data_map_html(c: dict) -> str:
    d = c["data_map"]
    head = "<h2 id=data-map>Data map</h2>"
    if not d["figure"]:
        return head + "<p class=muted>No observations.</p>"
    return head + ("<p class=muted>Per example: mean and standard deviation of the probability given to its label "
                   f"over the observations (Swayamdipta et al.), at most {DATA_MAP_POINTS} random examples per panel; "
                   "mislabeled examples gather at low confidence and low variability.</p>"
                   f"<img class=fig alt='data map' src='{d['figure']}'>")


def _per_class_html(c: dict) -> str:
    parts = ["<h2 id=per-class>Per-class breakdown</h2>"]
    for p in c["per_class"]:
        parts.append(f"<h3>{escape(p['corruption'])}: {escape(p['method'])} (run {p['run_id']})</h3>")
        parts.append(_table(pd.DataFrame(p["rows"])))
    return "".join(parts)


# -- small helpers ----------------------------------------------------------------------------------


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p class=muted>No rows.</p>"
    cols = list(frame.columns)
    numeric = {c: frame[c].dtype.kind in "iuf" for c in cols}
    head = "".join(f"<th class={'r' if numeric[c] else 'l'}>{escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td class={'r' if numeric[c] else 'l'}>{escape(_fmt(v))}</td>"
                                    for c, v in zip(cols, row)) + "</tr>" for row in frame.itertuples(index=False))
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _pct(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def _fmt(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values at full precision; missing values become null."""
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return value


def _jsonable(content: dict) -> dict:
    """The JSON twin: every number of the page; figures and image tiles are left out."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in ("figure", "images")}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return _plain(obj)
    return strip(content)


def _page(parts: list[str]) -> str:
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>lossaudit report</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
