"""Merging lossaudit databases: the shards of a grid trained as a job array (`lossaudit run --shard I/N`), or any
databases, into one file that `lossaudit sql` and `lossaudit report` read like a grid trained in one process.

Every table is copied whole, each input's run ids shifted past those already in the output (runs.run_id and every
reference to it: the run_id columns and audits.fold_runs), in one transaction: a failure leaves the output as it was.
A cell (experiment, arm, corruption, seed) complete in two inputs is refused unless `keep` says whose runs of it
win ("first" or "last" in the order given); the other input's runs of that cell are left out.
"""

from __future__ import annotations

from pathlib import Path

from lossaudit.core.store import SCHEMA_VERSION, TABLES, Store, connect_readonly
from lossaudit.core.errors import UserError, choices
from lossaudit.core.files import check_writes, same_file

KEEP = ("first", "last")
CELL = ("experiment_id", "arm", "corruption", "seed")
REFERENCES = {"audits": ("fold_runs",)}  # integer[] columns that hold run ids, by table


def _cells(path: Path) -> dict[tuple, list[int]]:
    """Each cell complete in `path`, with every run of that cell (complete or not)."""
    with connect_readonly(path) as con:
        rows = con.execute(f"select {', '.join(CELL)}, run_id, status from runs").fetchall()
    complete = {tuple(r[:4]) for r in rows if r[5] == "complete"}
    out: dict[tuple, list[int]] = {}
    for *cell, run_id, _ in rows:
        if tuple(cell) in complete:
            out.setdefault(tuple(cell), []).append(int(run_id))
    return out


def plan_merge(inputs: list[Path], keep: str | None) -> dict[Path, set[int]]:
    """Per input, the run ids left out because another input's runs of the same complete cell win."""
    if keep is not None and keep not in KEEP:
        raise UserError(f"--keep {keep!r} is not valid; valid: {choices(KEEP)}")
    holders: dict[tuple, list[Path]] = {}
    cells = {path: _cells(path) for path in inputs}
    for path, found in cells.items():
        for cell in found:
            holders.setdefault(cell, []).append(path)
    twice = {cell: paths for cell, paths in holders.items() if len(paths) > 1}
    if twice and keep is None:
        (cell, paths), *_ = twice.items()
        what = f"{cell[1]} on {cell[2]}, seed {cell[3]} (experiment {cell[0][:8]})"
        raise UserError(f"{len(twice)} cell(s) are complete in more than one database, e.g. {what} in "
                        f"{', '.join(map(str, paths))}; give --keep first or --keep last to say whose runs win")
    dropped: dict[Path, set[int]] = {path: set() for path in inputs}
    for cell, paths in twice.items():
        winner = paths[0] if keep == "first" else paths[-1]
        for path in paths:
            if path != winner:
                dropped[path].update(cells[path][cell])
    return dropped


def merge(out: Path, inputs: list[Path], *, keep: str | None = None) -> dict[Path, int]:
    """Copy every run of `inputs` into `out` (created if missing; its own runs kept and checked for duplicate cells
    like an input's); returns the number of runs copied from each input."""
    out, inputs = Path(out).expanduser(), [Path(p).expanduser() for p in inputs]
    if not inputs:
        raise UserError("give at least one database to merge into the output")
    for path in inputs:
        if not path.is_file():
            raise UserError(f"database {str(path)!r} does not exist")
        if same_file(path, out) or same_file(path, f"{out}.wal"):
            raise UserError(f"{str(path)!r} is the output; list only the databases to merge into it")
    for i, path in enumerate(inputs):
        if any(same_file(path, other) for other in inputs[:i]):
            raise UserError(f"{str(path)!r} is listed twice (or under two names); each input is merged once")
    check_writes([], appends=[("the output", out)])  # a folder that can be written, before any work
    for path in inputs:
        with connect_readonly(path):  # a lossaudit database, upgraded to this schema if older
            pass
    existing = [out] if out.is_file() and _cells(out) else []
    dropped = plan_merge(existing + inputs, keep)
    if existing and dropped[out]:
        raise UserError(f"--keep would drop runs already in the output {str(out)!r}; merge into a new file instead")
    created = not out.exists()
    store = Store(out)  # only now: a refused merge leaves no file behind
    try:
        return _merge_into(store, inputs, dropped)
    except BaseException:
        if created:  # a new output that did not receive the merge is not left behind half-made
            for leftover in (out, Path(f"{out}.wal")):
                leftover.unlink(missing_ok=True)
        raise


def _merge_into(store: Store, inputs: list[Path], dropped: dict[Path, set[int]]) -> dict[Path, int]:
    """Copy every kept run of `inputs` into `store`, in one transaction; the runs copied per input."""
    copied = {}
    with store.transaction() as con:
        for i, path in enumerate(inputs):
            alias = f"shard{i}"
            con.execute(f"attach '{_quoted(path)}' as {alias} (read_only)")
            version = con.execute(f"select value from {alias}.meta where key = 'schema_version'").fetchone()
            if not version or version[0] != SCHEMA_VERSION:
                raise UserError(f"database {str(path)!r} has schema {version[0] if version else 'none'}; "
                                f"this lossaudit merges schema {SCHEMA_VERSION}")
            offset = con.execute("select coalesce(max(run_id), 0) from runs").fetchone()[0]
            skip = ", ".join(map(str, sorted(dropped[path])))  # integers read from the databases
            con.execute(f"create temp table ids as select run_id as old, {offset} + row_number() over (order by "
                        f"run_id) as new from {alias}.runs" + (f" where run_id not in ({skip})" if skip else ""))
            mapping = dict(con.execute("select old, new from ids").fetchall())
            for table in TABLES if mapping else ():
                _copy(con, alias, table, mapping)
            copied[path] = con.execute("select count(*) from ids").fetchone()[0]
            con.execute("drop table ids")
            con.execute(f"detach {alias}")
    return copied


def _copy(con, alias: str, table: str, mapping: dict[int, int]) -> None:
    """Rows of `alias`.`table` whose run is kept, run ids replaced by their new ones (column by name; `mapping`:
    old → new, for the run ids held in lists)."""
    columns = [c for c, in con.execute("select column_name from duckdb_columns() where database_name = ? and "
                                       "table_name = ? order by column_index", [alias, table]).fetchall()]
    mine = {c for c, in con.execute("select column_name from duckdb_columns() where database_name = current_database()"
                                    " and table_name = ?", [table]).fetchall()}
    select = []
    for c in columns:
        if c not in mine:
            continue
        if c == "run_id":
            select.append("ids.new as run_id")
        elif c in REFERENCES.get(table, ()):
            pairs = ", ".join(f"{int(a)}: {int(b)}" for a, b in mapping.items())  # integers read from the database
            select.append(f"list_transform(t.{c}, lambda x: (map {{{pairs}}})[x])::integer[] as {c}")
        else:
            select.append(f"t.{c}")
    kept = [c for c in columns if c in mine]
    con.execute(f"insert into {table} ({', '.join(kept)}) select {', '.join(select)} from {alias}.{table} as t "
                f"join ids on t.run_id = ids.old")


def _quoted(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")
