"""Grids trained for real on digits: experiments stay apart in one database, and a diverging cell fails alone."""

import dataclasses

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lossaudit.analysis import metrics
from lossaudit.cli import app
from lossaudit.core.errors import TrainingFailed
from lossaudit.core.store import Store, connect_readonly
from lossaudit.training.config import RunConfig
from lossaudit.running import run_grid
from lossaudit.training.prepare import prepare, train_data
from lossaudit.training.trainer import ObservationLog, Trainer

GRID = ["--method", "sgd,sb50,uniform50", "--corruption", "random_labels:0.5", "--train-size", "300",
        "--model", "mlp", "--device", "cpu"]
WALL_CLOCK = ["seconds_to_target", "speedup_seconds"]  # the one thing two identical runs cannot share


def _run(db, *args):
    result = CliRunner().invoke(app, ["run", "--db", str(db), *GRID, *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _table1(db):
    with connect_readonly(db) as con:
        return metrics.table1(con).drop(columns=WALL_CLOCK)


def test_two_experiments_and_a_repeated_cell_in_one_database_equal_their_own(tmp_path):
    shared = tmp_path / "shared.duckdb"
    _run(shared, "--epochs", 2)
    _run(shared, "--epochs", 3)
    again = _run(shared, "--epochs", 2, "--method", "sb50")  # complete already: skipped
    assert "0 cell(s) trained, 0 resumed, 1 skipped" in again.output
    _run(shared, "--epochs", 2, "--method", "sb50", "--restart")  # trained anew: the later run stands for the cell
    _run(tmp_path / "two.duckdb", "--epochs", 2)
    _run(tmp_path / "three.duckdb", "--epochs", 3)

    together = _table1(shared)
    assert together.experiment.nunique() == 2 and set(together.n_seeds) == {1}
    for own in ("two", "three"):
        alone = _table1(tmp_path / f"{own}.duckdb")
        mine = together[together.experiment_id == alone.experiment_id.iloc[0]].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone)
    with connect_readonly(shared) as con:
        standing = metrics.run_standing(con).set_index("run_id")
    assert standing.loc[2, "standing"] == "superseded" and standing.loc[2, "compared_run_id"] == 7
    assert (standing.drop(index=2).standing == "compared").all()


def test_a_diverging_cell_fails_with_its_reason_and_the_next_cell_completes(tmp_path):
    store = Store(tmp_path / "d.duckdb")
    good = RunConfig(method="sb50", epochs=2, train_size=300, model="mlp", device="cpu")
    failures = []
    ids = [c.run_id for c in run_grid([dataclasses.replace(good, lr=1e6), good], store,
                                      on_failed=lambda err, cfg: failures.append((err.run_id, str(err))))]
    with connect_readonly(store.path) as con:
        runs = con.execute("select run_id, status, error, epochs_done from runs order by run_id").fetchall()
        observed = con.execute("select run_id, count(*) from observations group by 1 order by 1").fetchall()
    assert ids == [1, 2] and [r[1] for r in runs] == ["failed", "complete"]
    assert len(failures) == 1 and failures[0][0] == 1 and "\n" not in failures[0][1]
    assert "diverged" in runs[0][2] and "--lr" in runs[0][2] and failures[0][1] == runs[0][2]
    assert runs[0][3] == 0 and observed == [(2, 600)]  # nothing of the diverged epoch is logged


def test_the_command_line_says_one_line_per_failed_run_and_exits_1(tmp_path):
    db = tmp_path / "lr.duckdb"
    result = CliRunner().invoke(app, ["run", "--db", str(db), "--lr", "1e6", "--method", "sgd,sb50", "--corruption",
                                      "none", "--epochs", "2", "--train-size", "300", "--model", "mlp",
                                      "--device", "cpu"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if " failed: " in line]
    assert [line.split(" failed: ")[0] for line in lines] == ["run 1 (sgd, none, seed 0)", "run 2 (sb50, none, seed 0)"]
    assert "Traceback" not in result.output and "2 of 2 run(s) failed" in result.output


def test_a_non_finite_score_during_selection_names_the_step():
    cfg = RunConfig(method="sb50", device="cpu", model="mlp", train_size=300)
    trainer = Trainer(cfg, train_data(prepare(cfg)))
    obs = ObservationLog(300, trainer.device)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    index = torch.arange(128)
    with pytest.raises(TrainingFailed, match=r"non-finite score during selection at step 0 \(epoch 1\): 128 of 128"):
        trainer.selector.select(index, trainer.view(index), index, epoch=1, obs=obs)
