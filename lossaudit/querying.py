"""`lossaudit sql` and `lossaudit export`: SQL or a named query or analysis over the logs, read-only."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from lossaudit.core.errors import UserError, choices

FORMATS = ("table", "csv", "json", "parquet")


def list_queries(db: Path, echo) -> None:
    """The named queries and analyses, then the experiments of the database when it exists."""
    from lossaudit.analysis.analyses import ANALYSES
    from lossaudit.analysis.metrics import experiments
    from lossaudit.core.queries import all_queries
    from lossaudit.core.store import connect_readonly

    for name, q in all_queries().items():
        params = ", ".join(f"{k}={'|'.join(map(str, q.choices[k])) if k in q.choices else 'null' if v is None else v}"
                           for k, v in q.defaults.items())
        echo(f"{name:26} {q.description}" + (f"  [params: {params}]" if params else ""))
    for name, a in ANALYSES.items():
        takes = ", ".join(f"{k}={v.default}" for k, v in list(inspect.signature(a.function).parameters.items())[1:])
        echo(f"{name:26} {a.description}  [analysis" + (f"; params: {takes}]" if takes else "]"))
    if not Path(db).expanduser().is_file():
        return
    with connect_readonly(db) as con:
        known = experiments(con)
    echo(f"\nexperiments in {db} (runs identical but for method, corruption and seed; compared only within one):")
    for r in known.itertuples():
        echo(f"{r.experiment_id}  {r.experiment}  [{r.runs} runs, {r.complete} complete; methods {r.methods}; "
             f"corruptions {r.corruptions}; seeds {r.seeds}]")


def parse_params(items: list[str]) -> dict:
    """`NAME=VALUE` strings → {name: value} (null, int, float or text)."""
    from lossaudit.core.queries import parse_value
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param {item!r}: expected NAME=VALUE")
        params[key.strip()] = parse_value(value)
    return params


def query_frame(db: Path, sql: str | None, name: str | None, params: dict):
    """The result of raw SQL, or of a named query or analysis, as a DataFrame."""
    import duckdb

    from lossaudit.analysis.analyses import ANALYSES
    from lossaudit.core.queries import all_queries, run_query
    from lossaudit.core.store import NOT_ALLOWED, connect_readonly, refused

    named = [*all_queries(), *ANALYSES]
    if sql is not None and not sql.strip():
        raise UserError("the SQL is empty; give a query, e.g. lossaudit sql \"select * from runs\"")
    if sql is not None and sql.strip() in named:
        raise UserError(f"{sql.strip()!r} is the name of a named query; run it with --query {sql.strip()}")
    if name is not None and name not in named:
        raise UserError(f"unknown query {name!r}; valid: {choices(named)}")
    with connect_readonly(db) as con:
        if sql is not None:
            try:
                result = con.execute(sql)
            except duckdb.Error as err:
                if refused(err):
                    raise UserError(NOT_ALLOWED) from None
                raise UserError(f"query failed: {str(err).splitlines()[0]}") from None
            if result.description is None:  # a statement that returns no rows (SET, PRAGMA, ...)
                raise UserError("the SQL returned no result table; lossaudit sql runs queries (select ...)")
            return result.df()
        if name in ANALYSES:
            takes = list(inspect.signature(ANALYSES[name].function).parameters)[1:]
            extra = [p for p in params if p not in takes]
            if extra:
                raise UserError(f"analysis {name!r} takes no parameter(s) {', '.join(extra)}; "
                                f"it takes: {', '.join(takes) or 'none'}")
            return ANALYSES[name].function(con, **params)
        return run_query(con, name, **params)


def check_format(format: str, output: Path | None, *, db: Path | None = None, force: bool = False) -> None:
    """The format known, and the output a file that may be written: not the database read (nor its log), not an
    existing file unless `force`."""
    from lossaudit.core.files import check_writes, reads_of_database

    if format not in FORMATS:
        raise UserError(f"unknown --format {format!r}; valid: {', '.join(FORMATS)}")
    if format == "parquet" and output is None:
        raise UserError("--format parquet writes a file: add --output PATH")
    check_writes([("--output", output)], reads_of_database("--db", db), force=force)


def emit(frame, format: str, output: Path | None, echo) -> None:
    """Print or write a result in one of FORMATS (a file is written whole: see lossaudit.core.files.replacing); the
    output was checked by `check_format` before the query ran."""
    from lossaudit.core.files import replacing
    from lossaudit.terminal import print_frame

    if output is None:
        if format == "csv":
            frame.to_csv(sys.stdout, index=False)
        elif format == "json":
            echo(_json(frame))
        else:
            print_frame(frame)
        return
    with replacing(output, "--output") as tmp:
        if format == "parquet":
            frame.to_parquet(tmp, index=False)
        elif format == "csv":
            frame.to_csv(tmp, index=False)
        else:
            tmp.write_text((_json(frame) if format == "json" else frame.to_string(index=False)) + "\n")
    echo(f"wrote {len(frame)} rows to {output}", err=True)


def _json(frame) -> str:
    return frame.to_json(orient="records", date_format="iso", indent=1, double_precision=15)
