"""The HTML page: renders the report's content (reports.content) into one self-contained page.

Nothing is fetched at view time: figures are drawn here from the content's numbers and inlined as PNGs.
Every string that came from the data (class names, paths, config values, commands) is escaped.
"""

from __future__ import annotations

import json
import math
from html import escape

import numpy as np
import pandas as pd

from lossaudit.reports import figures

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1240px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.3em;margin-top:2.4em;border-bottom:2px solid #ccc;padding-bottom:.2em}
h3{font-size:1.1em;margin:1.8em 0 .4em;border-bottom:1px solid #eee} h4{font-size:1em;margin:1em 0 .3em}
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
AUDIT_LEVEL = {"safe": "pays-off", "caution": "no-better-than-random", "unsafe": "does-not-pay-off",
               "unknown": "no-baseline"}


def render(c: dict) -> str:
    head = (f"<h1>lossaudit report</h1><p class=muted>database {escape(c['database'])} · lossaudit "
            f"{escape(c['lossaudit_version'])} · {escape(c['generated_at'])}</p>")
    if c["n_runs"] == 0:
        return _page([head, "<p class=note>This database holds no runs yet (or none match the selection). "
                            "Train some with <code>lossaudit run</code>.</p>"])
    parts = [head]
    if c["n_complete"] == 0:
        parts.append("<p class=note>No run in this selection has finished; only complete runs are compared "
                     "(<code>--include-incomplete</code> compares the others too), so the sections below are empty "
                     "but for the runs table.</p>")
    parts += [_contents_html(c), _audits_html(c)]
    order = [sc["name"] for sc in c["scores"]]
    parts += [_experiment_html(e, c, order) for e in c["experiments"]]
    parts.append(_scores_html(c))
    parts.append(_runs_html(c))
    return _page(parts)


def _contents_html(c: dict) -> str:
    if not c["experiments"]:
        return ""
    items = "".join(f"<li><a href='#exp-{escape(e['experiment_id'])}'>{escape(e['experiment'])}</a> "
                    f"<span class=muted>({e['n_compared']} runs compared of {e['n_runs']})</span></li>"
                    for e in c["experiments"])
    return ("<p>Each experiment is a set of runs identical in every setting but the method, the corruption and the "
            "seed; only runs of one experiment are compared with each other.</p>"
            f"<ul>{items}<li><a href='#runs'>Every run</a></li></ul>")


def _experiment_html(e: dict, c: dict, order: list[str]) -> str:
    eid = escape(e["experiment_id"])
    head = (f"<h2 id=exp-{eid}>Experiment: {escape(e['experiment'])}</h2><p class=muted>experiment {eid} · "
            f"{e['n_compared']} of {e['n_runs']} runs compared · seeds {escape(', '.join(map(str, e['seeds'])))}"
            + (" · incomplete runs included" if c.get("include_incomplete") else "") + "</p>")
    colours = figures.method_colours(e["methods"])
    return "".join([head, _verdict_html(e), _alerts_html(e), _table1_html(e), _claims_html(e), _curves_html(e, colours),
                    _share_html(e, colours), _switch_html(e), _separability_html(e, order), _galleries_html(e),
                    _data_map_html(e), _per_class_html(e)])


def _h3(e: dict, anchor: str, title: str) -> str:
    return f"<h3 id={anchor}-{escape(e['experiment_id'])}>{escape(title)}</h3>"


def _verdict_html(e: dict) -> str:
    items = []
    for v in e["verdicts"]:
        details = "".join(f"<li>{escape(d)}</li>" for d in v["details"])
        items.append(f"<div class='verdict {escape(v['level'])}'><strong>{escape(v['headline'])}</strong>"
                     f"{f'<ul>{details}</ul>' if details else ''}</div>")
    if not items:
        items = ["<p class=muted>No compared run here was evaluated on a test split, so there is no speedup to "
                 "judge.</p>"]
    return _h3(e, "verdict", "Verdict") + "".join(items)


def _alerts_html(e: dict) -> str:
    if not e["alerts"]:
        return _h3(e, "alerts", "Alerts") + "<p class=muted>None.</p>"
    return _h3(e, "alerts", "Alerts") + "<ul class=alerts>" + "".join(f"<li>{escape(a)}</li>" for a in e["alerts"]) \
        + "</ul>"


def _audits_html(c: dict) -> str:
    if not c.get("audits"):
        return ""
    parts = ["<h2 id=audit>Own-dataset audit</h2>"]
    for a in c["audits"]:
        recall = ", ".join(f"{k} {_pct(v, 0)}" for k, v in a["canary_recall"].items())
        trusted = a.get("noise_reference") == "trusted labels"
        kinds = escape(", ".join(f"{k} {_pct(v)}" for k, v in (a.get("noise_by_kind") or {}).items()))
        canaries = (f"the canaries alone would read: {kinds}" if trusted else
                    f"what the noise is assumed to look like: {_pct(a.get('uniform_weight'), 0)} uniform flips at the "
                    f"estimated mix; against one canary kind alone: {kinds}")
        lo, hi = a["noise_low"], a["noise_high"]
        parts.append(
            f"<div class='verdict {AUDIT_LEVEL.get(a['verdict'], 'no-baseline')}'><strong>{escape(a['dataset'])}: "
            f"{escape(a['verdict_line'])}</strong><ul>"
            f"<li>{a['n_examples']} examples audited by a {escape(a['model'])} proxy run ({a['epochs']} epochs, run "
            f"{a['run_id']}); canaries: {escape(', '.join(f'{n} {k}' for k, n in a['canaries'].items()))}</li>"
            f"<li>suspicion score: {escape(a['score'])}; canary recall at the suspect threshold: {escape(recall)}</li>"
            f"<li>estimated noise share {_pct(a['noise_share'])} (interval {_pct(lo)} to {_pct(hi)}; "
            f"{escape(a['noise_method'])})</li>"
            + (f"<li>read against the labels of {a['n_trusted']} test examples, taken as correct</li>"
               if trusted else "")
            + (f"<li>{canaries}</li>" if a.get("noise_by_kind") else "")
            + (f"<li>cross-fitted proxy runs: {escape(', '.join(map(str, a['fold_runs'])))}</li>"
               if a.get("fold_runs") is not None else "")
            + f"<li>rule: {escape(a['verdict_rule'])}</li></ul></div>")
        if a.get("per_class"):
            parts.append("<h3>Per given label: estimated noise share and "
                         + ("what its examples truly are instead (share of the label)" if trusted
                            else "what its suspects most likely are") + "</h3>" + _table(pd.DataFrame(a["per_class"])))
        if a.get("transition"):
            shares = pd.DataFrame(a["transition"]).T.fillna(0.0)
            shares = shares.reindex(columns=list(shares.index)).fillna(0.0).map(lambda v: _pct(v, 0) if v else "")
            parts.append("<h3>Given label (rows) → true class (columns): estimated shares</h3>"
                         + _table(shares.rename_axis("given").reset_index()))
        parts.append("<h3>Canary AUROC of each candidate score</h3>" + _table(pd.DataFrame(a["score_table"])))
        modes = "; ".join(f"{k}: {v}" for k, v in (a.get("replay_modes") or {}).items())
        parts.append("<h3>Replayed pick rules: share of backprops on the suspects</h3>"
                     + (f"<p class=muted>{escape(modes)}</p>" if modes else "") + _table(pd.DataFrame(a["replay"])))
        top = pd.DataFrame(a.get("top_suspects") or [])
        if not top.empty:  # one column per score the audit used as a signal
            top = pd.concat([top.drop(columns=["scores"]), pd.DataFrame(list(top.scores))], axis=1)
        if not top.empty:
            parts.append(f"<h3>Top suspects (of {a['n_suspects']}; all in "
                         f"{escape(a.get('suspects_file') or 'the suspects table')})</h3>")
            if a.get("images"):
                tiles = "".join(
                    f"<div class='tile' title='{escape(f'{s.path} · given {s.given_label}, suggested {s.suggested_label}', quote=True)}'>"
                    f"<img alt='' src='{a['images'][int(s.example_id)]}'><span>{escape(str(s.given_label))}→"
                    f"{escape(str(s.suggested_label))}</span></div>" for s in top.itertuples()
                    if int(s.example_id) in a["images"])
                parts.append(f"<div class=tiles>{tiles}</div>")
            parts.append(_table(top))
    return "".join(parts)


def _scores_html(c: dict) -> str:
    items = "".join(f"<li><code>{escape(sc['name'])}</code>: {escape(sc['description'])}</li>" for sc in c["scores"])
    return f"<h2 id=scores>Per-example scores</h2><ul>{items}</ul>"


def _runs_html(c: dict) -> str:
    m = c["runs"]
    cmds = "".join(f"<li><code>{escape(cmd)}</code></li>" for cmd in m["commands"]) or "<li>not recorded</li>"
    common = "".join(f"<tr><td class=l>{escape(k)}</td><td class=l><code>{escape(json.dumps(v))}</code></td></tr>"
                     for k, v in m["common_config"].items() if k != "corruption_record")
    runs = pd.DataFrame(m["rows"])
    details = "".join(f"<tr><td>{r['run_id']}</td><td class=l><code>{escape(json.dumps(r['details'], sort_keys=True))}"
                      "</code></td></tr>" for r in m["rows"] if r["details"])
    return ("<h2 id=runs>Runs</h2>"
            f"<p>Seeds {escape(', '.join(map(str, m['seeds'])))}; lossaudit {escape(', '.join(m['versions']))}. "
            "Standing: compared = the run that stands for its cell (experiment, method, corruption, seed), the latest "
            "complete one; superseded = an earlier run of a cell; incomplete = not compared. "
            f"Reproduce with:</p><ul>{cmds}</ul>" + _table(runs.drop(columns=["details"])) +
            f"<details><summary>Configuration shared by every run</summary><table>{common}</table></details>"
            + (f"<details><summary>Per-run records (method parameters, corruption, irreducible-loss model)</summary>"
               f"<table>{details}</table></details>" if details else ""))


def _table1_html(e: dict) -> str:
    t = pd.DataFrame(e["table1"]["rows"])
    head = _h3(e, "table1", "Table 1: speedup to target")
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
    return (head + "<p>Speedup in examples back-propagated to reach 1.2 × sgd's best test error; best test error in "
            "parentheses; — where the target was never reached (the paper's format). Work a method does before its "
            "own training (rho's irreducible-loss model) is counted in; its selection-only speedup follows. Each "
            "loss-based method is followed by its control, a uniform random subset at its nominal selectivity.</p>"
            + _table(cells.reset_index()) + "<h4>Speedup in what a user pays</h4>" + _table(more) +
            f"<p class=muted>Rule: {escape(e['table1']['rule'])}</p>")


def _claims_html(e: dict) -> str:
    rows = e.get("claims") or []
    if not rows:
        return ""
    levels = {"supported": "pays-off", "not supported": "does-not-pay-off", "not measurable": "no-baseline"}
    body = "".join(f"<tr><td>{escape(r['claim'])}</td><td>{escape(r['measured'])}</td><td class='"
                   f"{levels.get(r['verdict'], 'no-baseline')}'><strong>{escape(r['verdict'])}</strong></td>"
                   f"<td>{escape(r['why'])}</td></tr>" for r in rows)
    return (_h3(e, "claims", "The paper's claims, checked on this data")
            + "<p class=muted>Each quantity as mean ± standard deviation over seeds (Table 1 speedups seed by seed, "
              "against sgd's curve of the same seed); a claim is supported only when the whole band lies on its "
              "side.</p><table><tr><th>claim</th><th>measured</th><th>verdict</th><th>why</th></tr>" + body
            + "</table>")


def _curves_html(e: dict, colours: dict) -> str:
    rows = pd.DataFrame(e["curves"]["rows"])
    head = _h3(e, "curves", "Test error vs examples back-propagated")
    if rows.empty:
        return head + "<p>No evaluations.</p>"
    fig = figures.test_error_curves(rows, colours)
    return (head + "<p class=muted>Mean over seeds (each seed interpolated onto the union of evaluation points); the "
            "band spans the seeds. Upfront work (rho's irreducible-loss model) is counted in, so such a curve starts "
            f"to the right. The test split is never corrupted.</p><img class=fig alt='test error curves' src='{fig}'>")


def _share_html(e: dict, colours: dict) -> str:
    rows = pd.DataFrame(e["corrupted_share"]["rows"])
    head = _h3(e, "corrupted-share", "Corrupted share of backprops over training")
    if rows.empty:
        return head + ("<p class=note>No compared run in this experiment has corrupted examples, so there is no "
                       "corrupted share to show. Add one with e.g. <code>--corruption random_labels:0.25</code>.</p>")
    return head + ("<p class=muted>Per epoch: back-propagated corrupted examples ÷ all back-propagated examples, mean "
                   "over seeds. The dashed line is the share of corrupted examples among those trained on: a method "
                   "above it spends more than its fair share of compute on them.</p>"
                   f"<img class=fig alt='corrupted share' src='{figures.corrupted_share(rows, colours)}'>")


def _switch_html(e: dict) -> str:
    rows = pd.DataFrame(e["vr_switch"]["rows"])
    if rows.empty:
        return ""
    on = rows.groupby(["method", "corruption"], sort=False).is_on.mean().reset_index()
    return (_h3(e, "vr-switch", "vr's switch over training") +
            "<p class=muted>vr samples by loss only while τ (an EMA of how uneven the losses of a pool are) is above "
            "its threshold (dashed); below it, it trains on every candidate like sgd. Lines: one per run. Share of "
            "steps switched on (evenly spaced steps shown):</p>" + _table(on.rename(columns={"is_on": "share_on"}))
            + f"<img class=fig alt='vr tau over training' src='{figures.vr_switch(rows)}'>")


def _separability_html(e: dict, order: list[str]) -> str:
    s = e["separability"]
    head = _h3(e, "separability", "Separability: telling corrupted from clean")
    rows = pd.DataFrame(s["rows"])
    if rows.empty:
        return head + "<p class=note>No compared run in this experiment has both corrupted and clean examples.</p>"
    parts = [head, f"<p class=muted>AUROC of each per-example score (higher = more suspect) for separating corrupted "
                   f"from clean examples, mean over seeds; bold = best per method (the scores are described at "
                   f"<a href='#scores'>the end of the page</a>). {escape(s['truth'])} "
                   "Scores use every observation of a run (train-mode rows of sgd and warm-up epochs, scoring rows "
                   "after). An AUROC well below 0.5 means the score ranks the other way round (low data-map "
                   "variability marks mislabeled examples).</p>"]
    for setting in figures.settings_order(rows.corruption):
        part = rows[rows.corruption == setting]
        auroc = part.pivot(index="score", columns="method", values="auroc").reindex(order)
        best = part.pivot(index="score", columns="method", values="best").reindex(order)
        methods = list(dict.fromkeys(part.method))
        body = "".join("<tr><td class=l>" + escape(score) + "</td>" + "".join(
            f"<td class='{'best' if _true(best.loc[score, m]) else ''}'>{_fmt(auroc.loc[score, m])}</td>"
            for m in methods) + "</tr>" for score in auroc.index)
        heads = "".join(f"<th>{escape(m)}</th>" for m in methods)
        parts.append(f"<h4>{escape(setting)}</h4><table><thead><tr><th class=l>score</th>{heads}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    if s["roc"]:
        panels = [(f"{r['corruption']}: {r['method']}, seed {r['seed']} (run {r['run_id']})",
                   {k: (np.array(v["fpr"]), np.array(v["tpr"]), v["auroc"]) for k, v in r["curves"].items()})
                  for r in s["roc"]]
        parts.append(f"<img class=fig alt='ROC curves' src='{figures.roc_curves(panels)}'>")
    return "".join(parts)


def _galleries_html(e: dict) -> str:
    parts = [_h3(e, "galleries", "Most and least picked examples"),
             "<p class=muted>Per class (label as trained): the examples back-propagated most and least often by one "
             "run per setting (a loss-based one that selected, where there is one). Red frames mark corrupted "
             "examples; the caption is picks / observations. Hover for the source.</p>"]
    for g in e["galleries"]:
        parts.append(f"<h4>{escape(g['corruption'])}: {escape(g['method'])}, seed {g['seed']} (run {g['run_id']})</h4>")
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
           + (f" · corrupted: {r['corruption_kind']}" if bad else ""))
    src = (g["images"] or {}).get(int(r["example_id"]))
    img = f"<img alt='' src='{src}'>" if src else "<div style='width:48px;height:48px;background:#eee'></div>"
    return (f"<div class='tile{' bad' if bad else ''}' title='{escape(tip, quote=True)}'>{img}"
            f"<span>{int(r['picks'])}/{int(r['n_observations'])}</span></div>")


def _data_map_html(e: dict) -> str:
    d = e["data_map"]
    head = _h3(e, "data-map", "Data map")
    if not d["panels"]:
        return head + "<p class=muted>No observations.</p>"
    panels = [(f"{p['corruption']}: {p['method']}, seed {p['seed']} (run {p['run_id']})\n"
               f"{len(p['points'])} of {p['n_examples']} examples", pd.DataFrame(p["points"])) for p in d["panels"]]
    return head + ("<p class=muted>Per example: mean and standard deviation of the probability given to its label "
                   f"over the observations (Swayamdipta et al.), at most {d['max_points']} random examples per panel; "
                   "mislabeled examples gather at low confidence and low variability.</p>"
                   f"<img class=fig alt='data map' src='{figures.data_maps(panels)}'>")


def _per_class_html(e: dict) -> str:
    parts = [_h3(e, "per-class", "Per-class breakdown")]
    for p in e["per_class"]:
        parts.append(f"<h4>{escape(p['corruption'])}: {escape(p['method'])} (run {p['run_id']})</h4>")
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


def _true(v) -> bool:
    return isinstance(v, (bool, np.bool_)) and bool(v)


def _pct(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def _fmt(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _page(parts: list[str]) -> str:
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>lossaudit report</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
