"""Named SQL: each file in audit/queries/ answers one question; its first comment line says which.

Parameters are written `$name` in the SQL and always bound, never formatted in.
"""

from __future__ import annotations

import re
from importlib.resources import files

import duckdb
import pandas as pd

from audit.errors import UserError, choices

_PARAM = re.compile(r"\$([A-Za-z_]\w*)")


def _dir():
    return files("audit").joinpath("queries")


def list_queries() -> dict[str, str]:
    """Query name → its one-line description."""
    out = {}
    for entry in sorted(_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".sql"):
            first = entry.read_text().lstrip().splitlines()[0]
            out[entry.name[:-4]] = first.lstrip("-").strip()
    return out


def query_text(name: str) -> str:
    queries = list_queries()
    if name not in queries:
        raise UserError(f"unknown query {name!r}; valid: {choices(queries)}")
    return _dir().joinpath(f"{name}.sql").read_text()


def query_params(sql: str) -> list[str]:
    return list(dict.fromkeys(_PARAM.findall(sql)))


def run_query(con: duckdb.DuckDBPyConnection, name: str, **params) -> pd.DataFrame:
    """Run a named query with bound parameters and return a DataFrame."""
    sql = query_text(name)
    wanted = query_params(sql)
    missing = [p for p in wanted if p not in params]
    if missing:
        raise UserError(f"query {name!r} needs parameter(s) {', '.join(missing)} (pass --param NAME=VALUE)")
    extra = [p for p in params if p not in wanted]
    if extra:
        raise UserError(f"query {name!r} takes no parameter(s) {', '.join(extra)}; it takes: {', '.join(wanted) or 'none'}")
    return con.execute(sql, {p: params[p] for p in wanted}).df()
