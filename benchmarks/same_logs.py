"""Do two lossaudit databases hold the same logs, run by run? The check behind "behaviour does not change".

Run the same grid with two versions of lossaudit, then compare the files: every table is read run by run and
hashed, leaving out what a rerun changes by nature (wall-clock seconds, timestamps, process id, host, the command
line). runs.config is compared as JSON, without its seconds and without the method traits the later schema added
(switch, diagnostics, upfront), which a database of an earlier schema gains when it is upgraded; a column only one of
the two has (added by a later schema) is named and left out.

    python benchmarks/same_logs.py BEFORE.duckdb AFTER.duckdb
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import duckdb

CLOCK = {"seconds", "started_at", "finished_at", "pid", "host", "command"}
ADDED_TRAITS = ("switch", "diagnostics", "upfront")


def _config(text: str) -> str:
    values = json.loads(text)
    values.pop("seconds", None)
    for key in ("irreducible_model", "upfront"):
        if isinstance(values.get(key), dict):
            values[key].pop("seconds", None)
    for key in ADDED_TRAITS:
        values.get("method_traits", {}).pop(key, None)
    return json.dumps(values, sort_keys=True)


def columns(path: str) -> dict[str, list[str]]:
    """Every table with a run_id column → its columns, in order."""
    con = duckdb.connect(path, read_only=True)
    rows = con.execute("select table_name, column_name from duckdb_columns() where table_name in (select table_name "
                       "from duckdb_columns() where column_name = 'run_id') and table_name != 'meta' "
                       "order by table_name, column_index").fetchall()
    con.close()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def digest(path: str, shared: dict[str, list[str]]) -> dict[str, dict[int, str]]:
    """table → run_id → hash of that run's rows in the `shared` columns (clock columns left out), plus runs.config
    per run."""
    con = duckdb.connect(path, read_only=True)
    out: dict[str, dict[int, str]] = {}
    for table, all_columns in shared.items():
        cols = [c for c in all_columns if c not in CLOCK and not (table == "runs" and c == "config")]
        rows = con.execute(f"select {', '.join(cols)} from {table} order by all").fetchall()
        per: dict[int, list] = {}
        for row in rows:
            per.setdefault(row[cols.index("run_id")], []).append(row)
        out[table] = {r: hashlib.sha256(repr(v).encode()).hexdigest()[:16] for r, v in per.items()}
    out["runs.config"] = {r: hashlib.sha256(_config(c).encode()).hexdigest()[:16]
                          for r, c in con.execute("select run_id, config from runs").fetchall()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    args = ap.parse_args()
    before, after = columns(args.before), columns(args.after)
    shared = {t: [c for c in cols if c in after[t]] for t, cols in before.items() if t in after}
    for table in sorted(set(before) | set(after)):
        added = [c for c in after.get(table, []) if c not in before.get(table, [])]
        if added or table not in before:
            print(f"{table}: only in {args.after}: " + (", ".join(added) if table in before else "the whole table")
                  + " (left out of the comparison)")
    a, b = digest(args.before, shared), digest(args.after, shared)
    differ = 0
    for table in sorted(set(a) | set(b)):
        runs = sorted(set(a.get(table, {})) | set(b.get(table, {})))
        bad = [r for r in runs if a.get(table, {}).get(r) != b.get(table, {}).get(r)]
        differ += len(bad)
        print(f"{table:<20} {len(runs):>3} runs  " + ("identical" if not bad else f"DIFFER in runs {bad}"))
    print("same logs, run by run" if not differ else f"{differ} run-tables differ")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
