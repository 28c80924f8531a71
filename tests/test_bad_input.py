"""Bad input, as a new user and as an attacker would type it: one line naming the input and what would be valid,
a non-zero exit, no traceback — and the database it pointed at unchanged, row for row."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lossaudit.core.store import TABLES, connect_readonly
from lossaudit.cli import app

RUN = ["run", "--epochs", "1", "--train-size", "200", "--model", "mlp", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_db):
    """Bad files to point at, and the database every case is given."""
    d = tmp_path_factory.mktemp("bad")
    import shutil
    shutil.copy(digits_db, d / "digits.duckdb")  # its own copy: a case that wrongly wrote would not spoil others
    x = np.zeros((20, 8, 8), np.uint8)
    np.savez(d / "strings.npz", x=x, y=np.array(["cat", "dog"] * 10))
    np.savez(d / "negative.npz", x=x, y=-np.ones(20, int))
    np.savez(d / "test_shape.npz", x=x, y=np.arange(20) % 2, x_test=np.zeros((4, 6, 6), np.uint8), y_test=np.zeros(4, int))
    (d / "bad.toml").write_text("epochs = [\n")
    (d / "list.yaml").write_text("- epochs: 3\n")
    (d / "epochs_true.yaml").write_text("epochs: true\n")
    (d / "unknown.toml").write_text("epochz = 3\n")
    (d / "grid.json").write_text("{}")
    (d / "empty.duckdb").write_bytes(b"")
    import duckdb
    con = duckdb.connect(str(d / "foreign.duckdb"))
    con.execute("create table t (a int)")
    con.close()
    (d / "folder").mkdir()
    (d / "exported").mkdir()
    (d / "exported" / "runs.parquet").write_bytes(b"keep me")
    (d / "a_file").write_text("x")
    return {"dir": d, "db": d / "digits.duckdb"}


CASES = [
    # run: methods, corruptions, datasets, models
    (["--method", "sgd,nope"], "unknown method 'nope'; valid:"),
    (["--corruption", "random_labels:1.5"], "share 1.5 is outside (0, 1]"),
    (["--corruption", "blur:0.5"], "unknown corruption 'blur:0.5'"),
    (["--corruption", "gaussian:x"], "is not a number"),
    (["--dataset", "imagefolder:/no/such/folder"], "does not exist"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--dataset", "npz:{dir}/strings.npz"], "y must be a 1-d array of integer class indices"),
    (["--dataset", "npz:{dir}/negative.npz"], "y must be class indices 0, 1, ..., found -1"),
    (["--dataset", "npz:{dir}/test_shape.npz"], "x_test must hold images like x"),
    (["--model", "resnet9"], "depth must be 6n+2"),
    (["--model", "wrn-27-2"], "depth must be 6n+4"),
    (["--model", "vgg16"], "unknown model 'vgg16'"),
    # run: numbers out of range, named
    (["--epochs", "0"], "--epochs must be in 1..100,000, got 0"),
    (["--epochs", "-3"], "--epochs must be in 1..100,000, got -3"),
    (["--seeds", "a"], "--seeds: 'a' is not a valid int"),
    (["--seeds", "0,-1"], "--seed must be in 0..4294967295, got -1"),
    (["--seeds", "99999999999"], "--seed must be in 0..4294967295"),
    (["--split-seed", "-1"], "--split-seed must be in 0..4294967295, got -1"),
    (["--split-seed", "4294967296"], "--split-seed must be in 0..4294967295"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got tpu"),
    (["--augment", "mixup"], "--augment must be one of auto, crop-flip, none, got mixup"),
    (["--batch-size", "0"], "--batch-size must be > 0"),
    (["--lr", "0"], "--lr must be in (0, 1,000,000]"),
    (["--lr", "-1"], "--lr must be in (0, 1,000,000]"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1), got 1.5"),
    (["--weight-decay", "-1"], "--weight-decay must be in [0, 1]"),
    (["--lr-gamma", "0"], "--lr-gamma must be in (0, 1]"),
    (["--lr-milestones", "0.5,2"], "--lr-milestones must be fractions in (0, 1]"),
    (["--eval-every", "0"], "--eval-every must be > 0"),
    (["--train-size", "-5"], "--train-size must be >= 0"),
    (["--train-size", "99999"], "--train-size 99999: the dataset has only 1437 such examples"),
    (["--test-size", "99999"], "--test-size 99999: the dataset has only 360 such examples"),
    (["--test-fraction", "1.0"], "--test-fraction must be in [0, 1)"),
    (["--image-size", "2"], "--image-size must be 0 (keep) or at least 4"),
    (["--image-size", "4000"], "--image-size 4000: "),
    (["--canaries", "0.6"], "--canaries must be in [0, 0.5)"),
    # run: method parameters
    (["--method", "sb", "--beta", "0"], "--beta must be in (0, 100] (100 ≈ 1% selected), got 0"),
    (["--method", "sgd,uniform", "--beta", "2"], "--beta is a parameter of sb, sbe, sbp; no method of this grid"),
    (["--method", "sb", "--floor", "2"], "--floor must be in [0, 1]"),
    (["--method", "sb", "--history-size", "0"], "--history-size must be in 1..10,000,000"),
    (["--method", "sb", "--staleness", "0"], "--staleness must be in 1..100,000"),
    (["--method", "sb", "--warmup-epochs", "-1"], "--warmup-epochs must be in 0..100,000"),
    (["--method", "uniform", "--selectivity", "0"], "--selectivity must be in (0, 1]"),
    (["--method", "vr", "--max-selectivity", "1"], "--max-selectivity must be in (0, 1)"),
    (["--method", "vr", "--tau-th", "-1"], "--tau-th must be >= 0"),
    (["--method", "rho", "--holdout-fraction", "1"], "--holdout-fraction must be in (0, 1)"),
    (["--method", "rho", "--il-model", "resnet9"], "--il-model must be a model name"),
    (["--method", "rho", "--il-epochs", "-1"], "--il-epochs must be in 0..100,000"),
    # run: config files
    (["--config", "{dir}/missing.toml"], "does not exist"),
    (["--config", "{dir}/bad.toml"], "is not valid TOML"),
    (["--config", "{dir}/list.yaml"], "must map keys to values"),
    (["--config", "{dir}/epochs_true.yaml"], "--epochs: True is not a valid int"),
    (["--config", "{dir}/unknown.toml"], "unknown config key(s) epochz"),
    (["--config", "{dir}/grid.json"], "unknown format; valid: .toml, .yaml, .yml"),
]
RUN_CASES = [(["run", *args], message) for args, message in CASES]
OTHER_CASES = [
    (["run", "--device", "cuda"], "CUDA is not available on this machine"),
    (["run", "--db", "/no/such/folder/x.duckdb"], "folder '/no/such/folder' does not exist"),
    # sql: wrong use
    (["sql", ""], "the SQL is empty"),
    (["sql", "select * from nowhere"], "query failed: Catalog Error"),
    (["sql", "drop table runs"], "read-only"),
    (["sql", "selec 1"], "query failed: Parser Error"),
    (["sql", "--query", "nope"], "unknown query 'nope'; valid:"),
    (["sql", "--query", "pick_gallery", "--param", "k"], "expected NAME=VALUE"),
    (["sql", "--query", "pick_gallery", "--param", "z=1"], "takes no parameter(s) z"),
    (["sql", "--query", "example_scores", "--param", "mode=foo"], "mode='foo' is not valid; valid: any, score, train"),
    (["sql", "--query", "separability", "--param", "mode=eval"], "valid: any, score, train"),
    (["sql", "--query", "table1", "--param", "include_incomplete=perhaps"], "valid: true, false"),
    (["sql", "--query", "curves", "--param", "x=epochs"], "unknown curve axis 'epochs'"),
    (["sql", "--query", "table1", "--format", "parquet"], "add --output PATH"),
    (["sql", "select 1", "--query", "table1"], "give either SQL"),
    (["sql", "table1"], "'table1' is the name of a named query; run it with --query table1"),
    (["sql", "select 1", "--format", "xml"], "valid: table, csv, json, parquet"),
    (["sql", "select 1", "--output", "{dir}/folder"], "is a folder"),
    (["sql", "select 1", "--output", "/no/such/folder/x.csv"], "folder '/no/such/folder' does not exist"),
    (["sql", "select 1", "--db", "{dir}/empty.duckdb"], "not a valid DuckDB database"),
    (["sql", "select 1", "--db", "{dir}/foreign.duckdb"], "is not a lossaudit database"),
    (["sql", "select 1", "--db", "{dir}/nothing.duckdb"], "does not exist"),
    # sql: the file system, other databases and extensions are out of reach
    (["sql", "copy (select 1) to '{dir}/other.duckdb'"], "not allowed"),
    (["sql", "copy runs to '{dir}/runs.csv'"], "not allowed"),
    (["sql", "export database '{dir}/dump'"], "not allowed"),
    (["sql", "select * from read_csv('/etc/passwd')"], "not allowed"),
    (["sql", "select * from read_text('/etc/passwd')"], "not allowed"),
    (["sql", "select * from read_blob('/etc/passwd')"], "not allowed"),
    (["sql", "select * from glob('/root/*')"], "not allowed"),
    (["sql", "select * from '{dir}/exported/runs.parquet'"], "not allowed"),
    (["sql", "attach '{dir}/foreign.duckdb' as other"], "not allowed"),
    (["sql", "install httpfs"], "not allowed"),
    (["sql", "load httpfs"], "not allowed"),
    (["sql", "set enable_external_access = true"], "not allowed"),
    # report
    (["report"], "give --html PATH and/or --json PATH"),
    (["report", "--html", "{dir}/folder"], "is a folder"),
    (["report", "--html", "/no/such/folder/r.html"], "folder '/no/such/folder' does not exist"),
    (["report", "--json", "{dir}/r.json", "--where", "nonsense ="], "is not a valid condition on runs"),
    (["report", "--json", "{dir}/r.json", "--where", "run_id in (select 1 from read_csv('/etc/passwd'))"],
     "not allowed"),
    (["report", "--json", "{dir}/r.json", "--run", "99"], "no such run"),
    (["report", "--json", "{dir}/r.json", "--experiment", "nope"], "is no experiment of this database"),
    (["report", "--json", "{dir}/r.json", "--gallery-size", "0"], "--gallery-size must be >= 1"),
    (["report", "--json", "{dir}/r.json", "--db", "{dir}/foreign.duckdb"], "is not a lossaudit database"),
    # export
    (["export", "--to", "{dir}/exported"], "would be overwritten"),
    (["export", "--to", "{dir}/a_file"], "is a file, not a folder"),
    (["export", "--to", "{dir}/out", "--db", "{dir}/empty.duckdb"], "not a valid DuckDB database"),
    # audit
    (["audit", "npz:{dir}/strings.npz"], "integer class indices"),
    (["audit", "imagefolder:/no/such/folder"], "does not exist"),
    (["audit", "digits", "--out", "/no/such/folder/s"], "folder '/no/such/folder' does not exist"),
    (["audit", "digits", "--canaries", "0"], "--canaries must be > 0"),
    (["audit", "digits", "--device", "cuda"], "CUDA is not available"),
    (["audit", "digits", "--epochs", "0"], "--epochs must be in 1..100,000"),
]


DATASET_WORDS = ("dataset", "x_test", "integer class indices", "class indices", "does not exist")
NUMBER_FLAGS = ("--epochs", "--seeds", "--split-seed", "--batch-size", "--lr", "--momentum", "--weight-decay",
                "--lr-gamma", "--lr-milestones", "--eval-every", "--train-size", "--test-size", "--test-fraction",
                "--image-size", "--canaries", "--beta", "--floor", "--history-size", "--staleness", "--warmup-epochs",
                "--selectivity", "--max-selectivity", "--tau-th", "--holdout-fraction", "--il-epochs",
                "--gallery-size")


def kind(args: list[str], message: str) -> str:
    """The fault class of a case (tests/conftest.py FAULTS)."""
    if "not allowed" in message or "read-only" in message:
        return "sandbox"
    if "lossaudit database" in message or "DuckDB database" in message:
        return "databases"
    if (any(a in NUMBER_FLAGS for a in args) and "is a parameter of" not in message) or "share " in message:
        return "numbers"
    if any(w in message for w in DATASET_WORDS) and any(a.startswith(("npz:", "imagefolder:")) for a in args):
        return "datasets"
    if "overwritten" in message or "is a folder" in message or "is a file, not a folder" in message:
        return "overwrite"
    return "usage"


def _counts(db):
    with connect_readonly(db) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def snapshot(folder) -> dict:
    """Every file under `folder` with its sha256: what must not change when a command is refused."""
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.parts}


@pytest.mark.parametrize("args, message", [pytest.param(a, m, marks=pytest.mark.fault(kind(a, m)))
                                           for a, m in RUN_CASES + OTHER_CASES],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_is_one_line_a_nonzero_exit_and_nothing_changed(files, args, message):
    args = [a.format(dir=files["dir"]) for a in args]
    if args[0] == "run" and "--config" not in args:  # (flags would override what a config file case tests)
        args = [*args[:1], *RUN[1:], *args[1:]]  # small, so a case that wrongly trains would be quick to notice
    if "--db" not in args:
        args += ["--db", str(files["db"])]
    before, files_before = _counts(files["db"]), snapshot(files["dir"])
    result = CliRunner().invoke(app, args)
    assert result.exit_code not in (0, None) and (result.exception is None or isinstance(result.exception, SystemExit)), \
        result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.format(dir=files["dir"]) in lines[0], \
        result.output
    assert _counts(files["db"]) == before
    assert snapshot(files["dir"]) == files_before  # no file touched, none added


def test_the_list_is_long():
    assert len(RUN_CASES + OTHER_CASES) >= 60


@pytest.mark.fault("sandbox")
def test_a_database_beside_the_one_read_is_untouched(files, tmp_path):
    """Every way out of the sandbox tried at once, aimed at a second database next to the first."""
    import shutil
    other = tmp_path / "other.duckdb"
    shutil.copy(files["db"], other)
    before = other.read_bytes()
    attempts = [f"copy (select 1) to '{other}'", f"attach '{other}' as o", f"copy runs to '{other}' (format parquet)",
                f"export database '{tmp_path}'", f"select * from read_blob('{other}')"]
    for sql in attempts:
        result = CliRunner().invoke(app, ["sql", sql, "--db", str(files["db"])])
        assert result.exit_code == 2 and "not allowed" in result.output
    where = f"run_id in (select 1 from read_blob('{other}'))"
    result = CliRunner().invoke(app, ["report", "--json", str(tmp_path / "r.json"), "--where", where,
                                      "--db", str(files["db"])])
    assert result.exit_code == 2 and "not allowed" in result.output
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.duckdb"]
    assert json.loads(CliRunner().invoke(app, ["sql", "select count(*) as n from runs", "--format", "json",
                                               "--db", str(files["db"])]).output) == [{"n": 2}]


@pytest.mark.fault("numbers")
def test_a_run_that_cannot_start_leaves_no_database_behind(tmp_path):
    for args in (["--device", "cuda"], ["--train-size", "99999"], ["--beta", "0", "--method", "sb"]):
        fresh = tmp_path / "fresh.duckdb"
        result = CliRunner().invoke(app, [*RUN, *args, "--db", str(fresh)])
        assert result.exit_code == 2 and not fresh.exists(), (args, result.output)
