"""What a report section is, and what it is given.

A section is one object: `content` computes its part of an experiment's JSON from the analysis layer's frames
(its key in the experiment is `key`), and `html` renders that part, drawing its figure, into the page. The
HTML is drawn from the JSON only, so the page and its JSON twin cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

# (run row with its parsed config, example ids) → (n, C, H, W) uint8 images as trained
ImageSource = Callable[[dict, Sequence[int]], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """One experiment's share of what the report gathered, for the sections' `content`.

    eid: its id; members: the standing rows of its runs; mine: every gathered frame cut to its runs; data: all
    that was gathered (runs, summary, ...); chosen: the representative run per corruption setting for the
    per-run views ("gallery", "scores"); settings: its corruption settings, clean first; images: the image source
    of the galleries (None: no tiles)."""

    eid: str
    members: pd.DataFrame
    mine: dict[str, pd.DataFrame]
    data: dict
    chosen: dict[str, dict[str, pd.Series]]
    settings: list[str]
    images: ImageSource | None

    def representatives(self, view: str, settings: list[str] | None = None) -> list[tuple[str, pd.Series]]:
        """(setting, its representative run) for a per-run view ("gallery" or "scores"), settings in page order."""
        chosen = self.chosen[view]
        return [(s, chosen[s]) for s in (self.settings if settings is None else settings) if s in chosen]


@dataclass(frozen=True)
class View:
    """What a section's `html` is given besides its experiment's JSON: the colour of each method and the order of
    the per-example scores."""

    colours: dict
    scores: list[str]


class Section:
    """Base of the report's per-experiment sections (registered in reports/sections/__init__.py)."""

    key: str = ""  # its key in each experiment of the JSON twin

    @property
    def name(self) -> str:  # what the registry knows it by
        return self.key

    def content(self, x: Experiment) -> Any:
        raise NotImplementedError

    def html(self, e: dict, view: View) -> str:
        raise NotImplementedError


# -- markup shared by the sections and the page ----------------------------------------------------------------------


def h3(e: dict, anchor: str, title: str) -> str:
    return f"<h3 id={anchor}-{escape(e['experiment_id'])}>{escape(title)}</h3>"


def table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p class=muted>No rows.</p>"
    cols = list(frame.columns)
    numeric = {c: frame[c].dtype.kind in "iuf" for c in cols}
    head = "".join(f"<th class={'r' if numeric[c] else 'l'}>{escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td class={'r' if numeric[c] else 'l'}>{escape(fmt(v))}</td>"
                                    for c, v in zip(cols, row)) + "</tr>" for row in frame.itertuples(index=False))
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def true(v) -> bool:
    return isinstance(v, (bool, np.bool_)) and bool(v)


def pct(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def fmt(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


# -- JSON-ready values -----------------------------------------------------------------------------------------------


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values at full precision; missing values become null."""
    return [{str(k): plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def plain(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return value
