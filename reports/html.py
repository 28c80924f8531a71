"""The HTML page: renders the report's content (reports.content) into one self-contained page.

Nothing is fetched at view time: figures are drawn here from the content's numbers and inlined as PNGs.
Every string that came from the data (class names, paths, config values, commands) is escaped.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import pandas as pd

from lossaudit.reports import figures
from lossaudit.reports.sections import SECTIONS, View
from lossaudit.reports.sections.base import pct as _pct
from lossaudit.reports.sections.base import table as _table

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1240px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.3em;margin-top:2.4em;border-bottom:2px solid #ccc;padding-bottom:.2em}
h3{font-size:1.1em;margin:1.8em 0 .4em;border-bottom:1px solid #eee} h4{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0} th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
th{background:#f6f6f6} .l{text-align:left} .muted{color:#666} img.fig{max-width:100%} code{font-size:12px}
.note{background:#f7f7f2;border-left:4px solid #cc9;padding:.5em 1em}
.verdict{padding:.6em 1em;margin:.5em 0;border-radius:4px;border-left:6px solid}
.pays-off{background:#eef8ee;border-color:#2e8b57} .no-better-than-random,.inconclusive{background:#fff8e6;border-color:#e0a800}
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
    parts += [_contents_html(c), _budgets_html(c), _audits_html(c)]
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
    view = View(figures.method_colours(e["methods"]), order)
    return head + "".join(section.html(e, view) for section in SECTIONS.values())


def _budgets_html(c: dict) -> str:
    """Each budget protocol: the headline (what each method saves, from the findings), the curves, the questions."""
    from lossaudit.reports.headline import curves_figure
    parts = []
    for b in c.get("budgets") or []:
        base = escape(b.get("baseline") or "the baseline")
        parts.append(f"<h2 id=budget>Budget protocol: {escape(b['protocol'])}</h2><p>Each method trained to shares "
                     f"of a full {base} run, its learning-rate schedule spanning its own budget; the budget at which "
                     f"its error at the end matches {base}'s full-budget error, as a speedup with its 90% interval "
                     "over seeds:</p>" + "".join(f"<div class='verdict no-baseline'>{escape(line)}</div>"
                                             for line in b["headline"]))
        curves = pd.DataFrame(b["curves"])
        if len(curves) and b.get("baseline"):
            parts.append(f"<img class=fig alt='test error at the end of each budget' "
                         f"src='{curves_figure(curves, b['baseline'])}'>")
        if b["questions"]:
            q = pd.DataFrame(b["questions"])[["key", "quote", "method", "corruption", "budget", "measured", "verdict"]]
            parts.append("<h3>The project's questions</h3>" + _table(q))
    return "".join(parts)


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
            + (f"<li>read against the labels of {a['n_trusted']} test examples, taken as correct, assuming the noise "
               "depends on the true class only</li>" if trusted else "")
            + (f"<li>whatever the noise looks like (errors on ambiguous images too): between "
               f"{_pct(a['noise_bound_low'])} and {_pct(a['noise_bound_high'])} — the proxies' disagreement with the "
               "given labels, minus and plus their error on the trusted ones</li>"
               if pd.notna(a.get("noise_bound_low")) else "")
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
        if a.get("method_verdicts"):
            parts.append("<h3>Per method: is it safe on this data?</h3><ul>" + "".join(
                f"<li class='{AUDIT_LEVEL.get(v['verdict'], 'no-baseline')}'>{escape(v['line'])}</li>"
                for v in a["method_verdicts"]) + "</ul>")
        top = pd.DataFrame(a.get("top_suspects") or [])
        if not top.empty:  # one column per score the audit used as a signal
            top = pd.concat([top.drop(columns=["scores"]), pd.DataFrame(list(top.scores))], axis=1)
        if not top.empty:
            parts.append(f"<h3>Top suspects (of {a['n_suspects']}; all in {_file_link(a.get('suspects_file'))}"
                         + (f", every example in {_file_link(a['scores_file'])}" if a.get("scores_file") else "")
                         + ")</h3>")
            if a.get("images"):
                tiles = "".join(
                    f"<div class='tile' title='{escape(f'{s.path} · given {s.given_label}, suggested {s.suggested_label}', quote=True)}'>"
                    f"<img alt='' src='{a['images'][int(s.example_id)]}'><span>{escape(str(s.given_label))}→"
                    f"{escape(str(s.suggested_label))}</span></div>" for s in top.itertuples()
                    if int(s.example_id) in a["images"])
                parts.append(f"<div class=tiles>{tiles}</div>")
            parts.append(_table(top))
    return "".join(parts)


def _file_link(path: str | None) -> str:
    """A link to a file the audit wrote (the CSV a user relabels from), or the table's name without one."""
    if not path:
        return "the suspects table"
    target = Path(path)
    href = target.as_uri() if target.is_absolute() else str(target)
    return f"<a href='{escape(href, quote=True)}'>{escape(str(path))}</a>"


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


def _page(parts: list[str]) -> str:
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>lossaudit report</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
