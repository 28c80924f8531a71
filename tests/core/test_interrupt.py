"""A run killed mid-epoch (SIGKILL) or stopped (SIGINT) leaves a consistent, readable database.

The runs are sized so that no machine finishes them while the test waits (100,000 epochs: hours even at a hundred
epochs a second), and the test waits on an event — two epochs in the database — not on a clock."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lossaudit.core.store import connect_readonly

pytestmark = pytest.mark.fault("interrupts")


def _start(db, tmp_path):
    env = dict(os.environ, LOSSAUDIT_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "lossaudit.cli", "run", "--db", str(db), "--method", "sgd", "--corruption",
           "random_labels:0.5", "--epochs", "100000", "--device", "cpu", "--model", "mlp"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)


def _default_sigint():
    """Ctrl-C as a terminal delivers it: a shell running the tests in the background (no job control) starts its
    children with SIGINT ignored, and Python then never turns SIGINT into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_epochs(db, proc, n, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if db.exists():
            try:
                with connect_readonly(db, timeout=5) as con:
                    row = con.execute("select max(epochs_done) from runs").fetchone()
                if row and row[0] and row[0] >= n:
                    return
            except Exception:
                pass  # the writer may be creating the file
        time.sleep(0.1)
    pytest.fail("run did not log epochs in time")


def _check_consistent(db):
    with connect_readonly(db) as con:
        (run_id, n_train, done, status), = con.execute("select run_id, n_train, epochs_done, status from runs").fetchall()
        n_obs, max_epoch = con.execute("select count(*), max(epoch) from observations").fetchone()
        steps_epoch = con.execute("select max(epoch) from steps").fetchone()[0]
        backprops = con.execute("select max(backprops) from steps").fetchone()[0]
        n_examples = con.execute("select count(*) from examples").fetchone()[0]
    assert done >= 2
    assert n_obs == done * n_train and max_epoch == done - 1  # whole epochs only, every one of them
    assert steps_epoch == done - 1 and backprops == done * n_train
    assert n_examples == n_train
    return status


def test_sigkill_mid_epoch_keeps_every_flushed_epoch(tmp_path):
    db = tmp_path / "k.duckdb"
    proc = _start(db, tmp_path)
    _wait_for_epochs(db, proc, 2)
    time.sleep(0.05)  # into the next epoch
    proc.kill()
    proc.wait()
    assert _check_consistent(db) == "running"  # never marked complete; nobody was left to mark it
    # the next writer on this host notices the dead process and marks the run interrupted
    from lossaudit.core.store import Store
    Store(db).mark_orphans()
    with connect_readonly(db) as con:
        assert con.execute("select status from runs").fetchone()[0] == "interrupted"


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_mark_the_run_interrupted(tmp_path, sig, status):
    db = tmp_path / "i.duckdb"
    proc = _start(db, tmp_path)
    _wait_for_epochs(db, proc, 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err  # 128 + the signal, as shells report a stop
    assert "interrupted" in err
    assert _check_consistent(db) == "interrupted"
