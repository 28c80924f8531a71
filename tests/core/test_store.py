"""The database contract: schema round trip, documented columns, read/write locking across processes."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from lossaudit.core.errors import UserError
from lossaudit.core.store import SCHEMA_VERSION, TABLES, Store, connect_readonly


def _run_row(**over):
    row = dict(experiment_id="e1", experiment="digits · mlp · 1 epochs", arm="sgd", method="sgd", dataset="digits", model="mlp", corruption="random_labels:0.5",
               corruption_kind="random_labels", corrupt_frac=0.5, seed=3, n_train=4, n_test=2, n_classes=2,
               classes=["a", "<b>"], epochs=1, config={"lr": 0.1, "nested": {"x": [1, 2]}}, command="lossaudit run",
               version="0", torch_version="t", device="cpu")
    row.update(over)
    return row


def test_schema_round_trip(tmp_path):
    store = Store(tmp_path / "r.duckdb")
    examples = pd.DataFrame({"example_id": np.arange(4, dtype=np.int32), "label": np.array([0, 1, 1, 0], np.int16),
                             "true_label": np.array([0, 1, 0, 0], np.int16),
                             "corruption_kind": pd.array(["random_labels", None, "random_labels", None], dtype="string"),
                             "is_corrupted": [True, False, True, False], "source": ["a/0.png", "b/1.png", "a/2.png", "b/3.png"]})
    run_id = store.start_run(_run_row(), examples)
    obs = pd.DataFrame({"step": np.array([0, 0, 1, 1], np.int32), "epoch": np.zeros(4, np.int32),
                        "example_id": np.arange(4, dtype=np.int32), "mode": ["train", "train", "score", "score"],
                        "loss": np.float32([0.1, 0.2, 0.3, 0.4]), "entropy": np.float32([0.5] * 4),
                        "margin": np.float32([1, -1, 2, -2]), "p_true": np.float32([0.9, 0.8, 0.7, 0.6]),
                        "pred": np.int16([0, 0, 1, 1]), "select_prob": np.float32([1, 1, 0.25, 0.75]),
                        "picked": np.int16([1, 1, 0, 2]), "stale": [False, False, False, True]})
    import pyarrow as pa
    steps = pa.table({"step": [0, 1], "epoch": [0, 0], "lr": [0.1, 0.1], "n_scored": [0, 2], "n_backprop": [2, 2],
                      "forwards_scoring": [0, 2], "forwards_training": [2, 4], "backprops": [2, 4],
                      "train_loss": [0.5, 0.25], "seconds": [0.1, 0.2],
                      "state": pa.array([[], [("tau", 1.5), ("is_on", 1.0)]], type=pa.map_(pa.string(), pa.float64()))})
    evals = pd.DataFrame({"step": [0, 2], "epoch": [0, 0], "backprops": [0, 4], "forwards": [0, 6],
                          "forwards_scoring": [0, 2], "forwards_training": [0, 4], "seconds": [0.0, 0.2],
                          "test_loss": [0.7, 0.6], "test_error": [0.5, 0.25], "train_loss": [None, 0.4]})
    store.append(run_id, observations=obs, steps=steps, evals=evals, epochs_done=1)
    store.finish(run_id, "complete")
    with connect_readonly(store.path) as con:
        run = con.execute("select * from runs").df().iloc[0]
        assert run.run_id == 1 and run.status == "complete" and run.finished_at is not None
        assert list(run.classes) == ["a", "<b>"] and run.epochs_done == 1
        assert con.execute("select config->'nested'->'x'->>1 from runs").fetchone()[0] == "2"
        back = con.execute("select * exclude (run_id) from observations order by example_id").df()
        pd.testing.assert_frame_equal(back, obs, check_dtype=False)
        assert con.execute("select state['tau'] from steps where step = 1").fetchone()[0] == 1.5
        assert con.execute("select count(*) from examples where corruption_kind is null").fetchone()[0] == 2
        assert con.execute("select train_loss from evals where step = 0").fetchone()[0] is None


def test_every_column_is_documented_in_the_database(tmp_path):
    Store(tmp_path / "d.duckdb")
    with connect_readonly(tmp_path / "d.duckdb") as con:
        cols = con.execute("select table_name, column_name, comment from duckdb_columns() "
                           "where table_name in (select unnest(?::varchar[]))", [list(TABLES)]).fetchall()
    assert {t for t, _, _ in cols} == set(TABLES)
    undocumented = [(t, c) for t, c, comment in cols if not comment]
    assert undocumented == []


def test_run_ids_count_up_and_statuses_are_checked(tmp_path):
    store = Store(tmp_path / "c.duckdb")
    empty = pd.DataFrame({"example_id": [], "label": [], "true_label": [], "corruption_kind": pd.array([], dtype="string"),
                          "is_corrupted": [], "source": []}).astype({"example_id": "int32", "is_corrupted": bool})
    assert [store.start_run(_run_row(), empty) for _ in range(3)] == [1, 2, 3]
    import duckdb
    with pytest.raises(duckdb.ConstraintException):
        store.finish(1, "done")  # not a valid status
    with connect_readonly(store.path) as con:
        assert con.execute("select count(*) from runs where status = 'running'").fetchone()[0] == 3


def test_readers_wait_for_a_writer_in_another_process(tmp_path):
    path = tmp_path / "l.duckdb"
    Store(path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time, sys
        con = duckdb.connect({str(path)!r})
        print('locked', flush=True)
        time.sleep(1.5)
        con.close()
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    with connect_readonly(path, timeout=30) as con:
        assert con.execute("select value from meta where key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    assert time.monotonic() - started > 0.5  # it really had to wait for the other process
    holder.wait()


def test_orphaned_runs_are_marked_interrupted(tmp_path):
    store = Store(tmp_path / "o.duckdb")
    empty = pd.DataFrame({"example_id": pd.array([], "int32"), "label": pd.array([], "int16"),
                          "true_label": pd.array([], "int16"), "corruption_kind": pd.array([], dtype="string"),
                          "is_corrupted": pd.array([], bool), "source": pd.array([], "string")})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = store.start_run(_run_row(), empty)
    alive = store.start_run(_run_row(), empty)
    with store.transaction() as con:
        con.execute("update runs set pid = ? where run_id = ?", [int(dead.stdout), orphan])
    assert store.mark_orphans() == [orphan]
    with connect_readonly(store.path) as con:
        status = dict(con.execute("select run_id, status from runs").fetchall())
    assert status == {orphan: "interrupted", alive: "running"}


def test_missing_database_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        with connect_readonly(tmp_path / "nope.duckdb"):
            pass
    with pytest.raises(UserError, match="folder"):
        Store(tmp_path / "no" / "such" / "dir.duckdb")


# What each earlier schema lacked: (tables it had not, audits columns it had not); an older one lacks the later ones too.
ADDED = {"2": (["predictions"], ["fold_runs", "noise_by_kind", "uniform_weight", "per_class", "confusion",
                                  "scores_file"]),
         "3": (["test_predictions"], ["noise_reference", "n_trusted", "transition"])}


@pytest.mark.parametrize("version", sorted(ADDED))
def test_a_database_of_schema_2_or_3_gains_the_tables_and_columns_added_since(tmp_path, version):
    import duckdb
    path = tmp_path / f"v{version}.duckdb"
    Store(path)
    later = [v for v in sorted(ADDED) if v >= version]
    tables = [t for v in later for t in ADDED[v][0]]
    columns = [c for v in later for c in ADDED[v][1]]
    con = duckdb.connect(str(path))  # as that version of lossaudit left it
    for table in tables:
        con.execute(f"drop table {table}")
    for column in columns:
        con.execute(f"alter table audits drop column {column}")
    con.execute("update meta set value = ? where key = 'schema_version'", [version])
    con.close()
    with connect_readonly(path) as con:
        have = {c for c, in con.execute("select column_name from duckdb_columns() where table_name = 'audits'").fetchall()}
        assert set(columns) <= have
        assert con.execute("select value from meta where key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
        assert all(con.execute(f"select count(*) from {t}").fetchone()[0] == 0 for t in tables)


def test_a_schema_4_database_gains_the_traits_each_method_declares_now(tmp_path):
    """Runs stored before schema 5 get their method's switch, diagnostics and upfront work; a recorded run none."""
    import json

    import duckdb

    from lossaudit.training.methods import METHODS
    path = tmp_path / "v4.duckdb"
    Store(path)
    con = duckdb.connect(str(path))  # as lossaudit 0.4 left it: the four traits of that version only
    old = {"loss_based": True, "is_control": False, "is_baseline": False, "nominal_selectivity": 0.5}
    switched = next(name for name, cls in METHODS.items() if cls.switch and cls.diagnostics)
    for run_id, method, extra in ((1, switched, {}), (2, "my-loop", {"recorder": True}), (3, "retired", {})):
        con.execute("insert into runs (run_id, method, dataset, model, corruption, corrupt_frac, seed, n_train, n_test, n_classes, "
                    "classes, epochs, epochs_done, config, version, started_at, status) values (?, ?, 'digits', "
                    "'resnet8', 'none', 0, 0, 2, 2, 10, ['a'], 1, 1, ?, '0.4.0', now(), 'complete')",
                    [run_id, method, json.dumps({"method": method, "method_traits": old} | extra)])
    con.execute("update meta set value = '4' where key = 'schema_version'")
    con.close()
    with connect_readonly(path) as con:
        traits = {r: json.loads(c)["method_traits"] for r, c in con.execute("select run_id, config from runs").fetchall()}
    declared = METHODS[switched]
    assert traits[1]["switch"] == declared.switch and [d["key"] for d in traits[1]["diagnostics"]] == [
        d.key for d in declared.diagnostics]
    assert all(d["threshold"] is None or d["threshold"] > 0 for d in traits[1]["diagnostics"])
    for run_id in (2, 3):
        assert traits[run_id] == old | {"switch": None, "diagnostics": [], "upfront": None}


def test_a_schema_5_database_gains_the_logging_forwards_and_the_per_method_verdicts(tmp_path):
    import duckdb
    path = tmp_path / "v5.duckdb"
    Store(path)
    added = {"steps": "forwards_logging", "evals": "forwards_logging", "audits": "method_verdicts"}
    con = duckdb.connect(str(path))  # as the version of schema 5 left it
    for table, column in added.items():
        con.execute(f"alter table {table} drop column {column}")
    con.execute("update meta set value = '5' where key = 'schema_version'")
    con.close()
    with connect_readonly(path) as con:
        have = set(con.execute("select table_name || '.' || column_name from duckdb_columns()").fetchall())
        assert {(f"{t}.{c}",) for t, c in added.items()} <= have
        assert con.execute("select value from meta where key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION


def test_a_schema_6_database_keeps_its_examples_and_may_hold_validation_examples(tmp_path):
    import duckdb
    path = tmp_path / "v6.duckdb"
    Store(path)
    con = duckdb.connect(str(path))  # as the version of schema 6 left it: no validation columns, the old role check
    for column in ("val_loss", "val_error"):
        con.execute(f"alter table evals drop column {column}")
    con.execute("drop table examples")
    con.execute("""create table examples (run_id integer not null, example_id integer not null,
                   label smallint not null, true_label smallint not null, corruption_kind varchar,
                   is_corrupted boolean not null, source varchar not null,
                   role varchar not null default 'train' check (role in ('train', 'holdout', 'canary', 'replaced')),
                   irreducible_loss float)""")
    con.execute("insert into examples values (1, 0, 3, 3, null, false, 'a.png', 'train', null), "
                "(1, 1, 4, 2, 'random_labels', true, 'b.png', 'holdout', 0.5)")
    con.execute("update meta set value = '6' where key = 'schema_version'")
    con.close()
    Store(path)  # upgrades
    con = duckdb.connect(str(path))
    assert con.execute("select example_id, label, true_label, corruption_kind, role, irreducible_loss from examples "
                       "order by example_id").fetchall() == [(0, 3, 3, None, "train", None),
                                                             (1, 4, 2, "random_labels", "holdout", 0.5)]
    con.execute("insert into examples values (1, 2, 0, 0, null, false, 'c.png', 'validation', null)")
    assert {"val_loss", "val_error"} <= {r[0] for r in con.execute(
        "select column_name from duckdb_columns() where table_name = 'evals'").fetchall()}
    assert not con.execute("select count(*) from duckdb_tables() where table_name = 'examples_before_7'").fetchone()[0]
    with pytest.raises(duckdb.ConstraintException):
        con.execute("insert into examples values (1, 3, 0, 0, null, false, 'd.png', 'nonsense', null)")
    con.close()
