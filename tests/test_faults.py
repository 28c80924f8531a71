"""Faults a user meets by mistake or an attacker tries on purpose, each class as its own cases (tests/conftest.py
FAULTS; docs/RELIABILITY.md lists them): one line naming the input and what would be valid, a non-zero exit, no
traceback — and every file in the working folder as it was, byte for byte (none changed, none added)."""

import hashlib
import os
import shutil

import duckdb
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lossaudit.cli import app
from lossaudit.core.errors import UserError
from lossaudit.core.store import SCHEMA_VERSION
from lossaudit.core.files import replacing, write_text

RUN_ANY = ["run", "--epochs", "1", "--model", "mlp", "--device", "cpu", "--method", "sgd", "--corruption", "none"]
RUN = [*RUN_ANY, "--train-size", "200"]  # on digits


def snapshot(folder) -> dict:
    """Every file under `folder` (the loaders' cache aside) with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.parts}


@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_db):
    """A working folder as a user has one: a database (and other names for it), a config, data sets of images, a
    CSV and an npz, outputs from earlier commands, and files that are not lossaudit databases."""
    d = tmp_path_factory.mktemp("faults")
    shutil.copy(digits_db, d / "db.duckdb")
    (d / "link.duckdb").symlink_to(d / "db.duckdb")
    os.link(d / "db.duckdb", d / "hard.duckdb")
    (d / "exp").mkdir()
    shutil.copy(digits_db, d / "exp" / "runs.parquet")  # a database that happens to bear an export's name
    shutil.copy(digits_db, d / "fold.parquet")
    (d / "grid.toml").write_text('epochs = 1\nmodel = "mlp"\ntrain_size = 200\n')
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for c in ("a", "b"):
        (d / "imgs" / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / "imgs" / c / f"{i}.png")
            rows.append(f"imgs/{c}/{i}.png,{c}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    from sklearn.datasets import load_digits
    bunch = load_digits()
    np.savez(d / "data.npz", x=np.round(bunch.images[:300] * 255 / 16).astype(np.uint8), y=bunch.target[:300])
    for name in ("existing.html", "existing.json", "existing.csv", "s.csv"):
        (d / name).write_text("an earlier result\n")
    _not_ours(d)
    return d


def _not_ours(d) -> None:
    """Files that lossaudit must refuse and never alter: another program's database, a page, an empty file, and
    lossaudit databases of a newer, an unknown and a damaged schema."""
    con = duckdb.connect(str(d / "foreign.duckdb"))
    con.execute("create table measurements (a int)")
    con.close()
    (d / "page.html").write_text("<html>not a database</html>")
    (d / "empty.duckdb").write_bytes(b"")
    for name, sql in (("newer", "update meta set value = '99' where key = 'schema_version'"),
                      ("unknown", "update meta set value = 'banana' where key = 'schema_version'"),
                      ("no_table", "drop table suspects"),
                      ("no_column", "alter table evals drop column train_loss")):
        shutil.copy(d / "db.duckdb", d / f"{name}.duckdb")
        con = duckdb.connect(str(d / f"{name}.duckdb"))
        con.execute(sql)
        con.close()
    whole = (d / "db.duckdb").read_bytes()
    (d / "truncated.duckdb").write_bytes(whole[:len(whole) // 2])  # a copy cut short
    (d / "flipped.duckdb").write_bytes(whole[:5000] + b"\xff" * 4 + whole[5004:])  # a block that fails its checksum
    (d / "noise.duckdb").write_bytes(np.random.default_rng(3).integers(0, 256, 300_000, dtype=np.uint8).tobytes())


def refused(work, args: list[str], words: str) -> str:
    """Run `lossaudit ARGS` (with {d} the working folder) and check the refusal: status 2, one line `error: ...` with
    `words` in it, no exception, and no file of the folder changed or added. Returns the line."""
    args = [a.format(d=work) for a in args]
    before = snapshot(work)
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("lossaudit: ")]  # run's header
    assert result.exit_code == 2 and isinstance(result.exception, (SystemExit, type(None))), result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and words.format(d=work) in lines[0], result.output
    assert snapshot(work) == before
    return lines[0]


CLOBBER = [
    (["report", "--html", "{d}/db.duckdb", "--db", "{d}/db.duckdb"], "is --db '{d}/db.duckdb', which this command reads"),
    (["report", "--json", "{d}/./db.duckdb", "--db", "{d}/db.duckdb", "--force"], "which this command reads"),
    (["report", "--html", "{d}/link.duckdb", "--db", "{d}/db.duckdb", "--force"], "writing it would destroy it"),
    (["report", "--html", "{d}/hard.duckdb", "--db", "{d}/db.duckdb", "--force"], "writing it would destroy it"),
    (["report", "--json", "{d}/db.duckdb.wal", "--db", "{d}/db.duckdb"], "is --db's log"),
    (["report", "--json", "{d}/r.out", "--html", "{d}/./r.out", "--db", "{d}/db.duckdb"], "are the same file"),
    (["report", "--json", "{d}/db.duckdb", "--db", "{d}/fold.parquet", "--db", "{d}/db.duckdb"], "is --db"),
    (["sql", "select 1", "-o", "{d}/db.duckdb", "--db", "{d}/db.duckdb"], "is --db"),
    (["sql", "select 1", "-o", "{d}/link.duckdb", "--db", "{d}/db.duckdb", "--force"], "is --db"),
    (["sql", "select 1", "--format", "parquet", "-o", "{d}/hard.duckdb", "--db", "{d}/db.duckdb", "--force"], "is --db"),
    (["export", "--to", "{d}/exp", "--db", "{d}/exp/runs.parquet", "--force"], "is --db"),
    (["merge", "{d}/db.duckdb", "{d}/link.duckdb"], "is the output"),
    (["merge", "{d}/db.duckdb", "{d}/hard.duckdb"], "is the output"),
    (["merge", "{d}/new.duckdb", "{d}/db.duckdb", "{d}/hard.duckdb"], "listed twice"),
    (["audit", "csv:{d}/labels.csv", "--out", "{d}/labels", "--db", "{d}/a.duckdb", "--force"], "is the dataset"),
    (["audit", "npz:{d}/data.npz", "--db", "{d}/data.npz"], "is the dataset"),
    (["audit", "imagefolder:{d}/imgs", "--out", "{d}/imgs/a/s", "--db", "{d}/a.duckdb"], "lies inside the dataset"),
    (["audit", "imagefolder:{d}/imgs", "--db", "{d}/imgs/x.duckdb"], "lies inside the dataset"),
    (["audit", "csv:{d}/labels.csv", "--db", "{d}/imgs/a/0.png", "--out", "{d}/o"], "is one of the files of dataset"),
    (["audit", "--from-db", "{d}/fold.parquet", "--run", "1", "--out", "{d}/fold", "--force"], "is --from-db"),
    ([*RUN, "--config", "{d}/grid.toml", "--db", "{d}/grid.toml"], "is --config"),
    ([*RUN, "--dataset", "npz:{d}/data.npz", "--db", "{d}/data.npz"], "is the dataset"),
    ([*RUN_ANY, "--dataset", "imagefolder:{d}/imgs", "--db", "{d}/imgs/x.duckdb"], "lies inside the dataset"),
    ([*RUN_ANY, "--dataset", "csv:{d}/labels.csv", "--db", "{d}/imgs/b/3.png"], "is one of the files of dataset"),
]


@pytest.mark.fault("clobber")
@pytest.mark.parametrize("args, words", CLOBBER, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_an_output_that_is_an_input_is_refused_whatever_its_name(work, args, words):
    refused(work, args, words)


EXISTING = [
    (["report", "--html", "{d}/existing.html", "--db", "{d}/db.duckdb"], "'{d}/existing.html' already exists; add --force"),
    (["report", "--json", "{d}/existing.json", "--db", "{d}/db.duckdb"], "already exists; add --force"),
    (["sql", "select 1", "-o", "{d}/existing.csv", "--db", "{d}/db.duckdb"], "already exists; add --force"),
    (["audit", "digits", "--out", "{d}/s", "--db", "{d}/a.duckdb"], "'{d}/s.csv' already exists; add --force"),
    (["audit", "--from-db", "{d}/db.duckdb", "--run", "1", "--out", "{d}/s"], "already exists; add --force"),
]


@pytest.mark.fault("overwrite")
@pytest.mark.parametrize("args, words", EXISTING, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_an_existing_output_is_replaced_only_with_force(work, args, words):
    refused(work, args, words)


@pytest.mark.fault("overwrite")
def test_force_replaces_the_file_whole(tmp_path, digits_db):
    target = tmp_path / "out.csv"
    target.write_text("an earlier result\n")
    result = CliRunner().invoke(app, ["sql", "select 42 as answer", "-o", str(target), "--db", str(digits_db),
                                      "--force", "--format", "csv"])
    assert result.exit_code == 0 and target.read_text() == "answer\n42\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left beside it


@pytest.mark.fault("overwrite")
@pytest.mark.parametrize("stop", [RuntimeError("the writer failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path, stop):
    target = tmp_path / "report.html"
    target.write_text("the old report")
    with pytest.raises(type(stop)):
        with replacing(target, "--html") as tmp:
            tmp.write_text("half of a new rep")
            raise stop
    assert target.read_text() == "the old report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    write_text(target, "the new report", "--html")
    assert target.read_text() == "the new report"


@pytest.mark.fault("overwrite")
def test_writing_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    write_text(tmp_path / "link.json", "new", "--json")
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real.json").read_text() == "new"


NOT_OURS = {"foreign": "is not a lossaudit database (it holds table(s) measurements",
            "page": "not a valid DuckDB database file", "empty": "not a valid DuckDB database file",
            "newer": "has schema '99', newer than this lossaudit's", "unknown": "has schema 'banana', which no lossaudit",
            "no_table": f"is damaged: it says schema {SCHEMA_VERSION} but lacks table suspects",
            "no_column": f"is damaged: it says schema {SCHEMA_VERSION} but lacks evals.train_loss",
            "truncated": "Could not read enough bytes", "flipped": "the file is damaged or cut short",
            "noise": "not a valid DuckDB database file"}
COMMANDS = {"sql": ["sql", "select * from runs", "--db", "{f}"], "report": ["report", "--json", "{d}/r.json", "--db", "{f}"],
            "export": ["export", "--to", "{d}/exported", "--db", "{f}"], "run": [*RUN, "--db", "{f}"],
            "merge into": ["merge", "{f}", "{d}/db.duckdb"], "merge from": ["merge", "{d}/m.duckdb", "{f}"],
            "audit --from-db": ["audit", "--from-db", "{f}", "--run", "1", "--out", "{d}/o"]}


@pytest.mark.fault("databases")
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", NOT_OURS)
def test_a_file_that_is_not_a_lossaudit_database_of_this_schema_is_refused_and_never_altered(work, name, command):
    path = work / (f"{name}.html" if name == "page" else f"{name}.duckdb")
    line = refused(work, [a.replace("{f}", str(path)) for a in COMMANDS[command]], NOT_OURS[name])
    assert str(path) in line


NUMBERS = [
    ([*RUN, "--epochs", "100000000000"], "--epochs must be in 1..100,000, got 100000000000"),
    ([*RUN, "--lr", "inf"], "--lr must be in (0, 1,000,000] and finite, got inf"),
    ([*RUN, "--lr", "nan"], "--lr must be in (0, 1,000,000] and finite, got nan"),
    ([*RUN, "--lr", "1e300"], "--lr must be in (0, 1,000,000], got 1e+300"),
    ([*RUN, "--momentum", "nan"], "--momentum must be in [0, 1) and finite"),
    ([*RUN, "--weight-decay", "1e300"], "--weight-decay must be in [0, 1]"),
    ([*RUN, "--eval-every", "inf"], "--eval-every must be > 0 and finite"),
    ([*RUN, "--lr-milestones", "0.5,nan"], "--lr-milestones must be fractions in (0, 1]"),
    ([*RUN, "--canaries", "inf"], "--canaries must be in [0, 0.5) and finite"),
    ([*RUN, "--train-size", "5"], "--train-size 5: a stratified subset needs at least one example of each of the 10"),
    ([*RUN, "--test-size", "3"], "--test-size 3: a stratified subset needs at least one example of each of the 10"),
    ([*RUN, "--corruption", "random_labels:nan"], "random_labels:nan"),
    ([*RUN, "--corruption", "none,gaussian:1e-300"], "'gaussian:1e-300': 1e-300 of the 200 training examples rounds to "
                                                     "none of them; valid: a share above 0.0025"),
    ([*RUN, "--method", "sb", "--history-size", "100000000000"], "--history-size must be in 1..10,000,000"),
    ([*RUN, "--method", "sb", "--beta", "1e300"], "--beta must be in (0, 100]"),
    ([*RUN, "--method", "sb", "--staleness", "1000000000"], "--staleness must be in 1..100,000"),
    ([*RUN, "--method", "sb", "--warmup-epochs", "1000000000"], "--warmup-epochs must be in 0..100,000"),
    ([*RUN, "--method", "rho", "--il-epochs", "100000000"], "--il-epochs must be in 0..100,000"),
    ([*RUN, "--method", "sgd,rho", "--train-size", "15"], "--method rho: its stratified holdout"),
    ([*RUN, "--threads", "-1"], "--threads must be >= 0"),
    ([*RUN, "--nproc", "0"], "--nproc must be >= 1"),
    (["audit", "digits", "--epochs", "1000000000", "--db", "{d}/a.duckdb", "--out", "{d}/o"], "--epochs must be in"),
    (["audit", "digits", "--canaries", "0.9", "--db", "{d}/a.duckdb", "--out", "{d}/o"], "--canaries must be in"),
    (["audit", "digits", "--canaries", "nan", "--db", "{d}/a.duckdb", "--out", "{d}/o"], "--canaries must be"),
    (["audit", "digits", "--image-size", "2", "--db", "{d}/a.duckdb", "--out", "{d}/o"], "--image-size must be"),
    (["audit", "digits", "--train-size", "15", "--db", "{d}/a.duckdb", "--out", "{d}/o"], "cross-fitted proxies"),
    (["audit", "npz:{d}/tiny_test.npz", "--trusted-size", "1", "--db", "{d}/a.duckdb", "--out", "{d}/o"],
     "--trusted-size 1: the test examples read against are a stratified subset"),
    (["report", "--json", "{d}/r.json", "--db", "{d}/db.duckdb", "--gallery-size", "-4"], "--gallery-size must be >= 1"),
]


@pytest.fixture(scope="module")
def tiny_test(work):
    """An npz with its own test split of two classes."""
    rng = np.random.default_rng(1)
    np.savez(work / "tiny_test.npz", x=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y=np.arange(60) % 2,
             x_test=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), y_test=np.arange(20) % 2)


@pytest.mark.fault("numbers")
@pytest.mark.parametrize("args, words", NUMBERS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_numbers_out_of_range_are_refused_before_anything_is_written(work, tiny_test, args, words):
    if args[0] == "run":
        args = [*args, "--db", "{d}/db.duckdb"]
    refused(work, args, words)


ODD_PATHS = [
    (["sql", "select 1", "-o", "/dev/null", "--db", "{d}/db.duckdb", "--force"], "is not a regular file"),
    (["sql", "select 1", "-o", "{d}/" + "x" * 300 + ".csv", "--db", "{d}/db.duckdb"], "File name too long"),
    (["report", "--json", "{d}/r.json", "--db", "{d}/imgs"], "database '{d}/imgs' is a folder, not a database file"),
    ([*RUN, "--db", "{d}/imgs"], "--db '{d}/imgs' is a folder"),
    (["merge", "{d}/imgs", "{d}/db.duckdb"], "'{d}/imgs' is a folder"),
    ([*RUN, "--config", "{d}/binary.toml"], "is not a text file (TOML or YAML)"),
]


@pytest.mark.fault("usage")
@pytest.mark.parametrize("args, words", ODD_PATHS, ids=lambda v: " ".join(v)[:80] if isinstance(v, list) else None)
def test_odd_paths_are_one_line(work, args, words):
    (work / "binary.toml").write_bytes(bytes(range(256)))
    refused(work, args, words)


USAGE = [
    ([*RUN, "--epochs", "1e20"], "Invalid value for '--epochs'"),
    ([*RUN, "--epochz", "3"], "No such option: --epochz"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["report", "--json", "{d}/r.json", "--gallery-size", "x"], "Invalid value for '--gallery-size'"),
    (["merge"], "Missing argument"),
    (["audit", "digits", "--from-db", "{d}/db.duckdb"], "not both"),
]


@pytest.mark.fault("usage")
@pytest.mark.parametrize("args, words", USAGE, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_misused_commands_and_flags_are_one_line(work, args, words):
    refused(work, args, words)


@pytest.mark.fault("answers")
def test_a_diverging_run_is_marked_failed_with_one_line_and_the_grid_goes_on(tmp_path):
    db = tmp_path / "d.duckdb"
    result = CliRunner().invoke(app, [*RUN_ANY[:-4], "--method", "sgd", "--corruption", "none,random_labels:0.5",
                                      "--train-size", "200", "--lr", "1e6", "--db", str(db)])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    failed = [line for line in result.output.splitlines() if " failed: " in line]
    assert len(failed) == 2 and all("training diverged" in line and "try a lower --lr" in line for line in failed)
    assert "Traceback" not in result.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from runs where status = 'failed'").fetchone()[0] == 2
    con.close()


@pytest.mark.fault("answers")
def test_an_audit_whose_proxies_learned_nothing_says_unknown_and_lists_no_suspect(tmp_path):
    """Labels drawn at random: nothing to learn, so no reading — never a confident number."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    y = np.random.default_rng(0).permutation(bunch.target)
    np.savez(tmp_path / "random.npz", x=np.round(bunch.images * 255 / 16).astype(np.uint8), y=y)
    result = CliRunner().invoke(app, ["audit", f"npz:{tmp_path / 'random.npz'}", "--db", str(tmp_path / "a.duckdb"),
                                      "--out", str(tmp_path / "s"), "--epochs", "3", "--device", "cpu", "--strict"])
    assert result.exit_code == 5, result.output
    verdict = next(line for line in result.output.splitlines() if line.startswith("verdict:"))
    assert verdict.startswith("verdict: unknown: the proxies' held-out accuracy") and "near chance" in verdict
    assert "estimated noise share: cannot be given" in result.output
    import pandas as pd
    assert len(pd.read_csv(tmp_path / "s.csv")) == 0 and len(pd.read_csv(tmp_path / "s_scores.csv")) > 1000


@pytest.mark.fault("answers")
def test_an_interval_every_resample_agrees_on_reaches_what_the_data_cannot_tell_from_none():
    from lossaudit.audit.noise_share import estimate_share, resolution
    rng = np.random.default_rng(0)
    users, canaries = rng.uniform(0, 1, 2000), rng.uniform(2, 3, 30)  # every canary above every example
    assert resolution(users, canaries) == pytest.approx(3 / 2000)
    est = estimate_share(users, (np.zeros(2000, int), np.ones(2000, int)), np.ones((2, 2)),
                         {"random_labels": canaries}, n_boot=20)
    assert est.share == 0 and est.high == pytest.approx(3 / 2000) and est.high - est.low > 0
    half = np.concatenate([rng.uniform(2, 3, 15), rng.uniform(0, 1, 15)])  # half the canaries above every example
    assert resolution(users, half) == pytest.approx(3 / (2000 * 0.5))


@pytest.mark.fault("answers")
def test_a_verdict_that_cannot_be_given_is_unknown_with_its_reason():
    import pandas as pd

    from lossaudit.audit.noise import judge
    verdict, line = judge(1.0, 1.0, 10, pd.DataFrame(), "sb50", n_label_canaries=30, advice="",
                          cannot="every bootstrap resample read 100.0%")
    assert verdict == "unknown" and line == "unknown: every bootstrap resample read 100.0%"


def test_a_user_error_is_always_one_line():
    assert "\n" not in str(UserError("a\nmessage  over\n\nlines"))


@pytest.mark.fault("answers")
def test_an_audit_with_a_class_too_small_to_read_says_unknown(tmp_path):
    """Learnable classes and a trusted test split, but one class of 6 images: its labels cannot be read."""
    rng = np.random.default_rng(0)
    y = np.r_[np.arange(240) % 2, np.full(6, 2)]
    x = rng.integers(0, 128, (len(y), 8, 8), dtype=np.uint8)
    x[np.arange(len(y)), 3 * y] += 120  # a bright row per class
    yt = np.arange(60) % 3
    xt = rng.integers(0, 128, (60, 8, 8), dtype=np.uint8)
    xt[np.arange(60), 3 * yt] += 120
    np.savez(tmp_path / "small_class.npz", x=x, y=y, x_test=xt, y_test=yt)
    result = CliRunner().invoke(app, ["audit", f"npz:{tmp_path / 'small_class.npz'}", "--db", str(tmp_path / "a.duckdb"),
                                      "--out", str(tmp_path / "s"), "--epochs", "3", "--model", "mlp", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    verdict = next(line for line in result.output.splitlines() if line.startswith("verdict:"))
    assert verdict == ("verdict: unknown: too few examples per class to read their labels: 2 (6); at least 10 per "
                       "class are needed"), verdict


@pytest.mark.fault("answers")
def test_non_finite_logged_values_stop_the_run_instead_of_being_logged():
    import pandas as pd

    from lossaudit.core.errors import TrainingFailed
    from lossaudit.training.logs import check_logged
    epoch = pd.DataFrame({"example_id": [3, 4, 5], "loss": [1.0, 2.0, 0.5], "entropy": [1.0, 1.0, 1.0],
                          "margin": [0.0, -np.inf, 0.1], "p_true": [0.5, 0.4, np.nan]})
    with pytest.raises(TrainingFailed) as err:
        check_logged(epoch, 2, 0.1)
    assert str(err.value) == ("training diverged: 2 of epoch 2's 3 observations have a non-finite loss, entropy, margin "
                              "or p_true (first: example 4); try a lower --lr (now 0.1)")
    check_logged(epoch.iloc[[0]], 2, 0.1)  # finite: nothing said
