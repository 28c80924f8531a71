"""The command line driven as a user would, through typer's CliRunner, on real data and a real database."""

import json

import pytest
from typer.testing import CliRunner

from lossaudit.cli import app
from lossaudit.core.store import TABLES, connect_readonly

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_run_grid_then_sql_and_report(tmp_path):
    db = tmp_path / "g.duckdb"
    result = _invoke("run", "--db", db, "--method", "sgd", "--corruption", "none,shuffle_pixels:0.5",
                     "--seeds", "0,1", "--epochs", "1", "--train-size", "300", "--device", "cpu", "--model", "mlp")
    assert result.exit_code == 0, result.output
    assert "runs written to" in result.output and "shuffle_pixels:0.5" in result.output
    with connect_readonly(db) as con:
        runs = con.execute("select corruption, seed, status, n_train, config->>'model' from runs order by run_id").fetchall()
    assert runs == [("none", 0, "complete", 300, "mlp"), ("none", 1, "complete", 300, "mlp"),
                    ("shuffle_pixels:0.5", 0, "complete", 300, "mlp"), ("shuffle_pixels:0.5", 1, "complete", 300, "mlp")]

    csv = _invoke("sql", "select corruption, count(*) as n from observations join runs using (run_id) "
                         "group by 1 order by 1", "--db", db, "--format", "csv")
    assert csv.exit_code == 0 and csv.output.splitlines() == ["corruption,n", "none,600", "shuffle_pixels:0.5,600"]
    js = _invoke("sql", "select run_id, status from runs order by run_id", "--db", db, "--format", "json")
    assert json.loads(js.output) == [{"run_id": i, "status": "complete"} for i in (1, 2, 3, 4)]
    table = _invoke("sql", "select 41 + 1 as answer", "--db", db)
    assert table.exit_code == 0 and "answer" in table.output and "42" in table.output

    html, js_path = tmp_path / "r.html", tmp_path / "r.json"
    rep = _invoke("report", "--html", html, "--json", js_path, "--db", db)
    assert rep.exit_code == 0, rep.output
    assert "<h2 id=runs>Runs</h2>" in html.read_text() and json.loads(js_path.read_text())["experiments"][0]["table1"]["rows"]


def test_config_file_with_flag_overrides(tmp_path):
    cfg = tmp_path / "grid.toml"
    cfg.write_text('method = ["sgd"]\ncorruption = "gaussian:0.25"\nepochs = 3\ntrain_size = 200\n'
                   'model = "mlp"\ndevice = "cpu"\n')
    db = tmp_path / "c.duckdb"
    result = _invoke("run", "--config", cfg, "--epochs", "1", "--db", db)
    assert result.exit_code == 0, result.output
    with connect_readonly(db) as con:
        epochs, corruption, stored = con.execute("select epochs, corruption, config from runs").fetchone()
    assert (epochs, corruption) == (1, "gaussian:0.25")
    stored = json.loads(stored)
    assert stored["epochs"] == 1 and stored["train_size"] == 200 and stored["lr"] == 0.1  # defaults recorded too


def test_yaml_config(tmp_path):
    pytest.importorskip("yaml")
    cfg = tmp_path / "grid.yaml"
    cfg.write_text("method: sgd\ncorruption: [none]\nepochs: 1\ntrain_size: 150\nmodel: mlp\ndevice: cpu\n")
    db = tmp_path / "y.duckdb"
    assert _invoke("run", "--config", cfg, "--db", db).exit_code == 0
    with connect_readonly(db) as con:
        assert con.execute("select n_train from runs").fetchone()[0] == 150


@pytest.mark.parametrize("args, message", [
    (["run", "--method", "sgd,nope"], "unknown method 'nope'"),
    (["run", "--corruption", "random_labels:1.5"], "outside (0, 1]"),
    (["run", "--dataset", "imagefolder:/no/such/folder"], "does not exist"),
    (["run", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["run", "--model", "resnet9"], "depth must be 6n+2"),
    (["run", "--epochs", "0"], "--epochs must be in 1..100,000"),
    (["run", "--seeds", "a"], "--seeds: 'a' is not a valid int"),
    (["run", "--seeds", "0,-1"], "--seed must be in 0..4294967295, got -1"),
    (["run", "--split-seed", "4294967296"], "--split-seed must be in 0..4294967295"),
    (["run", "--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got tpu"),
    (["run", "--augment", "mixup"], "--augment must be one of auto, crop-flip, none, got mixup"),
    (["run", "--beta", "0", "--method", "sb"], "--beta must be in (0, 100]"),
    (["run", "--beta", "2", "--method", "sgd,uniform"], "--beta is a parameter of sb, sbe, sbp; no method of this grid"),
    (["run", "--il-model", "resnet9", "--method", "rho"], "--il-model must be a model name"),
    (["sql", "select * from nowhere"], "does not exist"),
    (["report", "--html", "x.html"], "does not exist"),
])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, args, message):
    result = runner.invoke(app, [*args, "--db", str(tmp_path / "missing.duckdb")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_config_keys_and_formats(tmp_path, digits_db):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("epochz = 3\n")
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2 and "unknown config key(s) epochz" in result.output
    bad_sql = runner.invoke(app, ["sql", "selec 1", "--db", str(digits_db)])
    assert bad_sql.exit_code == 2 and bad_sql.output.startswith("error: query failed")
    fmt = runner.invoke(app, ["sql", "select 1", "--db", str(digits_db), "--format", "xml"])
    assert fmt.exit_code == 2 and "valid: table, csv, json" in fmt.output
    write = runner.invoke(app, ["sql", "drop table runs", "--db", str(digits_db)])
    assert write.exit_code == 2 and "read-only" in write.output


def test_named_queries_analyses_and_export(digits_db, tmp_path):
    listing = _invoke("sql", "--list", "--db", digits_db)
    assert listing.exit_code == 0
    for name in ("run_summary", "example_scores", "pick_gallery", "table1", "separability"):
        assert name in listing.output
    table1 = _invoke("sql", "--query", "table1", "--db", digits_db, "--format", "json")
    rows = json.loads(table1.output)
    assert {r["method"] for r in rows} == {"sgd"} and rows[0]["speedup_backprops"] == 1.0
    gallery = _invoke("sql", "-q", "pick_gallery", "-p", "k=1", "-p", "run_id=2", "--db", digits_db, "--format", "csv")
    assert gallery.exit_code == 0 and len(gallery.output.strip().splitlines()) == 1 + 2 * 10  # header + most/least per class
    out = tmp_path / "scores.parquet"
    saved = _invoke("sql", "-q", "example_scores", "--db", digits_db, "--format", "parquet", "--output", out)
    assert saved.exit_code == 0
    import pandas as pd
    scores = pd.read_parquet(out)
    assert len(scores) == 2 * 1437 and "forgetting_score" in scores
    export = _invoke("export", "--to", tmp_path / "parquet", "--db", digits_db)
    assert export.exit_code == 0
    with connect_readonly(digits_db) as con:
        n_obs = con.execute("select count(*) from observations").fetchone()[0]
    assert len(pd.read_parquet(tmp_path / "parquet" / "observations.parquet")) == n_obs
    assert {p.name for p in (tmp_path / "parquet").iterdir()} == {f"{t}.parquet" for t in TABLES}


@pytest.mark.parametrize("args, message", [
    (["--query", "nope"], "unknown query 'nope'"),
    (["--query", "pick_gallery", "--param", "k"], "expected NAME=VALUE"),
    (["--query", "pick_gallery", "--param", "z=1"], "takes no parameter(s) z"),
    (["--query", "curves", "--param", "y=1"], "takes no parameter(s) y"),
    (["--query", "table1", "--format", "parquet"], "add --output PATH"),
    (["select 1", "--query", "table1"], "either SQL"),
    (["--query", "separability", "--param", "mode=eval"], "valid: any, score, train"),
])
def test_bad_named_query_input(digits_db, args, message):
    result = runner.invoke(app, ["sql", *args, "--db", str(digits_db)])
    assert result.exit_code == 2 and result.output.startswith("error: ") and message in result.output, result.output


def test_experiments_are_listed_selected_and_carried_by_table1(tmp_path):
    db = tmp_path / "x.duckdb"
    for epochs in ("1", "2"):
        result = _invoke("run", "--db", db, "--method", "sgd", "--corruption", "none", "--epochs", epochs,
                         "--train-size", "200", "--device", "cpu", "--model", "mlp")
        assert result.exit_code == 0, result.output
    listing = _invoke("sql", "--list", "--db", db)
    lines = [line for line in listing.output.splitlines() if " · mlp · " in line]
    assert len(lines) == 2 and "digits · mlp · 1 epochs · train_size=200" in lines[0]
    eid = lines[1].split()[0]
    rows = json.loads(_invoke("sql", "--query", "table1", "--db", db, "--format", "json").output)
    assert {r["experiment"] for r in rows} == {"digits · mlp · 1 epochs · train_size=200",
                                                "digits · mlp · 2 epochs · train_size=200"}
    incomplete = _invoke("sql", "-q", "table1", "-p", "include_incomplete=true", "--db", db, "--format", "json")
    assert json.loads(incomplete.output) == rows
    bad = runner.invoke(app, ["sql", "-q", "table1", "-p", "include_incomplete=perhaps", "--db", str(db)])
    assert bad.exit_code == 2 and "valid: true, false" in bad.output
    js = tmp_path / "one.json"
    assert _invoke("report", "--json", js, "--db", db, "--experiment", eid[:6]).exit_code == 0
    assert [e["experiment_id"] for e in json.loads(js.read_text())["experiments"]] == [eid]
    both = _invoke("report", "--json", js, "--db", db, "--include-incomplete", "--force")
    assert both.exit_code == 0 and len(json.loads(js.read_text())["experiments"]) == 2
    unknown = runner.invoke(app, ["report", "--json", str(js), "--db", str(db), "--experiment", "nope", "--force"])
    assert unknown.exit_code == 2 and "is no experiment of this database; valid: " in unknown.output
    assert eid in unknown.output
