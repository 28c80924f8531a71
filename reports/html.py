"""The report: one self-contained HTML page (no network at view time) and its JSON twin.

Reads the database only through the analysis functions of `audit.metrics`; every string that came
from the data (class names, paths, config values) is escaped.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from audit import __version__, metrics
from audit.store import connect_readonly
from reports import figures

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0} th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6} td.l,th.l{text-align:left} .muted{color:#666} img{max-width:100%}
.note{background:#f7f7f2;border-left:4px solid #cc9;padding:.5em 1em}
"""


def build_report(db: str | Path, *, html: Path | None = None, json_path: Path | None = None) -> list[Path]:
    """Write the HTML page and/or the JSON twin for every run in `db`; returns the paths written."""
    with connect_readonly(db) as con:
        data = {
            "summary": metrics.run_summary(con),
            "curves": metrics.eval_curves(con),
            "shares": metrics.corrupted_share_by_epoch(con),
        }
    written = []
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report_json(db, data), indent=1, default=_json_default))
        written.append(Path(json_path))
    if html is not None:
        Path(html).write_text(render_html(db, data))
        written.append(Path(html))
    return written


def report_json(db, data: dict[str, pd.DataFrame]) -> dict:
    return {
        "lossaudit_version": __version__,
        "database": str(db),
        "runs": _records(data["summary"]),
        "test_error_curves": _records(data["curves"]),
        "corrupted_share_by_epoch": _records(data["shares"]),
    }


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values at full precision; missing values become null."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return str(value)


def render_html(db, data: dict[str, pd.DataFrame]) -> str:
    summary, curves, shares = data["summary"], data["curves"], data["shares"]
    parts = [f"<h1>lossaudit report</h1><p class=muted>database {escape(str(db))} · lossaudit {__version__} · "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}</p>"]
    if summary.empty:
        parts.append("<p class=note>This database holds no runs yet. Train some with <code>lossaudit run</code>.</p>")
        return _page(parts)
    finished = summary[summary.status == "complete"]
    if finished.empty:
        parts.append("<p class=note>No run in this database has finished; the numbers below cover the epochs "
                     "logged so far.</p>")
    parts.append("<h2>Runs</h2>" + _table(summary, {
        "run_id": "run", "method": "method", "dataset": "dataset", "model": "model", "corruption": "corruption",
        "seed": "seed", "status": "status", "epochs_done": "epochs", "backprops": "backprops",
        "forwards_scoring": "scoring forwards", "best_test_error": "best test error",
        "final_test_error": "final test error", "corrupted_share": "corrupted share of backprops",
        "base_rate": "corrupted share of data", "seconds": "train seconds"}))
    if not curves.empty:
        parts.append("<h2>Test error vs examples back-propagated</h2>"
                     "<p class=muted>Mean over seeds; shaded band spans the seeds. Evaluations on the never-corrupted "
                     "test split at fixed backprop intervals.</p>"
                     f"<img alt='test error curves' src='{figures.test_error_curves(curves)}'>")
    share_png = figures.corrupted_share(shares) if not shares.empty else None
    parts.append("<h2>Corrupted share of backprops over training</h2>")
    if share_png is None:
        parts.append("<p class=note>No run in this database has corrupted examples, so there is no corrupted share "
                     "to show. Add e.g. <code>--corruption random_labels:0.25</code>.</p>")
    else:
        parts.append("<p class=muted>Per epoch: back-propagated corrupted examples ÷ all back-propagated examples, "
                     "mean over seeds. The dashed line is the share of corrupted examples in the data: a method "
                     "above it spends more than its fair share of compute on corrupted data.</p>"
                     f"<img alt='corrupted share of backprops' src='{share_png}'>")
    return _page(parts)


def _table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    cols = [c for c in columns if c in frame.columns]
    head = "".join(f"<th class={'l' if frame[c].dtype.kind not in 'iuf' else 'r'}>{escape(columns[c])}</th>" for c in cols)
    body = []
    for row in frame[cols].itertuples(index=False):
        cells = []
        for c, v in zip(cols, row):
            numeric = frame[c].dtype.kind in "iuf"
            cells.append(f"<td class={'r' if numeric else 'l'}>{escape(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _page(parts: list[str]) -> str:
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>lossaudit report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
