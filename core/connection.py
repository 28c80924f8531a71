"""Opening a lossaudit database file: waiting out another process's lock (and saying so), the readers' sandbox, the
file system's failures as one line, and whether a file is a lossaudit database of a schema this version reads.

lossaudit.core.store builds its reader and its writer on these; nothing here writes.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from importlib.resources import files
from pathlib import Path

import duckdb

from lossaudit.core.errors import UserError
from lossaudit.core.files import describe

SCHEMA_VERSION = "8"  # 2 → 3 → 4 only add tables and columns; 5 adds declared traits to runs.config; 6, 7, 8 add columns
UPGRADABLE = (None, "1", "2", "3", "4", "5", "6", "7")  # written by earlier versions: upgraded when opened
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
    if isinstance(err, OSError):
        return describe(err)
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    known = re.search(r"(No space left on device|Read-only file system|Permission denied|Disk quota exceeded|"
                      r"Input/output error|not a valid DuckDB database file)", first)
    if known:
        return known.group(1)
    if re.search(r"Corrupt database file|Could not read enough bytes", first):
        return f"the file is damaged or cut short ({first.removeprefix('IO Error: ')}); restore it from a copy"
    return first


def refused(err: duckdb.Error) -> bool:
    """Whether a query failed because the sandbox refused it (a file, an attach, an extension, a setting)."""
    return isinstance(err, duckdb.PermissionException) or (
        isinstance(err, duckdb.InvalidInputException) and "configuration has been locked" in str(err))


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


def _schema_version(con) -> str | None:
    """The file's schema version; None for a file without lossaudit's tables."""
    if not con.execute("select count(*) from duckdb_tables() where table_name = 'meta'").fetchone()[0]:
        return None
    row = con.execute("select value from meta where key = 'schema_version'").fetchone()
    return row[0] if row else None


def _sql(name: str) -> str:
    return files("lossaudit.core").joinpath(name).read_text()


def schema_sql() -> str:
    return _sql("schema.sql")
