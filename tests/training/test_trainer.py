"""The SGD trainer on real digits, read back from the real database it wrote."""

import math

import numpy as np
import pytest
import torch

from lossaudit.core.store import Store, connect_readonly
from lossaudit.training.config import RunConfig
from lossaudit.running import run_one
from lossaudit.training.budget import lr_at
from lossaudit.training.trainer import Batch, PickQueue, wants_crop_flip


def test_sgd_on_clean_digits_reaches_under_10_percent_test_error(tmp_path):
    store = Store(tmp_path / "t.duckdb")
    run_id = run_one(RunConfig(epochs=6, device="cpu"), store)
    with connect_readonly(store.path) as con:
        best = con.execute("select min(test_error) from evals where run_id = ?", [run_id]).fetchone()[0]
        first = con.execute("select test_error from evals where run_id = ? and step = 0", [run_id]).fetchone()[0]
    assert best < 0.10
    assert first > 0.5  # an untrained net is near chance: the number above was earned by training


def test_logged_counts_are_consistent(digits_db):
    with connect_readonly(digits_db) as con:
        for run_id, n_train, epochs, status in con.execute("select run_id, n_train, epochs, status from runs").fetchall():
            assert status == "complete"
            obs = con.execute("select count(*), sum(picked), count(distinct (epoch, example_id)) from observations "
                              "where run_id = ?", [run_id]).fetchone()
            assert obs == (n_train * epochs, n_train * epochs, n_train * epochs)  # sgd: every example once per epoch
            steps = con.execute("select count(*), max(backprops), max(forwards_training), max(forwards_scoring) "
                                "from steps where run_id = ?", [run_id]).fetchone()
            assert steps == (epochs * math.ceil(n_train / 128), n_train * epochs, n_train * epochs, 0)
            sizes = [r[0] for r in con.execute("select n_backprop from steps where run_id = ? order by step",
                                               [run_id]).fetchall()]
            per_epoch = math.ceil(n_train / 128)
            for e in range(epochs):
                chunk = sizes[e * per_epoch:(e + 1) * per_epoch]
                assert chunk[:-1] == [128] * (per_epoch - 1) and chunk[-1] == n_train - 128 * (per_epoch - 1)
            # observations of a step are exactly the examples trained in that step
            mismatch = con.execute("""
                select count(*) from (select step, count(*) n from observations where run_id = $r group by step) o
                join steps s on s.run_id = $r and s.step = o.step where o.n != s.n_backprop""", {"r": run_id}).fetchone()[0]
            assert mismatch == 0
            evals = con.execute("select backprops from evals where run_id = ? order by backprops", [run_id]).fetchall()
            interval = round(0.25 * n_train)
            assert evals[0][0] == 0 and evals[-1][0] == n_train * epochs
            assert all(b - a <= interval + 128 for (a,), (b,) in zip(evals, evals[1:]))


def test_observation_statistics_match_their_definitions(digits_db):
    with connect_readonly(digits_db) as con:
        o = con.execute("select loss, p_true, entropy, margin, pred, o.example_id, e.label from observations o "
                        "join examples e using (run_id, example_id) where run_id = 2").df()
    assert np.allclose(np.exp(-o.loss), o.p_true, rtol=1e-4, atol=1e-6)
    assert (o.entropy >= -1e-6).all() and (o.entropy <= np.log(10) + 1e-4).all()
    # margin > 0 exactly when the label as trained is the prediction
    assert ((o.margin > 0) == (o.pred == o.label)).mean() > 0.999


def test_examples_record_the_corruption(digits_db):
    with connect_readonly(digits_db) as con:
        rows = con.execute("select r.corruption, avg(is_corrupted::int), avg((label != true_label)::int), "
                           "count(*) filter (where is_corrupted and e.corruption_kind is null), "
                           "count(*) filter (where not is_corrupted and label != true_label) "
                           "from examples e join runs r using (run_id) group by 1 order by 1").fetchall()
    (c1, share1, changed1, bad1, bad1b), (c2, share2, changed2, bad2, bad2b) = rows
    assert c1 == "none" and share1 == 0 and changed1 == 0
    assert c2 == "random_labels:0.25" and abs(share2 - 0.25) < 0.001
    assert abs(changed2 - 0.25 * 0.9) < 0.03  # 1/K of the relabelled keep their label by chance
    assert bad1 == bad2 == bad1b == bad2b == 0


def test_lr_schedule_drops_by_80_percent_at_60_and_80_percent_of_the_epochs():
    cfg = RunConfig(epochs=10)
    assert [lr_at(cfg, e / 10, e) for e in range(10)] == pytest.approx([0.1] * 6 + [0.02] * 2 + [0.004] * 2)


def test_augmentation_rule():
    assert wants_crop_flip("auto", (3, 32, 32)) and not wants_crop_flip("auto", (1, 8, 8))
    assert wants_crop_flip("crop-flip", (1, 8, 8)) and not wants_crop_flip("none", (3, 32, 32))


def test_pick_queue_cuts_exactly_b_in_fifo_order():
    q = PickQueue()
    for start in (0, 5, 12):
        n = {0: 5, 5: 7, 12: 3}[start]
        idx = torch.arange(start, start + n)
        q.push(Batch(idx, idx[:, None].float(), idx, torch.ones(n), torch.ones(n)), n)
    assert len(q) == 15
    a = q.pop(6)
    assert a.index.tolist() == list(range(6)) and a.x[:, 0].tolist() == list(range(6))
    b = q.pop(9)
    assert b.index.tolist() == list(range(6, 15)) and len(q) == 0


def test_same_seed_same_run(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    cfg = RunConfig(epochs=2, device="cpu", corruption="random_labels:0.5", train_size=400)
    a, b = run_one(cfg, store), run_one(cfg, store)
    with connect_readonly(store.path) as con:
        q = "select step, example_id, loss from observations where run_id = ? order by epoch, step, example_id"
        ra, rb = con.execute(q, [a]).df(), con.execute(q, [b]).df()
    assert ra[["step", "example_id"]].equals(rb[["step", "example_id"]])
    assert np.allclose(ra.loss, rb.loss, atol=1e-4)
