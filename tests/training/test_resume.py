"""Resume: a grid killed mid-run, rerun with the same command, skips what is complete, resumes what was cut off
from its last finished epoch, trains the rest — and the resumed run equals an unbroken one bit for bit."""

import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from lossaudit.core.store import connect_readonly
from lossaudit.cli import app
from lossaudit.running import checkpoint_folder
from tests.training.sinks import MemorySink

# three cells, 6 epochs each; digits resized to 32×32 so that an epoch lasts long enough to be cut
GRID = ["run", "--method", "sgd,sb50,uniform50", "--corruption", "random_labels:0.5", "--epochs", "6",
        "--train-size", "500", "--image-size", "32", "--model", "resnet8", "--device", "cpu"]
EXCEPT_CLOCK = {"observations": "* exclude (run_id)", "steps": "* exclude (run_id, seconds)",
                "evals": "* exclude (run_id, seconds)"}


def _epochs_done(db, run_id):
    try:
        with connect_readonly(db, timeout=5) as con:
            row = con.execute("select epochs_done, status from runs where run_id = ?", [run_id]).fetchone()
    except Exception:
        return None  # the writer may be creating the file
    return row


def _rows(db, run_id):
    with connect_readonly(db) as con:
        return {t: con.execute(f"select {cols} from {t} where run_id = ? order by all", [run_id]).fetchall()
                for t, cols in EXCEPT_CLOCK.items()}


@pytest.mark.fault("interrupts")
def test_a_killed_grid_resumes_bit_for_bit_and_skips_what_is_complete(tmp_path):
    db, reference = tmp_path / "g.duckdb", tmp_path / "ref.duckdb"
    env = dict(os.environ, LOSSAUDIT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "lossaudit.cli", *GRID, "--db", str(db)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill -9 once the second cell (sb50) has finished 3 of its 6 epochs
        assert proc.poll() is None, proc.stderr.read()
        row = _epochs_done(db, 2)
        if row and row[0] >= 3:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the second run did not reach epoch 3 in time")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cut = _epochs_done(db, 2)
    assert cut[1] == "running" and 3 <= cut[0] < 6, cut
    assert (checkpoint_folder(db) / "run-2.pt").is_file()

    again = CliRunner().invoke(app, [*GRID, "--db", str(db)], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "1 cell(s) trained, 1 resumed, 1 skipped" in again.output
    with connect_readonly(db) as con:
        runs = con.execute("select run_id, method, status, epochs_done from runs order by run_id").fetchall()
    assert runs == [(1, "sgd", "complete", 6), (2, "sb50", "complete", 6), (3, "uniform50", "complete", 6)]
    assert not checkpoint_folder(db).exists()  # checkpoints go when their runs complete

    unbroken = CliRunner().invoke(app, [*GRID[:2], "sb50", *GRID[3:], "--db", str(reference)], catch_exceptions=False)
    assert unbroken.exit_code == 0
    resumed, whole = _rows(db, 2), _rows(reference, 1)
    assert len(resumed["observations"]) == 6 * 500
    for table in EXCEPT_CLOCK:  # every loss, pick, step and test error; only the wall-clock differs
        assert resumed[table] == whole[table], table


@pytest.mark.parametrize("method, params", [("sgd", {}), ("sb50", {}), ("sb", {"staleness": 2}), ("sbe33", {}),
                                            ("vr50", {"tau_th": 1.01}), ("uniform33", {}), ("rho", {}),
                                            ("sbp", {}), ("infobatch50", {})])
def test_every_method_resumes_exactly_from_its_checkpoint(method, params):
    import pandas as pd

    from lossaudit.training.config import RunConfig
    from lossaudit.training.prepare import prepare, train_data
    from lossaudit.training.trainer import Trainer

    cfg = RunConfig(method=method, params=params, corruption="random_labels:0.5", epochs=4, train_size=300,
                    model="mlp", device="cpu", eval_every=0.3)
    data = train_data(prepare(cfg))
    whole = MemorySink(at=2)
    Trainer(cfg, data).fit(whole)
    resumed = MemorySink()
    trainer = Trainer(cfg, data)
    trainer.load_state_dict(whole.state)
    trainer.fit(resumed, start_epoch=2)
    assert sorted(resumed.epochs) == [2, 3]
    for epoch in (2, 3):
        for mine, theirs in zip(resumed.epochs[epoch], whole.epochs[epoch]):
            pd.testing.assert_frame_equal(mine.reset_index(drop=True), theirs.reset_index(drop=True))
