"""Comparisons never mix unrelated runs: experiments, the run that stands for each cell, upfront costs, controls.

Hand-built databases small enough to compute every number by hand (the training-side acceptance test,
with real digits grids, is tests/training/test_grids.py).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossaudit.analysis import metrics
from lossaudit.core.store import SCHEMA_VERSION, Store, connect_readonly
from lossaudit.reports.verdict import alerts, verdicts

SGD_ERRORS = [0.875, 0.5, 0.25, 0.125]  # best 0.125 → target 0.15, reached at 200 + 100 · 0.1 / 0.125 = 280
TRAITS = {"sgd": (False, False, 1.0), "sb": (True, False, 0.5), "rho": (False, False, 0.5), "uniform": (False, True, 0.5)}

# (experiment, method, seed, status, backprops, errors, upfront backprops)
RUNS = [
    ("A", "sgd", 0, "complete", [0, 100, 200, 300], [0.8, 0.3, 0.05, 0.04], 0),  # 1: superseded by run 2
    ("A", "sgd", 0, "complete", [0, 100, 200, 300], SGD_ERRORS, 0),  # 2
    ("A", "sgd", 1, "complete", [0, 100, 200, 300], SGD_ERRORS, 0),  # 3
    ("A", "sb", 0, "complete", [0, 50, 100, 150], SGD_ERRORS, 0),  # 4: 140 to target → 2.0×
    ("A", "sb", 1, "interrupted", [0, 50], [0.875, 0.5], 0),  # 5: not compared unless include_incomplete
    ("A", "rho", 0, "complete", [0, 50, 100, 150], SGD_ERRORS, 100),  # 6: 140 + 100 upfront = 240 → 1.17×
    ("A", "uniform", 0, "complete", [0, 60, 120, 180], SGD_ERRORS, 0),  # 7: 168 → 1.67×, sb's control
    ("B", "sgd", 0, "complete", [0, 100, 200, 300], [0.9, 0.1, 0.05, 0.02], 0),  # 8: another experiment
    ("B", "sb", 0, "complete", [0, 50, 100, 150], [0.9, 0.5, 0.4, 0.3], 0),  # 9
]


def _write(path, runs):
    store = Store(path)
    examples = pd.DataFrame({"example_id": np.arange(2, dtype=np.int32), "label": np.int16([0, 1]),
                             "true_label": np.int16([0, 0]), "corruption_kind": pd.array(["random_labels", None], "string"),
                             "is_corrupted": [True, False], "source": ["a", "b"]})
    for experiment, method, seed, status, backprops, errors, upfront in runs:
        loss_based, is_control, nominal = TRAITS[method]
        config = {"method_traits": {"loss_based": loss_based, "is_control": is_control, "is_baseline": method == "sgd",
                                    "nominal_selectivity": nominal}}
        if upfront:
            config["upfront"] = {"backprops": upfront, "forwards": 3 * upfront, "seconds": 5.0}
        run_id = store.start_run(dict(
            experiment_id=f"exp{experiment}", experiment=f"experiment {experiment}", arm=method, method=method,
            dataset="npz:x", model="mlp", corruption="random_labels:0.5", corruption_kind="random_labels",
            corrupt_frac=0.5, seed=seed, n_train=2, n_test=8, n_classes=2, classes=["a", "b"], epochs=4,
            config=config, command="", version="0", torch_version="", device="cpu"), examples)
        n = len(backprops)
        evals = pd.DataFrame({"step": range(n), "epoch": range(n), "backprops": backprops,
                              "forwards": [2 * b for b in backprops], "forwards_scoring": backprops,
                              "forwards_training": backprops, "seconds": [b / 100 for b in backprops],
                              "test_loss": [1.0] * n, "test_error": errors, "train_loss": [None] + [1.0] * (n - 1)})
        store.append(run_id, evals=evals, epochs_done=n)
        store.finish(run_id, status)
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("mixed") / "m.duckdb", RUNS)


def _table1(path, **kw):
    with connect_readonly(path) as con:
        return metrics.table1(con, **kw)


def test_each_experiment_equals_the_same_runs_in_a_database_of_their_own(mixed, tmp_path):
    together = _table1(mixed)
    assert list(dict.fromkeys(together.experiment_id)) == ["expA", "expB"]
    for experiment in ("A", "B"):
        alone = _write(tmp_path / f"{experiment}.duckdb", [r for i, r in enumerate(RUNS, 1)
                                                            if r[0] == experiment and i not in (1, 5)])
        mine = together[together.experiment_id == f"exp{experiment}"].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, _table1(alone))


def test_table1_by_hand_with_upfront_cost_and_control(mixed):
    t = _table1(mixed).query("experiment_id == 'expA'").set_index("method")
    assert list(t.index) == ["sgd", "sb", "uniform", "rho"]  # the control right after the method it controls
    assert t.loc["sgd", "target_error"] == pytest.approx(0.15)  # run 1 (best 0.04) is superseded, not averaged in
    assert t.loc["sgd", "backprops_to_target"] == pytest.approx(280.0) and t.loc["sgd", "seeds"] == "0,1"
    assert t.loc["sb", "speedup_backprops"] == pytest.approx(2.0) and t.loc["sb", "seeds"] == "0"  # run 5 left out
    assert t.loc["sb", "control"] == "uniform" and t.loc["uniform", "speedup_backprops"] == pytest.approx(280 / 168)
    assert t.loc["rho", "upfront_backprops"] == 100
    assert t.loc["rho", "backprops_to_target"] == pytest.approx(240.0)
    assert t.loc["rho", "speedup_backprops"] == pytest.approx(280 / 240)
    assert t.loc["rho", "speedup_backprops_selection_only"] == pytest.approx(2.0)
    assert t.loc["rho", "cell"] == "1.17× (12.5%); selection only 2.00×"
    # passes: 3 forwards per backprop (2 logged + the upfront's 3 per its backprop); seconds: 1/100 per backprop + 5
    assert t.loc["rho", "passes_to_target"] == pytest.approx(3 * 140 + 4 * 100)
    assert t.loc["rho", "seconds_to_target"] == pytest.approx(1.4 + 5.0)
    b = _table1(mixed).query("experiment_id == 'expB'").set_index("method")
    assert b.loc["sgd", "target_error"] == pytest.approx(0.024)  # its own sgd, not experiment A's


def test_standing_and_include_incomplete(mixed):
    with connect_readonly(mixed) as con:
        standing = metrics.run_standing(con).set_index("run_id")
        included = metrics.run_standing(con, include_incomplete="true").set_index("run_id")
    assert standing.loc[1, "standing"] == "superseded" and standing.loc[1, "compared_run_id"] == 2
    assert standing.loc[5, "standing"] == "incomplete" and pd.isna(standing.loc[5, "compared_run_id"])
    assert (standing.drop(index=[1, 5]).standing == "compared").all()
    assert included.loc[5, "standing"] == "compared" and included.loc[1, "standing"] == "superseded"
    t = _table1(mixed, include_incomplete=True).query("experiment_id == 'expA'").set_index("method")
    # seed 1 stops at 50 backprops: the seed-mean curve stops there too and never reaches the target
    assert t.loc["sb", "seeds"] == "0,1" and np.isnan(t.loc["sb", "speedup_backprops"])


def test_verdicts_and_alerts_per_experiment(mixed):
    with connect_readonly(mixed) as con:
        standing, summary = metrics.run_standing(con), metrics.run_summary(con)
        table = metrics.table1(con)
        speeds = metrics.seed_speedups(con)
    found = {v.experiment_id: v for v in verdicts(table, summary, standing, speeds)}
    # sb's second seed is interrupted, so one seed stands: a speedup, but no interval to show it is one
    assert found["expA"].level == "inconclusive"
    assert "sb, the fastest, reaches the target at 2.00× (1 seed: no interval)" in found["expA"].headline
    assert any("uniform, the random subset of its size: 1.67× (1 seed: no interval)" in d
               for d in found["expA"].details)
    assert found["expB"].level == "does-not-pay-off"
    lines = alerts(table, summary, standing)
    assert any("run 1 (sgd, random_labels:0.5, seed 0) is superseded by run 2" in a for a in lines["expA"])
    assert "run 5 (sb, random_labels:0.5, seed 1) is interrupted after 2 of 4 epochs: not compared " \
           "(--include-incomplete lets it stand for its cell)" in lines["expA"]
    assert any("sb (random_labels:0.5) has seed(s) 0 of the experiment's 0, 1" in a for a in lines["expA"])
    assert not any("run 1" in a for a in lines["expB"])


def test_experiments_query(mixed):
    with connect_readonly(mixed) as con:
        e = metrics.experiments(con).set_index("experiment_id")
    assert e.loc["expA", "runs"] == 7 and e.loc["expA", "complete"] == 6 and e.loc["expA", "seeds"] == "0, 1"
    assert e.loc["expB", "methods"] == "sb, sgd"


def test_corrupted_share_counts_the_trained_population(tmp_path):
    """Canaries are trained and corrupted: the base rate counts them as the numerator does; an original that a
    label canary replaced, or a holdout example, is in neither."""
    store = Store(tmp_path / "c.duckdb")
    roles = ["train", "train", "train", "train", "canary", "canary", "replaced", "holdout"]
    corrupted = [True, False, False, False, True, True, False, True]
    n = len(roles)
    examples = pd.DataFrame({"example_id": np.arange(n, dtype=np.int32), "label": np.zeros(n, np.int16),
                             "true_label": np.zeros(n, np.int16),
                             "corruption_kind": pd.array(["gaussian" if c else None for c in corrupted], "string"),
                             "is_corrupted": corrupted, "source": [str(i) for i in range(n)], "role": roles})
    run_id = store.start_run(dict(experiment_id="e", experiment="e", arm="sgd", method="sgd", dataset="x", model="mlp",
                                  corruption="gaussian:0.25", corruption_kind="gaussian", corrupt_frac=0.25, seed=0,
                                  n_train=6, n_test=0, n_classes=1, classes=["a"], epochs=1, config={}, command="",
                                  version="0", torch_version="", device="cpu"), examples)
    obs = pd.DataFrame({"step": np.zeros(6, np.int32), "epoch": np.zeros(6, np.int32),
                        "example_id": np.arange(6, dtype=np.int32), "mode": ["train"] * 6,
                        "loss": np.ones(6, np.float32), "entropy": np.ones(6, np.float32),
                        "margin": np.ones(6, np.float32), "p_true": np.ones(6, np.float32),
                        "pred": np.zeros(6, np.int16), "select_prob": np.ones(6, np.float32),
                        "picked": np.int16([1, 1, 1, 1, 1, 1]), "stale": [False] * 6})
    store.append(run_id, observations=obs, epochs_done=1)
    with connect_readonly(store.path) as con:
        share = metrics.corrupted_share_by_epoch(con).iloc[0]
        summary = metrics.run_summary(con).iloc[0]
    assert share.base_rate == pytest.approx(3 / 6) and share.corrupted_share == pytest.approx(3 / 6)
    assert summary.base_rate == pytest.approx(0.5) and summary.corrupted_share == pytest.approx(0.5)


def test_a_database_of_an_older_schema_is_upgraded_on_first_read(tmp_path, capsys):
    """A file as lossaudit 0.1 wrote it (its schema, kept in tests/core/data): a run, its examples, an audit."""
    import duckdb

    from lossaudit.training.config import RunConfig
    from lossaudit.training.identity import identify

    path = tmp_path / "old.duckdb"
    cfg = RunConfig(method="sb", params={"beta": 3.0}, epochs=5)
    audit = {"verdict": "caution", "verdict_line": "caution: ...", "verdict_rule": "rule", "n_examples": 2,
             "canaries": {"random_labels": 1}, "score": "aum", "score_table": [{"score": "aum", "auroc_mean": 0.9}],
             "noise_share": 0.05, "noise_interval": [0.01, 0.09], "noise_method": "m", "n_suspects": 1,
             "threshold": 0.5, "canary_recall": {"random_labels": 1.0}, "replay": [], "notes": [],
             "top_suspects": [{"rank": 1, "example_id": 1, "path": "b.png", "given_label": "a",
                               "suggested_label": "b", "suspicion_score": 0.9, "signals": "aum"}]}
    old = {k: v for k, v in cfg.to_dict().items() if k != "params"} | {  # lossaudit 0.1's flat method parameters
        "beta": 3.0, "floor": 0.0, "history_size": 1024, "warmup_epochs": 1, "staleness": 1, "selectivity": 0.5,
        "max_selectivity": 0.5, "method_resolved": "sb", "audit": audit,
        "irreducible_model": {"backprops": 7, "forwards": 9, "seconds": 1.5}}
    con = duckdb.connect(str(path))
    con.execute((Path(__file__).parents[1] / "core" / "data" / "schema_v1.sql").read_text())
    con.execute("insert into meta values ('schema_version', '1')")
    con.execute("""insert into runs (run_id, method, dataset, model, corruption, corrupt_frac, seed, n_train, n_test,
                   n_classes, classes, epochs, epochs_done, config, version, started_at, status, device)
                   values (1, 'sb', 'digits', 'resnet8', 'none', 0, 0, 2, 2, 10, ['a', 'b'], 5, 5, ?, '0.1.0', now(),
                   'complete', 'cpu')""", [json.dumps(old)])
    con.execute("insert into examples values (1, 0, 0, 0, null, false, 'a.png', 'train', null), "
                "(1, 1, 0, 1, 'random_labels', true, 'b.png', 'train', null)")
    con.close()
    with connect_readonly(path) as con:
        row = con.execute("select experiment_id, experiment, arm, config from runs").fetchone()
        version = con.execute("select value from meta where key = 'schema_version'").fetchone()[0]
    who = identify(cfg, "cpu")
    assert row[:3] == (who.experiment_id, who.experiment, "sb beta=3") and version == SCHEMA_VERSION
    config = json.loads(row[3])
    assert config["method_traits"] == {"loss_based": True, "is_control": False, "is_baseline": False,
                                       "nominal_selectivity": pytest.approx(1 / 4), "switch": None,
                                       "diagnostics": [], "upfront": None}
    assert config["upfront"]["backprops"] == 7
    assert "upgraded" in capsys.readouterr().err
    with connect_readonly(path) as con:
        assert con.execute("select corruption_kind from examples order by example_id").fetchall() == [
            (None,), ("random_labels",)]
        assert con.execute("select verdict, noise_low, n_suspects from audits").fetchone() == ("caution", 0.01, 1)
        assert con.execute("select rank, path, suggested_label from suspects").fetchall() == [(1, "b.png", "b")]


def test_a_target_the_untrained_model_meets_gives_no_speedup_anywhere(tmp_path):
    """sgd never gets below 90% error: 1.2 × 90% = 108% is met before any training, so no cost is measured and the
    verdict says why, instead of a table with 0 backprops to target next to a verdict of "never reached"."""
    db = _write(tmp_path / "t.duckdb", [("C", "sgd", 0, "complete", [0, 100, 200], [0.95, 0.9, 0.92], 0),
                                        ("C", "sb", 0, "complete", [0, 50, 100], [0.95, 0.93, 0.91], 0)])
    t = _table1(db).set_index("method")
    assert not t.target_usable.any() and t.target_error.iloc[0] == pytest.approx(1.08)
    assert t.backprops_to_target.isna().all() and t.speedup_backprops.isna().all()
    with connect_readonly(db) as con:
        (verdict,) = verdicts(metrics.table1(con), metrics.run_summary(con), metrics.run_standing(con),
                              metrics.seed_speedups(con))
    assert verdict.level == "no-baseline" and "is not below the untrained model's error" in verdict.headline
