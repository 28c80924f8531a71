"""The Recorder: a training loop of the user's own, recorded into the same tables as `lossaudit run`'s.

Real DuckDB files and real torch training throughout; the loops are small (a linear model on planted data)."""

import math

import duckdb
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossaudit import Recorder
from lossaudit.analysis import metrics
from lossaudit.core.store import connect_readonly
from lossaudit.core.errors import UserError

N, D, K = 240, 8, 3


def planted(seed=0, noisy=0.25):
    """Separable 3-class data with a share of labels flipped (the planted truth)."""
    g = np.random.default_rng(seed)
    true = g.integers(0, K, N)
    x = g.normal(size=(N, D)).astype(np.float32) + 3 * np.eye(K, D, dtype=np.float32)[true]
    label = true.copy()
    flip = g.random(N) < noisy
    label[flip] = (true[flip] + g.integers(1, K, flip.sum())) % K
    ids = np.arange(1000, 1000 + N)  # ids need not start at 0
    return ids, torch.from_numpy(x), label, true


def train(db, method, *, select=None, epochs=3, seed=0, batch=32, noisy=0.25, **kwargs):
    """A plain loop: shuffled batches, cross-entropy, SGD; `select(loss_each) -> mask` picks what is trained."""
    ids, x, label, true = planted(seed, noisy)
    torch.manual_seed(seed)
    model = torch.nn.Linear(D, K)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    y = torch.from_numpy(label)
    with Recorder(db, method=method, dataset="planted", model="linear", config={"lr": 0.1, "batch": batch},
                  seed=seed, examples=ids, labels=label, true_labels=true, epochs=epochs, **kwargs) as rec:
        for _ in range(epochs):
            for rows in torch.randperm(N).split(batch):
                logits = model(x[rows])
                loss_each = F.cross_entropy(logits, y[rows], reduction="none")
                picked = torch.ones(len(rows), dtype=torch.bool) if select is None else select(loss_each.detach())
                opt.zero_grad()
                loss_each[picked].mean().backward()
                opt.step()
                rec.observe(torch.from_numpy(ids)[rows], loss=loss_each, logits=logits,
                            picked=None if select is None else picked, lr=0.1)
            with torch.no_grad(), rec.paused():
                z = model(x)
                err = (z.argmax(1) != torch.from_numpy(true)).float().mean()
                rec.evaluate(test_error=err, test_loss=F.cross_entropy(z, torch.from_numpy(true)))
            rec.end_epoch()
    return rec.run_id


def top_half(loss):
    return loss >= loss.median()


def test_a_recorded_run_lands_in_the_store_with_exact_counts(tmp_path):
    db = tmp_path / "runs.duckdb"
    run = train(db, "my-sb", select=top_half)
    con = duckdb.connect(str(db), read_only=True)
    status, epochs_done, device, traits = con.execute(
        "select status, epochs_done, device, config->'method_traits' from runs where run_id = ?", [run]).fetchone()
    assert (status, epochs_done, device) == ("complete", 3, "cpu")
    obs = con.execute("select count(*), sum(picked), count(distinct example_id), min(example_id), max(example_id) "
                      "from observations where run_id = ?", [run]).fetchone()
    steps = con.execute("select count(*), max(backprops), sum(n_backprop), max(forwards_training), "
                        "max(selection_candidates), max(selection_picks) from steps where run_id = ?", [run]).fetchone()
    assert obs[0] == 3 * N and obs[2] == N and (obs[3], obs[4]) == (1000, 1000 + N - 1)
    assert steps[0] == 3 * math.ceil(N / 32)
    assert steps[1] == steps[2] == obs[1] == steps[5]  # backprops counted from picked
    assert steps[3] == steps[4] == 3 * N
    assert 0.45 < obs[1] / (3 * N) < 0.6  # the top half by loss, ties included
    traits = __import__("json").loads(traits)
    assert traits["loss_based"] and not traits["is_baseline"]
    assert traits["nominal_selectivity"] == pytest.approx(obs[1] / (3 * N), abs=1e-3)
    evals = con.execute("select epoch, backprops, test_error from evals where run_id = ? order by step",
                        [run]).fetchall()
    assert [e[0] for e in evals] == [0, 1, 2] and evals[-1][1] == steps[1] and 0 <= evals[-1][2] <= 1
    # the statistics computed from the logits are the exact definitions
    row = con.execute("select loss, entropy, margin, p_true from observations where run_id = ? limit 1",
                      [run]).fetchone()
    assert math.isclose(row[3], math.exp(-row[0]), rel_tol=1e-4) and row[1] >= 0


def test_a_baseline_and_a_selector_recorded_the_same_way_make_table1_and_figure3(tmp_path):
    db = tmp_path / "runs.duckdb"
    train(db, "sgd")
    train(db, "my-sb", select=top_half)
    with connect_readonly(db) as con:
        standing = metrics.run_standing(con)
        table = metrics.table1(con)
        share = metrics.corrupted_share(con)
    assert set(standing.method) == {"sgd", "my-sb"} and standing.experiment_id.nunique() == 1
    assert table.set_index("method").baseline.to_dict() == {"sgd": True, "my-sb": False}  # against the recorded sgd
    assert table.target_usable.all()
    assert not share.empty and share.method.eq("my-sb").any()
    sb = share[share.method == "my-sb"]
    # planted truth: a loss-based selector over-picks the flipped labels (high loss)
    assert sb.corrupted_share.mean() > 1.3 * sb.base_rate.mean()


def test_picked_counts_and_score_mode_are_kept_apart(tmp_path):
    ids, x, label, _ = planted()
    with Recorder(tmp_path / "r.duckdb", method="scorer", dataset="planted", examples=ids, labels=label) as rec:
        logits = torch.zeros(10, K)
        rec.observe(ids[:10], logits=logits, mode="score", picked=np.r_[np.ones(4), np.zeros(6)])
        rec.observe(ids[:4], logits=logits[:4])  # the picks trained: everything of this forward back-propagated
        rec.evaluate(test_error=0.5, test_loss=1.0)
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    assert con.execute("select step, n_scored, n_backprop, forwards_scoring, forwards_training, backprops, "
                       "selection_candidates, selection_picks from steps").fetchall() == [(0, 10, 4, 10, 4, 4, 10, 4)]
    assert con.execute("select mode, count(*), sum(picked) from observations group by mode order by mode"
                       ).fetchall() == [("score", 10, 4), ("train", 4, 4)]
    assert con.execute("select status from runs").fetchone()[0] == "complete"  # a pending epoch is written on close


@pytest.mark.parametrize("call, words", [
    (lambda r, i: r.observe(i[:3], loss=np.ones(4)), "loss: shape (4,) disagrees with ids' (3,)"),
    (lambda r, i: r.observe(i[:3], logits=np.zeros((3, K + 1))), "logits: shape (3, 4) disagrees"),
    (lambda r, i: r.observe(np.array([5, 6]), loss=np.ones(2)), "ids of observe call 2"),
    (lambda r, i: r.observe(i[:2], loss=np.array([1.0, np.nan])), "loss of observe call 2"),
    (lambda r, i: r.observe(i[:2], loss=np.ones(2), mode="eval"), "mode 'eval': valid: score, train"),
    (lambda r, i: r.observe(i[:2]), "give loss="),
    (lambda r, i: r.observe(i[:2].astype(float), loss=np.ones(2)), "ids: expected a 1-D tensor of integer"),
    (lambda r, i: r.observe(i[:2], loss=np.ones(2), picked=np.ones(3)), "picked: shape (3,) disagrees"),
])
def test_bad_input_is_one_line_naming_the_argument_and_the_run_is_marked_failed(tmp_path, call, words):
    ids, _, label, _ = planted()
    db = tmp_path / "r.duckdb"
    with pytest.raises(UserError) as err:
        with Recorder(db, method="m", dataset="planted", examples=ids, labels=label) as rec:
            rec.observe(ids[:4], loss=np.ones(4))
            rec.end_epoch()  # one good epoch first: it must survive the bad call
            call(rec, ids)
    assert words in str(err.value) and "\n" not in str(err.value)
    con = duckdb.connect(str(db), read_only=True)
    status, reason, done = con.execute("select status, error, epochs_done from runs").fetchone()
    assert status == "failed" and words.split(":")[0] in reason and done == 1
    assert con.execute("select count(*) from observations").fetchone()[0] == 4


@pytest.mark.parametrize("kwargs, words", [
    (dict(labels=[0, 1]), "labels: 2 values for 3 examples"),
    (dict(examples=[1, 1, 2]), "examples: ids must be unique"),
    (dict(labels=[0, 1, 5], classes=["a", "b", "c"]), "labels: values must be class indices in 0..2"),
    (dict(corruption="random_labels:2"), "corruption 'random_labels:2'"),
    (dict(method=""), "method: give the name"),
    (dict(config=[1, 2]), "config: expected a dict"),
])
def test_bad_arguments_refused_before_anything_is_written(tmp_path, kwargs, words):
    args = dict(method="m", dataset="d", examples=[1, 2, 3], labels=[0, 1, 2]) | kwargs
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Recorder(tmp_path / "r.duckdb", **args)
    assert not (tmp_path / "r.duckdb").exists()


def test_config_values_that_json_cannot_hold_are_stored_as_text(tmp_path):
    from pathlib import Path
    db = tmp_path / "r.duckdb"
    with Recorder(db, method="m", dataset="d", examples=[1, 2], labels=[0, 1],
                  config={"lr": np.float32(0.5), "root": Path("/data")}) as rec:
        rec.observe([1, 2], loss=[0.1, 0.2])
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select config->>'lr', config->>'root' from runs").fetchone() == ("0.5", "/data")


def test_an_interrupted_loop_keeps_its_finished_epochs(tmp_path):
    ids, _, label, _ = planted()
    db = tmp_path / "r.duckdb"
    with pytest.raises(KeyboardInterrupt):
        with Recorder(db, method="m", dataset="planted", examples=ids, labels=label) as rec:
            rec.observe(ids[:8], loss=np.ones(8))
            rec.end_epoch()
            rec.observe(ids[8:16], loss=np.ones(8))
            raise KeyboardInterrupt
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select status, epochs_done from runs").fetchone() == ("interrupted", 1)
    assert con.execute("select count(*), max(epoch) from observations").fetchone() == (8, 0)


def test_out_of_sample_and_test_predictions_are_kept_for_the_audit(tmp_path):
    ids, x, label, true = planted()
    db = tmp_path / "r.duckdb"
    with Recorder(db, method="sgd", dataset="planted", examples=ids[:120], labels=label[:120]) as rec:
        rec.observe(ids[:120], logits=torch.zeros(120, K))
        rec.predict(ids[120:], torch.zeros(120, K))
        rec.evaluate(test_error=0.1, test_loss=0.5, test_logits=torch.zeros(5, K), test_labels=[0, 1, 2, 0, 1])
        rec.end_epoch()
    con = duckdb.connect(str(db), read_only=True)
    n, p = con.execute("select count(*), max(probs[1]) from predictions").fetchone()
    assert n == 120 and p == pytest.approx(1 / 3)
    assert con.execute("select count(*), sum(label) from test_predictions").fetchone() == (5, 4)


def cross_fitted(db, noisy=0.25, epochs=4):
    """Two recorded runs of a plain loop, each training on half of the planted data and predicting the other half
    (and the same clean test split) after every epoch of its later half."""
    ids, x, label, true = planted(noisy=noisy)
    g = np.random.default_rng(1)
    test_true = g.integers(0, K, 600)
    test_x = torch.from_numpy(g.normal(size=(600, D)).astype(np.float32) + 3 * np.eye(K, D, dtype=np.float32)[test_true])
    half = np.arange(N) % 2
    runs = []
    for fold in (0, 1):
        torch.manual_seed(fold)
        model = torch.nn.Linear(D, K)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        mine, held = np.flatnonzero(half != fold), np.flatnonzero(half == fold)
        y = torch.from_numpy(label)
        with Recorder(db, method="sgd", dataset="planted", config={"fold": fold}, examples=ids[mine],
                      labels=label[mine], true_labels=true[mine]) as rec:
            for epoch in range(epochs):
                for rows in torch.from_numpy(mine)[torch.randperm(len(mine))].split(16):
                    logits = model(x[rows])
                    loss_each = F.cross_entropy(logits, y[rows], reduction="none")
                    opt.zero_grad()
                    loss_each.mean().backward()
                    opt.step()
                    rec.observe(torch.from_numpy(ids)[rows], loss=loss_each, logits=logits)
                with torch.no_grad():
                    z = model(test_x)
                    rec.evaluate(test_error=(z.argmax(1).numpy() != test_true).mean(), test_loss=1.0, test_logits=z,
                                 test_labels=test_true)
                    if epoch >= epochs // 2:
                        rec.predict(ids[held], model(x[held]))
                rec.end_epoch()
        runs.append(rec.run_id)
    return runs, ids, label != true


def test_audit_from_db_reads_cross_fitted_recorded_runs_and_finds_the_planted_noise(tmp_path):
    from typer.testing import CliRunner

    from lossaudit.cli import app
    from lossaudit.analysis.separability import auroc
    db = tmp_path / "r.duckdb"
    runs, ids, flipped = cross_fitted(db)
    out = tmp_path / "suspects"
    result = CliRunner().invoke(app, ["audit", "--from-db", str(db), "--run", str(runs[0]), "--run", str(runs[1]),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    share, low, high, reference = con.execute("select noise_share, noise_low, noise_high, noise_reference "
                                              "from audits").fetchone()
    assert reference == "trusted labels" and low <= flipped.mean() <= high and abs(share - flipped.mean()) < 0.08
    scores = __import__("pandas").read_csv(f"{out}_scores.csv")
    truth = dict(zip(ids, flipped))
    assert auroc(scores.example_id.map(truth).to_numpy(), scores.suspicion_score.to_numpy()) > 0.9


def test_audit_from_db_refuses_runs_without_out_of_sample_predictions(tmp_path):
    from typer.testing import CliRunner

    from lossaudit.cli import app
    db = tmp_path / "r.duckdb"
    run = train(db, "sgd", epochs=1)
    result = CliRunner().invoke(app, ["audit", "--from-db", str(db), "--run", str(run), "--out",
                                      str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "predicted no example they did not train on" in result.output and "rec.predict" in result.output
    result = CliRunner().invoke(app, ["audit", "--from-db", str(db), "--run", "7", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--run 7: no such run" in result.output and "valid: 1" in result.output


@pytest.mark.parametrize("classes", [3, 70])  # a few classes: summarised in one batch per epoch; many: per call
def test_statistics_are_the_definitions_whether_summarised_per_epoch_or_per_call(tmp_path, classes):
    g = torch.Generator().manual_seed(0)
    ids = np.arange(40)
    label = np.arange(40) % classes
    logits = torch.randn(40, classes, generator=g)
    db = tmp_path / "r.duckdb"
    with Recorder(db, method="m", dataset="d", examples=ids, labels=label, classes=[f"c{k}" for k in range(classes)]
                  ) as rec:
        rec.observe(ids[:20], logits=logits[:20])
        rec.observe(ids[20:30], logits=logits[20:30], loss=torch.full((10,), 7.0))  # the loss as given wins
        rec.observe(ids[30:], loss=torch.ones(10))  # no logits: entropy, margin, p_true unknown
    con = duckdb.connect(str(db), read_only=True)
    got = con.execute("select example_id, loss, entropy, margin, p_true, pred from observations order by example_id"
                      ).fetchnumpy()
    y = torch.from_numpy(label)
    logp = torch.log_softmax(logits, 1)
    expected_loss = -logp[torch.arange(40), y]
    np.testing.assert_allclose(got["loss"][:20], expected_loss[:20].numpy(), rtol=1e-5)
    np.testing.assert_allclose(got["loss"][20:30], 7.0)
    np.testing.assert_allclose(got["entropy"][:30], -(logp.exp() * logp).sum(1)[:30].numpy(), rtol=1e-5)
    others = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    np.testing.assert_allclose(got["margin"][:30], (logits[torch.arange(40), y] - others)[:30].numpy(), rtol=1e-5)
    np.testing.assert_allclose(got["p_true"][:30], logp.exp()[torch.arange(40), y][:30].numpy(), rtol=1e-5)
    assert (got["pred"][:30] == logits.argmax(1)[:30].numpy()).all() and (got["pred"][30:] == -1).all()
    assert np.isnan(got["entropy"][30:]).all() and np.isnan(got["p_true"][30:]).all()


def test_buffers_the_loop_reuses_are_recorded_as_they_were_at_the_call(tmp_path):
    ids = np.arange(8)
    loss = np.zeros(4)  # one buffer, refilled by the loop every step
    with Recorder(tmp_path / "r.duckdb", method="m", dataset="d", examples=ids, labels=ids % 2) as rec:
        for step, rows in enumerate((ids[:4], ids[4:])):
            loss[:] = step + 1.0
            rec.observe(rows, loss=loss)
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    assert con.execute("select step, avg(loss) from observations group by step order by step").fetchall() == [
        (0, 1.0), (1, 2.0)]


def test_the_test_split_is_read_at_the_epochs_the_held_out_examples_were_predicted(tmp_path):
    from lossaudit.core.queries import run_query
    db = tmp_path / "r.duckdb"
    with Recorder(db, method="sgd", dataset="d", examples=[0, 1], labels=[0, 1]) as rec:
        for epoch in range(4):
            rec.observe([0, 1], loss=[1.0, 1.0])
            confident = torch.tensor([[float(epoch), 0.0]])  # the test prediction sharpens from epoch to epoch
            rec.evaluate(test_error=0.5, test_loss=1.0, test_logits=confident, test_labels=[0])
            if epoch >= 2:
                rec.predict([5], torch.zeros(1, 2))
            rec.end_epoch()
    with connect_readonly(db) as con:
        probs = run_query(con, "test_probs", run_id=1)
    expected = np.mean([np.exp(e) / (np.exp(e) + 1) for e in (2, 3)])  # epochs 2 and 3 only
    assert probs[probs["class"] == 0].prob.iloc[0] == pytest.approx(expected, rel=1e-5)
    assert probs.n_epochs.tolist() == [2, 2]


def test_trained_and_recorded_runs_share_one_run_record_and_one_experiment_hash(tmp_path):
    """The Recorder's row comes from the same writer as a trained run's, and a recorded run stored before schema 5
    (its experiment hashed with other JSON spacing) gets the id a loop recorded now gets."""
    import hashlib
    import json

    from lossaudit.core.records import experiment_id, recorded_key
    path = tmp_path / "runs.duckdb"
    ids, labels = np.arange(6), np.array([0, 1, 0, 1, 0, 1])
    settings = {"lr": 0.1, "seed": 3, "batch": 2}
    with Recorder(path, method="mine", dataset="toy", examples=ids, labels=labels, config=settings, seed=3) as rec:
        run_id = rec.run_id
    key = recorded_key("toy", "own model", 6, settings)
    assert "seed" not in key["config"]
    with duckdb.connect(str(path)) as con:
        (stored,) = con.execute("select experiment_id from runs where run_id = ?", [run_id]).fetchone()
        assert stored == experiment_id(key)
        old = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        assert old != stored  # the spacing the Recorder used before schema 5
        con.execute("update runs set experiment_id = ? where run_id = ?", [old, run_id])
        con.execute("update meta set value = '4' where key = 'schema_version'")
    with connect_readonly(path) as con:
        assert con.execute("select experiment_id from runs").fetchone()[0] == stored
