"""A grid run as a job array: `lossaudit run --shard I/N` into one database per shard, `lossaudit merge`, and the
merged file read like the grid trained in one process."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lossaudit.analysis import metrics
from lossaudit.core.merge import merge
from lossaudit.core.store import connect_readonly
from lossaudit.cli import app
from lossaudit.core.errors import UserError

GRID = ["--dataset", "digits", "--model", "mlp", "--epochs", "2", "--train-size", "300", "--method", "sgd,sb50,uniform50",
        "--corruption", "none,random_labels:0.5", "--seeds", "0,1", "--device", "cpu", "--threads", "1"]
SAME = ["corruption", "method", "seeds", "best_test_error", "target_error", "backprops_to_target", "speedup_backprops",
        "passes_to_target", "speedup_passes", "cell"]  # training seconds differ between any two processes


def _run(*args):
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    _run("run", *GRID, "--db", tmp / "one.duckdb")
    for i in range(4):
        _run("run", *GRID, "--db", tmp / f"shard-{i}.duckdb", "--shard", f"{i}/4")
    return tmp


def test_four_shards_merged_give_the_table_1_of_one_process(sharded):
    out = _run("merge", sharded / "merged.duckdb", *[sharded / f"shard-{i}.duckdb" for i in range(4)])
    assert "merged 12 run(s) from 4 database(s)" in out
    tables = {}
    for name in ("one", "merged"):
        with connect_readonly(sharded / f"{name}.duckdb") as con:
            tables[name] = metrics.table1(con)[SAME].sort_values(["corruption", "method"]).reset_index(drop=True)
            counts = con.execute("select count(*) from observations").fetchone()[0]
            tables[f"{name}_obs"] = counts
    pd.testing.assert_frame_equal(tables["one"], tables["merged"])
    assert tables["one_obs"] == tables["merged_obs"] > 0


def test_each_shard_holds_the_cells_of_its_residue(sharded):
    plan = _run("run", *GRID, "--db", sharded / "one.duckdb", "--plan")
    rows = [line.split("│")[1:-1] for line in plan.splitlines() if line.startswith("│")]
    assert [int(r[0]) for r in rows] == list(range(12)) and all("skip" in r[5] for r in rows)  # all complete in one
    for i in range(4):
        with connect_readonly(sharded / f"shard-{i}.duckdb") as con:
            cells = con.execute("select method, corruption, seed from runs order by run_id").fetchall()
        expected = [(r[2].strip(), r[3].strip(), int(r[4])) for r in rows if int(r[0]) % 4 == i]
        assert cells == expected


def test_a_cell_in_two_inputs_is_refused_unless_told_which_wins(sharded, tmp_path):
    shard = sharded / "shard-0.duckdb"
    with pytest.raises(UserError, match="complete in more than one database.*--keep first or --keep last"):
        merge(tmp_path / "m.duckdb", [shard, sharded / "one.duckdb"])
    assert not (tmp_path / "m.duckdb").exists()  # nothing half-merged
    copied = merge(tmp_path / "k.duckdb", [shard, sharded / "one.duckdb"], keep="first")
    assert copied == {shard: 3, sharded / "one.duckdb": 9} and _runs(tmp_path / "k.duckdb") == 12
    with pytest.raises(UserError, match="--keep 'newest' is not valid; valid: first, last"):
        merge(tmp_path / "x.duckdb", [shard], keep="newest")


def test_audit_rows_follow_their_renumbered_runs(sharded, tmp_path):
    from lossaudit.auditing import run_audit
    x = np.random.default_rng(0).integers(0, 256, (200, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(200) % 2)
    run_audit(f"npz:{tmp_path / 'd.npz'}", db=tmp_path / "audit.duckdb", out=tmp_path / "s", epochs=2, canaries=0.2,
              model="mlp", device="cpu", quiet=True)
    merge(tmp_path / "both.duckdb", [sharded / "shard-1.duckdb", tmp_path / "audit.duckdb"])
    with connect_readonly(tmp_path / "both.duckdb") as con:
        run_id, folds = con.execute("select run_id, fold_runs from audits").fetchone()
        proxies = [r for r, in con.execute("select run_id from runs where config->>'audit_proxy' = 'true' "
                                           "order by run_id").fetchall()]
        suspects = con.execute("select distinct run_id from suspects").fetchall()
    assert folds == proxies == [4, 5] and run_id == 4 and suspects in ([], [(4,)])


def test_report_reads_several_databases_at_once(sharded, tmp_path):
    _run("report", "--json", tmp_path / "r.json", *[a for i in range(4) for a in ("--db", sharded / f"shard-{i}.duckdb")])
    twin = json.loads((tmp_path / "r.json").read_text())
    assert twin["n_runs"] == 12 and "shard-0.duckdb + " in twin["database"]
    (experiment,) = twin["experiments"]
    assert {r["method"] for r in experiment["table1"]["rows"]} == {"sgd", "sb50", "uniform50"}


def test_bad_shards_name_the_value():
    for bad, says in (("4/4", "I must be in 0..N-1"), ("1-4", "give I/N"), ("0/0", "N must be at least 1")):
        result = CliRunner().invoke(app, ["run", *GRID, "--shard", bad])
        assert result.exit_code != 0 and says in result.output, result.output


def _runs(path) -> int:
    with connect_readonly(path) as con:
        return con.execute("select count(*) from runs").fetchone()[0]
