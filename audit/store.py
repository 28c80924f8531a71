"""The database: the only writer of a lossaudit DuckDB file, and the read-only door for everything else.

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
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

import duckdb

from lossaudit.errors import UserError

SCHEMA_VERSION = "4"  # 2 → 3 → 4 only add tables and columns
UPGRADABLE = (None, "1", "2", "3")  # written by earlier versions: upgraded when opened
TABLES = ("runs", "examples", "observations", "steps", "evals", "predictions", "test_predictions",
          "example_summaries", "audits", "suspects")
EPOCH_TABLES = ("observations", "steps", "evals", "predictions", "test_predictions")  # appended once per epoch
UPDATABLE = ("device", "epochs")  # runs columns a recorded run settles after it started (Store.update_run)


def _is_lock_error(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


# A reader is a query tool over one log database, not a file-system tool: no file read or written outside it,
# no other database attached, no extension installed or loaded, and the setting locked against change.
SANDBOX = {"enable_external_access": False, "autoinstall_known_extensions": False,
           "autoload_known_extensions": False}
NOT_ALLOWED = ("not allowed: lossaudit reads only its own database (no files, other databases or extensions); "
               "save results with --output and --format")


def _connect(path: str | Path, *, read_only: bool, timeout: float, sandbox: bool = False) -> duckdb.DuckDBPyConnection:
    """Open `path`, retrying while another process holds the file; `sandbox` locks external access off."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=SANDBOX if sandbox else {})
            if sandbox:
                con.execute("set lock_configuration = true")
            return con
        except duckdb.IOException as err:
            if not _is_lock_error(err) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


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
        raise UserError(f"cannot open database {str(path)!r}: {str(err).splitlines()[0]}") from None
    try:
        if where is not None or run_ids is not None:
            _restrict(con, path, where, run_ids)
        yield con
    finally:
        con.close()


def _open_current(path: Path, timeout: float) -> duckdb.DuckDBPyConnection:
    """A sandboxed reader of a database in the current schema (one from lossaudit 0.1 is upgraded first)."""
    con = _connect(path, read_only=True, timeout=timeout, sandbox=True)
    version = _schema_version(con)
    if version == SCHEMA_VERSION:
        return con
    con.close()
    if version not in UPGRADABLE or version is None:
        raise UserError(f"{str(path)!r} is not a lossaudit database (it has no lossaudit tables)" if version is None
                        else f"database {str(path)!r} has schema {version}, newer than this lossaudit's "
                             f"{SCHEMA_VERSION}; upgrade lossaudit to read it")
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
            version = _schema_version(con)
            if version not in (*UPGRADABLE, SCHEMA_VERSION):
                raise UserError(f"database {str(self.path)!r} has schema {version}, newer than this lossaudit's "
                                f"{SCHEMA_VERSION}; upgrade lossaudit to write to it")
            if version == "1":
                con.execute(_sql("upgrade_1.sql"))
            if version == "2":
                con.execute(_sql("upgrade_2.sql"))
            if version in ("2", "3"):
                con.execute(_sql("upgrade_3.sql"))
            con.execute(schema_sql())
            if version == "1":
                _fill_identity(con)
                _move_audits(con)
            con.execute("insert or replace into meta values ('schema_version', ?)", [SCHEMA_VERSION])

    @contextmanager
    def transaction(self):
        """One connection, one transaction: committed on success, rolled back on any error."""
        try:
            con = _connect(self.path, read_only=False, timeout=self.lock_timeout)
        except duckdb.IOException as err:
            raise UserError(f"cannot open database {str(self.path)!r} for writing: {str(err).splitlines()[0]}") from None
        try:
            con.begin()
            yield con
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
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

    def append(self, run_id: int, *, epochs_done: int | None = None, **tables) -> None:
        """Append whole tables (`EPOCH_TABLES`; pandas or Arrow, columns by name) in one transaction."""
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

    def update_run(self, run_id: int, *, config_patch: dict | None = None, **columns) -> None:
        """What a recorded run learns after it started: `columns` (UPDATABLE), `config_patch` (into runs.config)."""
        if set(columns) - set(UPDATABLE):
            raise ValueError(f"cannot update runs.{', '.join(sorted(set(columns) - set(UPDATABLE)))}")
        with self.transaction() as con:
            for name, value in columns.items():
                con.execute(f"update runs set {name} = ? where run_id = ?", [value, run_id])
            if config_patch:
                _patch_config(con, run_id, config_patch)

    def set_irreducible(self, run_id: int, losses, config_patch: dict) -> None:
        """Store rho's irreducible losses (example_id, irreducible_loss) and, merged into runs.config, what its
        model's training was and cost, in one transaction."""
        with self.transaction() as con:
            con.register("il", losses)
            con.execute("update examples set irreducible_loss = il.irreducible_loss from il "
                        "where examples.run_id = ? and examples.example_id = il.example_id", [run_id])
            con.unregister("il")
            _patch_config(con, run_id, config_patch)

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
            _insert_suspects(con, run_id, suspects)

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

    def finish(self, run_id: int, status: str, error: str | None = None) -> None:
        """Mark how a run ended; a complete run gets its per-example summary in the same transaction."""
        with self.transaction() as con:
            con.execute("update runs set status = ?, finished_at = ?, error = ? where run_id = ?",
                        [status, _now(), error, run_id])
            if status == "complete":
                _summarise(con, run_id)

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


def _fill_identity(con) -> None:
    """Experiment and arm of runs written before schema 2, from their stored config (a one-off upgrade)."""
    rows = con.execute("select run_id, method, config, device from runs where experiment_id is null").fetchall()
    if not rows:
        return
    from lossaudit.training.config import RunConfig
    from lossaudit.training.identity import identify, traits_of
    for run_id, method, config, device in rows:
        values = json.loads(config) | {"method": method}
        try:
            who = identify(RunConfig.from_dict(values), str(device or "cpu").split(":")[0])
        except UserError:  # a method or setting this version no longer knows: its own experiment
            who = None
        if who is None:
            con.execute("update runs set experiment_id = ?, experiment = ?, arm = method where run_id = ?",
                        [f"run{run_id}", f"run {run_id} (unknown settings)", run_id])
            continue
        con.execute("update runs set experiment_id = ?, experiment = ?, arm = ? where run_id = ?",
                    [who.experiment_id, who.experiment, who.arm, run_id])
        if "method_traits" not in values:
            _patch_config(con, run_id, {"method_traits": traits_of(RunConfig.from_dict(values))})
        if "irreducible_model" in values and "upfront" not in values:
            il = values["irreducible_model"]
            _patch_config(con, run_id, {"upfront": {k: il.get(k, 0) for k in ("backprops", "forwards", "seconds")}
                                        | {"for": "the irreducible-loss model"}})


def _summarise(con, run_id: int) -> None:
    """Store a complete run's per-example scores (every registered score, every observation), so that reports over
    tens of millions of observations read one row per example instead of aggregating them again."""
    import pyarrow as pa

    from lossaudit.audit import scores
    from lossaudit.audit.queries import run_query
    rows = run_query(con, "example_scores", mode="any", run_id=run_id)
    names = scores.names()
    table = pa.table({"run_id": pa.array(rows.run_id, pa.int32()), "example_id": pa.array(rows.example_id, pa.int32()),
                      "n_observations": pa.array(rows.n_observations, pa.int32()),
                      "modes": pa.array(rows.modes.astype(str), pa.string()), "picks": pa.array(rows.picks, pa.int64()),
                      "keys": pa.array([names] * len(rows), pa.list_(pa.string())),
                      "vals": pa.array(rows[names].astype(float).values.tolist(), pa.list_(pa.float64()))})
    con.execute("delete from example_summaries where run_id = ?", [run_id])
    con.register("summary", table)
    con.execute("insert into example_summaries select run_id, example_id, n_observations, modes, picks, "
                "map(keys, vals) from summary")
    con.unregister("summary")


SUSPECT_COLUMNS = ("rank", "example_id", "path", "given_label", "suggested_label", "suspicion_score", "signals")


def _insert_suspects(con, run_id: int, suspects) -> None:
    import pyarrow as pa
    if len(suspects) == 0:
        return
    score_columns = [c for c in suspects.columns if c not in SUSPECT_COLUMNS]
    frame = pa.Table.from_pandas(suspects[list(SUSPECT_COLUMNS)], preserve_index=False)
    frame = frame.append_column("keys", pa.array([score_columns] * len(suspects), pa.list_(pa.string())))
    frame = frame.append_column("vals", pa.array(suspects[score_columns].astype(float).values.tolist(),
                                                 pa.list_(pa.float64())))
    con.register("new_suspects", frame)
    con.execute(f"insert into suspects select {int(run_id)} as run_id, {', '.join(SUSPECT_COLUMNS)}, "
                "map(keys, vals) as scores from new_suspects")
    con.unregister("new_suspects")


def _move_audits(con) -> None:
    """Audits that lossaudit 0.1 kept in runs.config['audit'] into the audits and suspects tables (a one-off
    upgrade; 0.1 kept only the top 48 suspects in the database, the rest is in its suspects files)."""
    import pandas as pd
    rows = con.execute("select run_id, config->'audit' from runs where (config->'audit') is not null").fetchall()
    for run_id, text in rows:
        a = json.loads(text)
        lo, hi = (a.get("noise_interval") or [None, None])[:2]
        row = {k: a.get(k) for k in ("verdict", "verdict_line", "verdict_rule", "n_examples", "canaries", "score",
                                     "noise_share", "noise_method", "n_suspects", "threshold", "canary_recall")}
        row |= {"noise_low": lo, "noise_high": hi, "score_table": a.get("score_table") or [],
                "replay": a.get("replay") or [], "replay_modes": a.get("replay_modes") or {},
                "notes": a.get("notes") or [], "suspects_file": a.get("suspects_csv")}
        for key in ("score_table", "replay", "replay_modes"):
            row[key] = json.dumps(row[key])
        cols = ["run_id", *row]
        con.execute(f"insert into audits ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                    [run_id, *row.values()])
        top = pd.DataFrame(a.get("top_suspects") or [], columns=list(SUSPECT_COLUMNS))
        _insert_suspects(con, run_id, top)


def _patch_config(con, run_id: int, patch: dict) -> None:
    con.execute("update runs set config = json_merge_patch(config, ?) where run_id = ?",
                [json.dumps(patch, allow_nan=False, default=str), run_id])
