"""Every method trained for real on digits, through `lossaudit run`, and its logs checked for consistency
and for the paper's planted truth: loss-based selection over-picks mislabeled examples."""

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

from lossaudit.cli import app
from lossaudit.core.store import Store, connect_readonly
from lossaudit.training.config import RunConfig
from lossaudit.training.methods import all_names
from lossaudit.running import run_one
from lossaudit.training.prepare import prepare, train_data
from lossaudit.training.trainer import Trainer


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory):
    """Every method and preset, 3 epochs (one warm-up, two selecting) on 400 digits with 50% random labels."""
    db = tmp_path_factory.mktemp("grid") / "grid.duckdb"
    result = CliRunner().invoke(app, ["run", "--db", str(db), "--method", ",".join(all_names()),
                                      "--corruption", "random_labels:0.5", "--epochs", "3", "--train-size", "400",
                                      "--model", "mlp", "--device", "cpu", "--staleness", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return db


@pytest.mark.parametrize("method", all_names())
def test_every_method_logs_consistent_counters(grid_db, method):
    with connect_readonly(grid_db) as con:
        run_id, n_train, status = con.execute("select run_id, n_train, status from runs where method = ?",
                                              [method]).fetchone()
        assert status == "complete"
        picked, n_obs, scored_rows = con.execute(
            "select sum(picked), count(*), count(*) filter (where mode = 'score' and not stale) "
            "from observations where run_id = ?", [run_id]).fetchone()
        steps = con.execute("select sum(n_backprop), max(backprops), sum(n_scored), max(forwards_scoring), "
                            "max(forwards_training) from steps where run_id = ?", [run_id]).fetchone()
        last_eval = con.execute("select backprops, forwards_scoring from evals where run_id = ? "
                                "order by backprops desc limit 1", [run_id]).fetchone()
        states = [r[0] for r in con.execute("select state from steps where run_id = ?", [run_id]).fetchall()]
        per_epoch = con.execute("select epoch, list(n_backprop order by step) from steps where run_id = ? "
                                "group by epoch order by epoch", [run_id]).fetchall()
    backprops = steps[1]
    assert picked == backprops == steps[0] == steps[4]  # every pick is back-propagated exactly once
    assert scored_rows == steps[3] == steps[2]  # a fresh scoring row for every scoring forward
    assert last_eval == (backprops, steps[3])
    assert n_obs <= n_train * 3
    for _, sizes in per_epoch:
        assert all(s == 128 for s in sizes[:-1]) and 0 < sizes[-1] <= 128  # exactly B but an epoch's last
    if method.startswith("vr"):  # vr trains everything until its switch turns on
        assert (backprops < n_train * 3) == any(state.get("is_on") == 1.0 for state in states)
    elif method != "sgd":
        assert backprops < n_train * 3  # the selecting epochs back-propagated less than everything


def test_selectivity_of_the_paper_cells(grid_db):
    """Picks in the two selecting epochs, relative to the candidates offered, per method (statistical: ±8 points);
    read from the counters, since a control that scores nothing leaves no row for a candidate it did not pick."""
    with connect_readonly(grid_db) as con:
        rows = dict(con.execute("""
            select r.method, max(s.selection_picks)::double / max(s.selection_candidates)
            from steps s join runs r using (run_id) group by 1""").fetchall())
    for method, share in {"sb50": 0.5, "sb33": 1 / 3, "uniform": 0.5, "uniform33": 1 / 3, "rho": 0.5}.items():
        assert abs(rows[method] - share) < 0.08, (method, rows[method])


@pytest.fixture(scope="module")
def planted_db(tmp_path_factory):
    """sb50 and the uniform control on digits with 50% random labels, 8 epochs, seed 0."""
    store = Store(tmp_path_factory.mktemp("planted") / "p.duckdb")
    cache: dict = {}
    for method in ("sb50", "uniform"):
        run_one(RunConfig(method=method, corruption="random_labels:0.5", epochs=8, device="cpu"), store, cache=cache)
    return store.path


def test_sb_over_picks_planted_random_labels_and_uniform_does_not(planted_db):
    with connect_readonly(planted_db) as con:
        share = dict(con.execute("""
            select r.method, sum(o.picked * e.is_corrupted::int)::double / sum(o.picked)
            from observations o join examples e using (run_id, example_id) join runs r using (run_id)
            where o.epoch >= 1 group by 1""").fetchall())
        base = con.execute("select avg(is_corrupted::int) from examples where run_id = 1").fetchone()[0]
    assert abs(base - 0.5) < 0.001
    # seeded run; sb50 spends ~65% of its backprops on the corrupted half (uniform picking would give 50 ± 1)
    assert share["sb50"] > base + 0.08
    assert abs(share["uniform"] - base) < 0.03


def _trainer(**params):
    cfg = RunConfig(method="sb", device="cpu", model="resnet8", train_size=300, params=params)
    return Trainer(cfg, train_data(prepare(cfg)))


def test_stale_sb_skips_forwards_and_reuses_scores_by_example_id(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    fresh = run_one(RunConfig(method="sb", params={"staleness": 1}, epochs=5, device="cpu", train_size=400, model="mlp"), store)
    stale = run_one(RunConfig(method="sb", params={"staleness": 3}, epochs=5, device="cpu", train_size=400, model="mlp"), store)
    with connect_readonly(store.path) as con:
        fwd = dict(con.execute("select run_id, max(forwards_scoring) from steps group by 1").fetchall())
        stale_rows = con.execute("select count(*) filter (where stale), count(*) from observations "
                                 "where run_id = ? and mode = 'score'", [stale]).fetchone()
    assert fwd[fresh] == 400 * 4  # every candidate of the 4 selecting epochs
    assert fwd[stale] < 0.6 * fwd[fresh]  # each example re-scored at most every third epoch
    assert stale_rows[0] + fwd[stale] == stale_rows[1]

    # cached values stand in by example id: plant known cache entries and read them back through the trainer
    t = _trainer(staleness=3)
    index = torch.tensor([5, 17, 42, 99, 250])
    planted = torch.tensor([0.11, 0.22, 0.33, 0.44, 0.55])
    t.method.cache.store(index[:3], dataclasses.replace(t.score(t.view(index[:3]), t.y[index[:3]]),
                                                        loss=planted[:3]), epoch=1)
    before = t.counters.forwards_scoring
    fwd, stale_mask = t.selector.scores(index, t.view(index), epoch=2)
    assert stale_mask.tolist() == [True, True, True, False, False]
    assert fwd.loss[:3].tolist() == pytest.approx([0.11, 0.22, 0.33])
    assert t.counters.forwards_scoring == before + 2  # only the two expired candidates were forwarded
    assert not torch.allclose(fwd.loss[3:], planted[3:])


def test_scoring_never_updates_batchnorm_statistics():
    t = _trainer()
    stats = {k: v.clone() for k, v in t.model.state_dict().items() if "running" in k}
    t.model.train()  # even if a caller left the model in train mode, scoring switches to eval
    t.score(t.view(torch.arange(128)), t.y[:128])
    after = {k: v for k, v in t.model.state_dict().items() if "running" in k}
    assert all(torch.equal(stats[k], after[k]) for k in stats)


def test_a_pruned_example_is_logged_with_the_loss_it_was_judged_by_and_costs_no_forward(grid_db):
    """infobatch: forwards = backprops = the examples kept; every candidate of a pruning epoch has one row: a pick's
    training forward, or the stale statistics a pruned one was judged by with a pick of 0."""
    with connect_readonly(grid_db) as con:
        run_id, n_train = con.execute("select run_id, n_train from runs where method = 'infobatch50'").fetchone()
        fwd = con.execute("select max(forwards_scoring), max(forwards_training), max(backprops) from steps "
                          "where run_id = ?", [run_id]).fetchone()
        rows = con.execute("select mode, stale, picked, count(*), count(distinct example_id) from observations "
                           "where run_id = ? and epoch = 1 group by all order by all", [run_id]).fetchall()
    assert fwd[0] == 0 and fwd[1] == fwd[2] < 3 * n_train
    assert [r[:3] for r in rows] == [("score", True, 0), ("train", False, 1)]
    assert sum(r[3] for r in rows) == sum(r[4] for r in rows) == n_train  # each candidate once


def test_the_uniform_control_scores_nothing_unless_asked_and_then_charges_it_to_no_cost(tmp_path):
    store = Store(tmp_path / "u.duckdb")
    quiet = run_one(RunConfig(method="uniform50", epochs=3, train_size=300, model="mlp", device="cpu"), store)
    logged = run_one(RunConfig(method="uniform50", params={"uniform_scoring": True}, epochs=3, train_size=300,
                               model="mlp", device="cpu"), store)
    with connect_readonly(store.path) as con:
        counts = {r[0]: r[1:] for r in con.execute(
            "select run_id, max(forwards_scoring), max(forwards_logging), max(backprops) from steps group by 1"
        ).fetchall()}
        scored = dict(con.execute("select run_id, count(*) filter (where mode = 'score') from observations "
                                  "group by 1").fetchall())
        evals = dict(con.execute("select run_id, max(forwards) - max(backprops) from evals group by 1").fetchall())
    assert counts[quiet] == (0, 0, counts[logged][2])  # the same picks: the scores never decide them
    assert counts[logged][:2] == (0, 600) and scored[logged] == 600 and scored[quiet] == 0  # 2 selecting epochs
    assert evals[quiet] == evals[logged] == 0  # forwards (every cost's) = training forwards only
