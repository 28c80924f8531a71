"""The database: the only writer of a lossaudit DuckDB file, and the read-only door for everything else.

DuckDB lets one process write a file or several read it, never both at once. The writer therefore
opens the file only for the length of one transaction (an epoch's worth of appends), so `lossaudit
sql` and `lossaudit report` can read between flushes while a grid is still training; both sides
retry for a while when they find the file locked.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import sys
import time
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

import duckdb

from lossaudit.audit.rows import fill_identity, insert_suspects, move_audits, patch_config, settle, summarise
from lossaudit.errors import UserError

SCHEMA_VERSION = "4"  # 2 → 3 → 4 only add tables and columns
UPGRADABLE = (None, "1", "2", "3")  # written by earlier versions: upgraded when opened
TABLES = ("runs", "examples", "observations", "steps", "evals", "predictions", "test_predictions",
          "example_summaries", "audits", "suspects")
EPOCH_TABLES = ("observations", "steps", "evals", "predictions", "test_predictions")  # appended once per epoch


def _is_lock_error(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


# A reader is a query tool over one log database, not a file-system tool: no file read or written outside it,
# no other database attached, no extension installed or loaded, and the setting locked against change.
SANDBOX = {"enable_external_access": False, "autoinstall_known_extensions": False,
           "autoload_known_extensions": False}
NOT_ALLOWED = ("not allowed: lossaudit reads only its own database (no files, other databases or extensions); "
               "save results with --output and --format")


WAIT_NOTICE = 2.0  # seconds of waiting for a lock after which the user is told what is being waited for


def _holder(err: Exception) -> str:
    """Who holds a lock, from DuckDB's message ("... is held in /usr/bin/python3 (PID 123) ..."), in words."""
    match = re.search(r"held in (.*?\(PID \d+\))", str(err))
    return f"process {match.group(1)}" if match else "another process"


def _connect(path: str | Path, *, read_only: bool, timeout: float, sandbox: bool = False) -> duckdb.DuckDBPyConnection:
    """Open `path`, retrying while another process holds the file (saying so on stderr after WAIT_NOTICE seconds, and
    one line naming the holder after `timeout`); `sandbox` locks external access off."""
    start = time.monotonic()
    delay, told = 0.02, False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=SANDBOX if sandbox else {})
            if sandbox:
                con.execute("set lock_configuration = true")
            return con
        except duckdb.IOException as err:
            if not _is_lock_error(err):
                raise
            waited = time.monotonic() - start
            if waited > timeout:
                raise UserError(f"database {str(path)!r} is locked by {_holder(err)}, which is writing to it; gave up "
                                f"after {timeout:g} s — try again when it is done") from None
            if waited > WAIT_NOTICE and not told:
                told = True
                print(f"lossaudit: waiting for {path}: {_holder(err)} holds it for writing (up to {timeout:g} s)",
                      file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


STORAGE_ERRORS = (duckdb.IOException, duckdb.TransactionException, duckdb.FatalException)  # the file failed us


class StorageFailed(UserError):
    """A file could not be written (a full disk, a read-only folder, an I/O error): one line naming the file (`what`
    it is: the database, a checkpoint) and the cause."""

    def __init__(self, path: Path, err: BaseException, what: str = "database"):
        self.path, self.cause = Path(path), _cause(err)
        super().__init__(f"cannot write to {what} {str(path)!r}: {self.cause}")


def _cause(err: BaseException) -> str:
    """The reason in an OSError or a DuckDB error, in words: "No space left on device", "Read-only file system"."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    known = re.search(r"(No space left on device|Read-only file system|Permission denied|Disk quota exceeded|"
                      r"Input/output error|not a valid DuckDB database file)", first)
    return known.group(1) if known else first


def refused(err: duckdb.Error) -> bool:
    """Whether a query failed because the sandbox refused it (a file, an attach, an extension, a setting)."""
    return isinstance(err, duckdb.PermissionException) or (
        isinstance(err, duckdb.InvalidInputException) and "configuration has been locked" in str(err))


@contextmanager
def connect_readonly(path: str | Path, *, timeout: float = 60.0, where: str | None = None,
                     run_ids: list[int] | None = None):
    """Sandboxed read-only connection to an existing lossaudit database (waits while a writer flushes).

    With `where` (a SQL condition on runs columns) or `run_ids`, the connection sees only those runs:
    every table is shadowed by a temporary view of the selected runs.
    """
    path = Path(path).expanduser()
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


def _check_ours(con, path: Path, verb: str) -> str | None:
    """The schema version of a file lossaudit may `verb` ("read" or "write to"): None for a new, empty database, an
    upgradable earlier version, or this one with every table and column. Anything else is one line, untouched."""
    done = {"read": "read", "write to": "written to"}[verb]
    version = _schema_version(con)
    if version is None:
        tables = [t for t, in con.execute("select table_name from duckdb_tables() order by 1").fetchall()]
        if tables:
            raise UserError(f"{str(path)!r} is not a lossaudit database (it holds table(s) {', '.join(tables[:5])}"
                            f"{', ...' if len(tables) > 5 else ''} and no lossaudit schema); lossaudit does not "
                            "alter it — give a new file or a lossaudit database")
        return None
    if version in UPGRADABLE:
        return version
    if version != SCHEMA_VERSION:
        newer = version.isdigit() and int(version) > int(SCHEMA_VERSION)
        raise UserError(f"database {str(path)!r} has schema {version!r}, "
                        + (f"newer than this lossaudit's {SCHEMA_VERSION}; upgrade lossaudit to {verb} it" if newer
                           else f"which no lossaudit wrote (known: 1 to {SCHEMA_VERSION}); it is not {done} or "
                                "altered"))
    missing = _missing_columns(con)
    if missing:
        raise UserError(f"database {str(path)!r} is damaged: it says schema {version} but lacks "
                        f"{', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}; it is not {done} or altered — "
                        "restore it from a copy, or write to a new file")
    return version


OWN_COLUMNS = ("select table_name, column_name from duckdb_columns() where database_name = current_database() and "
               "schema_name = 'main' and not internal")


@functools.cache
def _expected_columns() -> frozenset[tuple[str, str]]:
    """(table, column) of every column of the current schema, from the schema itself."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(schema_sql())
        return frozenset(con.execute(OWN_COLUMNS).fetchall())
    finally:
        con.close()


def _missing_columns(con) -> list[str]:
    """Tables and columns of the current schema a database lacks (`table` or `table.column`)."""
    have = set(con.execute(OWN_COLUMNS).fetchall())
    tables = {t for t, _ in have}
    missing_tables = sorted({t for t, _ in _expected_columns()} - tables)
    return [f"table {t}" for t in missing_tables] + sorted(f"{t}.{c}" for t, c in _expected_columns() - have
                                                          if t in tables)


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


def _schema_version(con) -> str | None:
    """The file's schema version; None for a file without lossaudit's tables."""
    if not con.execute("select count(*) from duckdb_tables() where table_name = 'meta'").fetchone()[0]:
        return None
    row = con.execute("select value from meta where key = 'schema_version'").fetchone()
    return row[0] if row else None


def _sql(name: str) -> str:
    return files("lossaudit.audit").joinpath(name).read_text()


def schema_sql() -> str:
    return _sql("schema.sql")


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
            con.execute(schema_sql())
            if version == "1":
                fill_identity(con)
                move_audits(con)
            con.execute("insert or replace into meta values ('schema_version', ?)", [SCHEMA_VERSION])

    @contextmanager
    def transaction(self):
        """One connection, one transaction: committed on success, rolled back on any error. The file system failing
        (a full disk, a read-only folder, an I/O error) is a StorageFailed naming the file and the cause; what
        earlier transactions committed stays."""
        try:
            con = _connect(self.path, read_only=False, timeout=self.lock_timeout)
        except duckdb.IOException as err:
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

    def start_run(self, run: dict, examples) -> int:
        """Insert the `runs` row (status running) and the run's `examples`; return the new run_id.

        `run` holds the `runs` columns that describe the run, its experiment and arm included (see
        training.identity); `examples` is a table (pandas or Arrow) with the `examples` columns except run_id.
        """
        missing = [k for k in ("experiment_id", "experiment", "arm") if not run.get(k)]
        if missing:
            raise ValueError(f"start_run needs {', '.join(missing)} (training.identity.identify)")
        with self.transaction() as con:
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

    def rewind(self, run_id: int, epochs_done: int) -> None:
        """Take up an unfinished run again from the end of epoch `epochs_done`: rows of later epochs (written after
        the checkpoint it resumes from) go, and the run is running again in this process."""
        with self.transaction() as con:
            for table in EPOCH_TABLES:
                con.execute(f"delete from {table} where run_id = ? and epoch >= ?", [run_id, epochs_done])
            con.execute("update runs set status = 'running', epochs_done = ?, finished_at = null, error = null, "
                        "host = ?, pid = ? where run_id = ?", [epochs_done, socket.gethostname(), os.getpid(), run_id])

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
