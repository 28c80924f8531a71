"""Named SQL: each file in core/queries/ answers one question.

A file opens with two comment lines: what it answers, and its parameters with their defaults
(``-- params: k=8, run_id=null`` or ``-- params: none``; ``mode=any|score|train`` lists a parameter's valid
values, the first its default). Parameters are written ``$name`` in the
SQL and always bound, never formatted in. A line ``-- @scores`` is a slot: it becomes one select-list
line per registered per-example score (lossaudit.core.scores), code of this package, never input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

import duckdb
import pandas as pd

from lossaudit.core import scores
from lossaudit.core.errors import UserError, choices

_PARAM = re.compile(r"\$([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    defaults: dict
    sql: str
    choices: dict  # parameter → its valid values, for parameters declared as `name=a|b|c` (a is the default)


def _dir():
    return files("lossaudit.core").joinpath("queries")


def parse_value(text: str):
    """A parameter value from text: null, an int, a float, or the string itself."""
    t = text.strip()
    if t.lower() in ("null", "none", ""):
        return None
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t.strip("'\"")


SLOTS = {"-- @scores": lambda: scores.select_list(),  # a line starting so is replaced by the registered scores
         "-- @stored_scores": lambda: scores.stored_list()}


def _fill(text: str) -> str:
    out = []
    for line in text.splitlines():
        slot = next((key for key in SLOTS if line.strip().startswith(key)), None)
        out.append(SLOTS[slot]() if slot else line)
    return "\n".join(out)


def _parse(name: str, text: str) -> Query:
    text = _fill(text)
    lines = text.lstrip().splitlines()
    description = lines[0].lstrip("-").strip()
    header = lines[1].lstrip("-").strip() if len(lines) > 1 else ""
    if not header.startswith("params:"):
        raise ValueError(f"query {name}: second line must be '-- params: ...'")
    spec = header[len("params:"):].strip()
    defaults, choices_ = {}, {}
    if spec != "none":
        for item in spec.split(","):
            key, _, value = item.partition("=")
            if "|" in value:
                choices_[key.strip()] = [parse_value(v) for v in value.split("|")]
            defaults[key.strip()] = parse_value(value.split("|")[0])
    used = set(_PARAM.findall(text))
    if used != set(defaults):
        raise ValueError(f"query {name}: declares {sorted(defaults)} but uses {sorted(used)}")
    return Query(name, description, defaults, text, choices_)


def all_queries() -> dict[str, Query]:
    out = {}
    for entry in sorted(_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".sql"):
            out[entry.name[:-4]] = _parse(entry.name[:-4], entry.read_text())
    return out


def get_query(name: str) -> Query:
    queries = all_queries()
    if name not in queries:
        raise UserError(f"unknown query {name!r}; valid: {choices(queries)}")
    return queries[name]


def run_query(con: duckdb.DuckDBPyConnection, name: str, **params) -> pd.DataFrame:
    """Run a named query with its defaults overridden by `params`; returns a DataFrame."""
    query = get_query(name)
    extra = [p for p in params if p not in query.defaults]
    if extra:
        raise UserError(f"query {name!r} takes no parameter(s) {', '.join(extra)}; "
                        f"it takes: {', '.join(query.defaults) or 'none'}")
    for key, valid in query.choices.items():
        if key in params and params[key] not in valid:
            raise UserError(f"query {name!r}: {key}={params[key]!r} is not valid; valid: {', '.join(map(str, valid))}")
    bound = {**query.defaults, **params}
    try:
        return con.execute(query.sql, bound).df() if bound else con.execute(query.sql).df()
    except duckdb.Error as err:
        raise UserError(f"query {name!r} failed with {bound}: {str(err).splitlines()[0]}") from None
