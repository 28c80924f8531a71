"""The database: the only writer of a lossaudit DuckDB file, and the read-only door for everything else (the file's
opening, its lock and its schema check are lossaudit.core.connection's).

DuckDB lets one process write a file or several read it, never both at once. The writer therefore
opens the file only for the length of one transaction (an epoch's worth of appends), so `lossaudit
sql` and `lossaudit report` can read between flushes while a grid is still training; both sides
retry for a while when they find the file locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from lossaudit.core.connection import (NOT_ALLOWED, SCHEMA_VERSION, STORAGE_ERRORS, StorageFailed,  # noqa: F401
                                        _cause, _check_ours, _connect, _sql, refused, schema_sql)
from lossaudit.core.rows import (fill_identity, fill_traits, insert_suspects, move_audits, patch_config,
                                 rehash_recorded, settle, summarise)
from lossaudit.core.errors import UserError

TABLES = ("runs", "examples", "observations", "steps", "evals", "predictions", "test_predictions",
          "example_summaries", "audits", "suspects")
EPOCH_TABLES = ("observations", "steps", "evals", "predictions", "test_predictions")  # appended once per epoch


@contextmanager
def connect_readonly(path: str | Path, *, timeout: float = 60.0, where: str | None = None,
                     run_ids: list[int] | None = None):
    """Sandboxed read-only connection to an existing lossaudit database (waits while a writer flushes).

    With `where` (a SQL condition on runs columns) or `run_ids`, the connection sees only those runs:
    every table is shadowed by a temporary view of the selected runs.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"database {str(path)!r} is a folder, not a database file")
    if not path.is_file():
        raise UserError(f"database {str(path)!r} does not exist; create one with `lossaudit run --db {path}`")
    try:
        con = _open_current(path, timeout)
    except duckdb.Error as err:
        raise UserError(f"cannot open database {str(path)!r}: {_cause(err)}") from None
    try:
        if where is not None or run_ids is not None:
            _restrict(con, path, where, run_ids)
        yield con
    except duckdb.IOException as err:  # a block the file does not have (cut short) or cannot give (a failing disk)
        raise UserError(f"cannot read database {str(path)!r}: {_cause(err)}") from None
    finally:
        con.close()


def _open_current(path: Path, timeout: float) -> duckdb.DuckDBPyConnection:
    """A sandboxed reader of a database in the current schema (one from lossaudit 0.1 is upgraded first); a file
    that is not a lossaudit database, or one of a newer, unknown or damaged schema, is refused untouched."""
    con = _connect(path, read_only=True, timeout=timeout, sandbox=True)
    try:
        version = _check_ours(con, path, "read")
    except BaseException:
        con.close()
        raise
    if version == SCHEMA_VERSION:
        return con
    con.close()
    Store(path, lock_timeout=timeout)  # written by an earlier lossaudit: upgrade it once, then read
    print(f"lossaudit: upgraded {path} to database schema {SCHEMA_VERSION}", file=sys.stderr)
    return _connect(path, read_only=True, timeout=timeout, sandbox=True)


def _restrict(con, path: Path, where: str | None, run_ids: list[int] | None) -> None:
    """Shadow every table of `con` by a temporary view of the runs selected by `where` and `run_ids`."""
    every = [int(r) for r, in con.execute("select run_id from runs").fetchall()]
    ids = every
    if where is not None:
        try:
            ids = [int(r[0]) for r in con.execute(f"select run_id from runs where {where}").fetchall()]
        except duckdb.Error as err:
            if refused(err):
                raise UserError(f"--where {where!r}: {NOT_ALLOWED}") from None
            raise UserError(f"--where {where!r} is not a valid condition on runs: {str(err).splitlines()[0]}") from None
    if run_ids is not None:
        missing = sorted(set(run_ids) - set(every))
        if missing:
            raise UserError(f"--run {', '.join(map(str, missing))}: no such run in {str(path)!r}")
        ids = [i for i in ids if i in set(run_ids)]
    catalog = con.execute("select current_database()").fetchone()[0].replace('"', '""')
    id_list = ", ".join(map(str, ids)) or "null"  # integers read from the database itself
    for table in TABLES:
        con.execute(f'create temp view {table} as select * from "{catalog}".main.{table} where run_id in ({id_list})')


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        pass
    return True


def _held_elsewhere(host: str | None, pid: int | None) -> bool:
    """Whether a run marked running is held by a live process: one on another host is taken to be (its process cannot
    be seen from here), one on this host when its pid is alive."""
    return host != socket.gethostname() or pid is None or _pid_alive(pid)


class Store:
    """Writes runs into one DuckDB file. Each method is one transaction; nothing is written row by row."""

    def __init__(self, path: str | Path, *, lock_timeout: float = 600.0):
        self.path = Path(path).expanduser()
        self.lock_timeout = lock_timeout
        if self.path.parent and not self.path.parent.exists():
            raise UserError(f"--db {str(self.path)!r}: folder {str(self.path.parent)!r} does not exist")
        with self.transaction() as con:
            version = _check_ours(con, self.path, "write to")
            if version == SCHEMA_VERSION:
                return
            if version == "1":
                con.execute(_sql("upgrade_1.sql"))
            if version == "2":
                con.execute(_sql("upgrade_2.sql"))
            if version in ("2", "3"):
                con.execute(_sql("upgrade_3.sql"))
            if version is not None:  # the tables gain schema 6's and 7's columns before schema.sql comments on them
                con.execute(_sql("upgrade_5.sql"))
            con.execute(schema_sql())
            if version is not None:
                con.execute("insert into examples by name select * from examples_before_7")
                con.execute("drop table examples_before_7")
            if version == "1":
                fill_identity(con)
                move_audits(con)
            fill_traits(con)
            rehash_recorded(con)
            con.execute("insert or replace into meta values ('schema_version', ?)", [SCHEMA_VERSION])

    @contextmanager
    def transaction(self):
        """One connection, one transaction: committed on success, rolled back on any error. The file system failing
        (a full disk, a read-only folder, an I/O error) is a StorageFailed naming the file and the cause; what
        earlier transactions committed stays."""
        try:
            con = _connect(self.path, read_only=False, timeout=self.lock_timeout)
        except duckdb.Error as err:  # cannot be opened: the file system, or a file that is not (whole) a database
            raise StorageFailed(self.path, err) from None
        try:
            con.begin()
            yield con
            con.commit()
        except BaseException as err:
            with suppress(duckdb.Error):  # a failed commit has nothing left to roll back
                con.rollback()
            if isinstance(err, (OSError, *STORAGE_ERRORS)):
                raise StorageFailed(self.path, err) from None
            raise
        finally:
            with suppress(duckdb.Error):
                con.close()

    def start_run(self, run: dict, examples, *, claim: bool = False) -> int | None:
        """Insert the `runs` row (status running) and the run's `examples`; return the new run_id.

        `run` holds the `runs` columns that describe the run, its experiment and arm included (see
        training.identity); `examples` is a table (pandas or Arrow) with the `examples` columns except run_id.
        With `claim`, the cell (experiment, arm, corruption, seed) is taken in the same transaction only if no run of
        it is complete or running in a live process; None (nothing written) when one is: two processes started on
        the same grid never train one cell twice.
        """
        missing = [k for k in ("experiment_id", "experiment", "arm") if not run.get(k)]
        if missing:
            raise ValueError(f"start_run needs {', '.join(missing)} (training.identity.identify)")
        with self.transaction() as con:
            if claim and self._taken(con, run):
                return None
            run_id = con.execute("select coalesce(max(run_id), 0) + 1 from runs").fetchone()[0]
            row = dict(run, run_id=run_id, status="running", started_at=_now(), epochs_done=0,
                       host=socket.gethostname(), pid=os.getpid())
            row["config"] = json.dumps(row["config"], sort_keys=True)
            cols = ", ".join(row)
            con.execute(f"insert into runs ({cols}) values ({', '.join('?' * len(row))})", list(row.values()))
            con.register("new_examples", examples)
            con.execute(f"insert into examples by name select {run_id} as run_id, * from new_examples")
            con.unregister("new_examples")
        return int(run_id)

    @staticmethod
    def _taken(con, run: dict) -> bool:
        """Whether the cell of `run` has a complete run, or one running in a process that is alive (on this host; one
        on another host is taken to be)."""
        rows = con.execute("select status, host, pid from runs where experiment_id = ? and arm = ? and corruption = ? "
                           "and seed = ? and status in ('complete', 'running')",
                           [run["experiment_id"], run["arm"], run["corruption"], run["seed"]]).fetchall()
        return any(status == "complete" or _held_elsewhere(host, pid) for status, host, pid in rows)

    def append(self, run_id: int, *, epochs_done: int | None = None, settled: dict | None = None, **tables) -> None:
        """Append whole tables (`EPOCH_TABLES`; pandas or Arrow, columns by name) in one transaction; `settled`:
        runs columns learnt since the run started (`settle`)."""
        unknown = set(tables) - set(EPOCH_TABLES)
        if unknown:
            raise ValueError(f"cannot append to {sorted(unknown)}")
        with self.transaction() as con:
            for name, table in tables.items():
                if table is None or len(table) == 0:
                    continue
                con.register("new_rows", table)
                con.execute(f"insert into {name} by name select {int(run_id)} as run_id, * from new_rows")
                con.unregister("new_rows")
            if epochs_done is not None:
                con.execute("update runs set epochs_done = ? where run_id = ?", [epochs_done, run_id])
            settle(con, run_id, settled or {})

    def set_irreducible(self, run_id: int, losses, config_patch: dict) -> None:
        """Store rho's irreducible losses (example_id, irreducible_loss) and, merged into runs.config, what its
        model's training was and cost, in one transaction."""
        with self.transaction() as con:
            con.register("il", losses)
            con.execute("update examples set irreducible_loss = il.irreducible_loss from il "
                        "where examples.run_id = ? and examples.example_id = il.example_id", [run_id])
            con.unregister("il")
            patch_config(con, run_id, config_patch)

    def write_audit(self, run_id: int, row: dict, suspects) -> None:
        """The result of `lossaudit audit` on its proxy run: the `audits` row and every suspect, in one transaction.

        row: the `audits` columns (tables as JSON-ready lists); suspects: a table with the `suspects` columns but
        run_id and scores, plus one column per score in `scores`."""
        values = dict(row)
        for key in ("score_table", "per_class", "confusion", "replay", "replay_modes"):
            if key in values:
                values[key] = json.dumps(values[key], allow_nan=False)
        with self.transaction() as con:
            con.execute("delete from audits where run_id = ?", [run_id])
            con.execute("delete from suspects where run_id = ?", [run_id])
            cols = ["run_id", *values]
            con.execute(f"insert into audits ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                        [run_id, *values.values()])
            insert_suspects(con, run_id, suspects)

    def cells(self) -> list[tuple]:
        """Every run as (run_id, experiment_id, arm, corruption, seed, status, host, pid), oldest first."""
        with self.transaction() as con:
            return con.execute("select run_id, experiment_id, arm, corruption, seed, status, host, pid from runs "
                               "order by run_id").fetchall()

    def rewind(self, run_id: int, epochs_done: int) -> bool:
        """Take up an unfinished run again from the end of epoch `epochs_done`: rows of later epochs (written after
        the checkpoint it resumes from) go, and the run is running again in this process. False (nothing written)
        when another live process took it up first."""
        with self.transaction() as con:
            status, host, pid = con.execute("select status, host, pid from runs where run_id = ?", [run_id]).fetchone()
            if status == "complete" or (status == "running" and pid != os.getpid() and _held_elsewhere(host, pid)):
                return False
            for table in EPOCH_TABLES:
                con.execute(f"delete from {table} where run_id = ? and epoch >= ?", [run_id, epochs_done])
            con.execute("update runs set status = 'running', epochs_done = ?, finished_at = null, error = null, "
                        "host = ?, pid = ? where run_id = ?", [epochs_done, socket.gethostname(), os.getpid(), run_id])
        return True

    def finish(self, run_id: int, status: str, error: str | None = None, settled: dict | None = None) -> None:
        """Mark how a run ended; a complete run gets its per-example summary in the same transaction."""
        with self.transaction() as con:
            settle(con, run_id, settled or {})
            con.execute("update runs set status = ?, finished_at = ?, error = ? where run_id = ?",
                        [status, _now(), error, run_id])
            if status == "complete":
                summarise(con, run_id)

    def mark_orphans(self) -> list[int]:
        """Mark as interrupted the runs left `running` by processes on this host that no longer exist."""
        host = socket.gethostname()
        with self.transaction() as con:
            rows = con.execute("select run_id, pid from runs where status = 'running' and host = ?", [host]).fetchall()
            dead = [run_id for run_id, pid in rows if pid is None or not _pid_alive(pid)]
            for run_id in dead:
                con.execute("update runs set status = 'interrupted', error = 'process ended without finishing the run' "
                            "where run_id = ?", [run_id])
        return dead
