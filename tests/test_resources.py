"""Resources that fail under a command: a full disk, a read-only folder, a database another process holds.

Each is made for real where the test can: a size-limited tmpfs (full disk) and a tmpfs remounted read-only need
root and `mount`, which a CI container usually has. Where they cannot be made, the full disk is an injected
OSError(ENOSPC) at the store's write call and the read-only folder a folder without write permission (for a user
other than root); the test says which in its name's parameter. The locked database is always real: another process
holding DuckDB's write lock."""

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from lossaudit.core.connection import _connect
from lossaudit.core.store import Store, connect_readonly
from lossaudit.cli import app
from lossaudit.core.errors import UserError

from tests.test_faults import snapshot

pytestmark = pytest.mark.fault("resources")


def _mountable() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *, read_only: bool = False):
    """A tmpfs of `size` mounted at `folder` (remounted read-only after `read_only` files are in: yields a function
    that does it), unmounted afterwards; None when it cannot be mounted here."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        yield None
        return
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _run(args, cwd, **env):
    return subprocess.run([sys.executable, "-m", "lossaudit.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, **env))


def _check_whole_epochs(db: Path) -> tuple[str, int]:
    with connect_readonly(db) as con:
        status, done, n_train, error = con.execute("select status, epochs_done, n_train, error from runs").fetchone()
        n_obs, last = con.execute("select count(*), coalesce(max(epoch), -1) from observations").fetchone()
    assert n_obs == done * n_train and last == done - 1  # the epochs before the fault, whole
    return status, error


@pytest.mark.skipif(not _mountable(), reason="needs root and mount (the injected variant below runs instead)")
def test_a_full_disk_stops_the_run_with_one_line_marks_it_failed_and_keeps_its_epochs(tmp_path):
    """real: a 4 MB tmpfs fills up a few epochs into a run of digits."""
    with tmpfs(tmp_path / "fs", "4m") as mounted:
        if mounted is None:
            pytest.skip("mount refused here")
        db = tmp_path / "fs" / "x.duckdb"
        done = _run(["run", "--dataset", "digits", "--model", "mlp", "--method", "sgd", "--corruption", "none",
                     "--epochs", "500", "--device", "cpu", "--db", db], tmp_path, LOSSAUDIT_CACHE=str(tmp_path / "c"))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot write to ") and "No space left on device" in last, last
        assert "is marked failed, its finished epochs are kept in" in last
        status, error = _check_whole_epochs(db)
        assert status == "failed" and "No space left on device" in error


def test_a_full_disk_injected_at_the_write_call_ends_the_same_way(tmp_path, monkeypatch):
    """injected: OSError(ENOSPC) from the store's third epoch write, in this process."""
    calls = {"n": 0}
    original = Store.append

    def append(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            with self.transaction():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "append", append)
    db = tmp_path / "x.duckdb"
    result = CliRunner().invoke(app, ["run", "--model", "mlp", "--method", "sgd", "--corruption", "none",
                                      "--epochs", "5", "--device", "cpu", "--db", str(db)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and lines[-1].startswith("error: cannot write to database"), result.output
    assert "No space left on device; run 1 is marked failed" in lines[-1] and "Traceback" not in result.output
    status, error = _check_whole_epochs(db)
    assert status == "failed" and "No space left on device" in error


def test_a_full_disk_under_a_checkpoint_is_one_line_too(tmp_path, monkeypatch):
    """injected: the checkpoint's file write fails with ENOSPC (the real full disk above may hit it too)."""
    import builtins
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        if str(file).endswith(".tmp") and "w" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    db = tmp_path / "x.duckdb"
    result = CliRunner().invoke(app, ["run", "--model", "mlp", "--method", "sgd", "--corruption", "none",
                                      "--epochs", "3", "--device", "cpu", "--db", str(db)])
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and last.startswith("error: cannot write to checkpoint"), result.output
    assert "No space left on device; run 1 is marked failed" in last and not list(tmp_path.rglob("*.tmp"))
    assert _check_whole_epochs(db)[0] == "failed"


@contextlib.contextmanager
def read_only_folder(tmp_path: Path, fill):
    """A folder that cannot be written, `fill(folder)` having put files in first: a tmpfs remounted read-only
    (root), or a folder without write permission (another user); skips when neither holds."""
    folder = tmp_path / "ro"
    if _mountable():
        with tmpfs(folder, "16m") as remount:
            if remount is not None:
                fill(folder)
                remount()
                yield folder
                return
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions and mount is refused: no read-only folder can be made here")
    folder.mkdir()
    fill(folder)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


READ_ONLY = [
    (["run", "--model", "mlp", "--epochs", "1", "--train-size", "200", "--method", "sgd", "--db", "{ro}/new.duckdb"],
     "'{ro}/new.duckdb': folder '{ro}' cannot be written"),
    (["run", "--model", "mlp", "--epochs", "1", "--train-size", "200", "--method", "sgd", "--db", "{ro}/db.duckdb"],
     "cannot be written"),
    (["report", "--html", "{ro}/r.html", "--db", "{ro}/db.duckdb"], "--html '{ro}/r.html': folder '{ro}' cannot be"),
    (["sql", "select 1", "-o", "{ro}/x.csv", "--db", "{ro}/db.duckdb"], "--output '{ro}/x.csv': folder"),
    (["export", "--to", "{ro}/exported", "--db", "{ro}/db.duckdb"], "cannot create the folder"),
    (["audit", "digits", "--out", "{ro}/s", "--db", "{tmp}/a.duckdb"], "--out '{ro}/s.csv': folder '{ro}' cannot"),
    (["merge", "{ro}/m.duckdb", "{ro}/db.duckdb"], "cannot be written"),
]


@pytest.mark.parametrize("args, words", READ_ONLY, ids=lambda v: " ".join(v[:3]) if isinstance(v, list) else None)
def test_a_read_only_folder_is_one_line_naming_the_file_before_any_work(tmp_path, digits_db, args, words):
    def fill(folder):
        shutil.copy(digits_db, folder / "db.duckdb")

    with read_only_folder(tmp_path, fill) as ro:
        before = snapshot(ro)
        args = [a.format(ro=ro, tmp=tmp_path) for a in args]
        result = CliRunner().invoke(app, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert words.format(ro=ro, tmp=tmp_path) in lines[0], lines[0]
        assert "Read-only file system" in lines[0] or "Permission denied" in lines[0] or "cannot create" in lines[0]
        assert snapshot(ro) == before
        assert not (tmp_path / "a.duckdb").exists()  # the audit trained nothing


HOLDER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])    # DuckDB's write lock, held ...
    print("locked", flush=True)
    sys.stdin.readline()                 # ... until the test says so
    con.close()
""")


@contextlib.contextmanager
def held(db: Path):
    """Another process holding `db`'s write lock until the block ends (an event, not a clock)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_locked_database_is_waited_for_and_the_wait_is_said(tmp_path, digits_db):
    db = tmp_path / "l.duckdb"
    shutil.copy(digits_db, db)
    with held(db) as holder:
        reader = subprocess.Popen([sys.executable, "-m", "lossaudit.cli", "sql", "select count(*) as n from runs",
                                   "--format", "csv", "--db", str(db)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        said = reader.stderr.readline()  # it waits, and says for what, before the lock is released
        assert said.startswith(f"lossaudit: waiting for {db}: process ") and f"(PID {holder.pid})" in said, said
        assert "holds it for writing (up to 60 s)" in said
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0 and out == "n\n2\n", err


def test_a_lock_held_past_the_timeout_is_one_line_naming_its_holder(tmp_path, digits_db):
    db = tmp_path / "l.duckdb"
    shutil.copy(digits_db, db)
    with held(db) as holder:
        with pytest.raises(UserError) as err:
            _connect(db, read_only=True, timeout=0.5)
    message = str(err.value)
    assert f"database {str(db)!r} is locked by process" in message and f"(PID {holder.pid})" in message
    assert "gave up after 0.5 s — try again when it is done" in message


def test_a_writer_gives_up_on_a_lock_with_one_line_and_writes_nothing(tmp_path, digits_db):
    db = tmp_path / "l.duckdb"
    shutil.copy(digits_db, db)
    before = snapshot(tmp_path)
    with held(db):
        with pytest.raises(UserError) as err:
            Store(db, lock_timeout=0.5)
    assert "is locked by process" in str(err.value) and "\n" not in str(err.value)
    assert snapshot(tmp_path) == before
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from runs").fetchone()[0] == 2


def test_two_processes_started_on_one_grid_train_each_cell_once(tmp_path):
    """The second process sees the cells the first has and skips them, also those the first starts after the
    second has planned (each cell is claimed in the transaction that starts its run)."""
    db = tmp_path / "g.duckdb"
    grid = ["run", "--model", "mlp", "--epochs", "3", "--method", "sgd,uniform50,sb50", "--corruption", "none",
            "--device", "cpu", "--db", db]
    env = dict(os.environ, LOSSAUDIT_CACHE=str(tmp_path / "c"))
    first = subprocess.Popen([sys.executable, "-m", "lossaudit.cli", *map(str, grid)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # a guard against a hang, not a race: the wait ends on the event below
    while True:  # the event: the first process has started its first run
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the first process started no run"
        if db.is_file():
            with contextlib.suppress(Exception):
                with connect_readonly(db, timeout=5) as con:
                    if con.execute("select count(*) from runs").fetchone()[0]:
                        break
        time.sleep(0.05)
    second = _run(grid, tmp_path, LOSSAUDIT_CACHE=str(tmp_path / "c"))
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0 and second.returncode == 0, err[-2000:] + second.stderr[-2000:]
    with connect_readonly(db) as con:
        per_cell = con.execute("select arm, count(*), min(status) from runs group by arm order by arm").fetchall()
    assert per_cell == [("sb50", 1, "complete"), ("sgd", 1, "complete"), ("uniform50", 1, "complete")]


def test_a_cell_held_by_a_live_process_is_not_claimed_or_resumed_and_a_dead_ones_is(tmp_path):
    """The claim itself, without a race: a run marked running by a live process holds its cell (start_run with
    claim writes nothing, rewind refuses it); once that process is gone, both go ahead."""
    import pandas as pd

    from tests.core.test_store import _run_row
    store = Store(tmp_path / "c.duckdb")
    empty = _run_row()
    no_examples = pd.DataFrame({"example_id": pd.array([], "int32"), "label": pd.array([], "int16"),
                                "true_label": pd.array([], "int16"), "corruption_kind": pd.array([], dtype="string"),
                                "is_corrupted": pd.array([], "bool"), "source": pd.array([], "string"),
                                "role": pd.array([], "string")})
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    try:
        run_id = store.start_run(empty, no_examples)
        with store.transaction() as con:
            con.execute("update runs set pid = ? where run_id = ?", [holder.pid, run_id])
        before = snapshot(tmp_path)
        assert store.start_run(empty, no_examples, claim=True) is None
        assert store.rewind(run_id, 0) is False
        assert snapshot(tmp_path) == before  # nothing written
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert store.rewind(run_id, 0) is True  # its process is gone: this one takes the run up
    with store.transaction() as con:
        con.execute("update runs set status = 'interrupted' where run_id = ?", [run_id])
    assert store.start_run(empty, no_examples, claim=True) == run_id + 1  # an interrupted run holds nothing
