"""Canaries: corrupted copies added as known positives; originals untouched; recorded in the database."""

import numpy as np

from lossaudit.core.store import Store, connect_readonly
from lossaudit.training.canaries import KINDS, canary_counts, make_canaries
from lossaudit.training.config import RunConfig
from lossaudit.running import run_one
from lossaudit.training.prepare import prepare


def test_canaries_are_corrupted_copies_split_over_the_kinds():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 3, 8, 8), dtype=np.uint8)
    y = np.arange(300) % 5
    before = x.copy()
    w = np.zeros((5, 5))
    w[np.arange(5), (np.arange(5) + 1) % 5] = 1.0  # each class is confused with the next only
    can = make_canaries(x, y, 5, 0.1, seed=1, confusion=w)
    assert len(can) == 30 and len(set(can.origin)) == 30
    assert {k: int((can.kind == k).sum()) for k in KINDS} == {"random_labels": 11, "confusable_labels": 11,
                                                               "shuffle_pixels": 4, "gaussian": 4}
    assert np.array_equal(x, before)  # the originals are never modified
    rl, cl, sp, ga = (can.kind == k for k in KINDS)
    label = rl | cl
    assert np.all(can.label[label] != y[can.origin[label]])  # a label canary always carries a wrong label
    assert np.array_equal(can.label[cl], (y[can.origin[cl]] + 1) % 5)  # the confusable class, as W says
    assert np.array_equal(can.x[label], x[can.origin[label]])
    assert set(can.replaces) == set(can.origin[label])
    assert np.array_equal(can.label[sp | ga], y[can.origin[sp | ga]])
    assert not any(np.array_equal(can.x[i], x[can.origin[i]]) for i in np.flatnonzero(sp | ga))
    # shuffled canaries keep each channel's pixel values, only their positions change
    i = np.flatnonzero(sp)[0]
    assert np.array_equal(np.sort(can.x[i].reshape(3, -1), 1), np.sort(x[can.origin[i]].reshape(3, -1), 1))


def test_without_confusions_every_label_canary_is_uniform():
    assert canary_counts(30, confusable=False) == {"random_labels": 22, "confusable_labels": 0, "shuffle_pixels": 4,
                                                   "gaussian": 4}
    y = np.arange(200) % 4
    can = make_canaries(np.zeros((200, 1, 2, 2), np.uint8), y, 4, 0.1, seed=0)
    assert not (can.kind == "confusable_labels").any() and (can.label[can.kind == "random_labels"] !=
                                                           y[can.origin[can.kind == "random_labels"]]).all()


def test_prepare_appends_canaries_with_their_own_ids_and_roles():
    prep = prepare(RunConfig(canaries=0.03, test_fraction=0.0))
    n_user = 1797
    assert len(prep.x) == n_user + round(0.03 * n_user) and len(prep.test.y) == 0
    canary = prep.role == "canary"
    assert canary.sum() == 54 and prep.is_corrupted[canary].all() and not prep.is_corrupted[~canary].any()
    assert set(prep.example_id[canary]) == set(range(n_user, n_user + 54))
    assert all(s.startswith("canary:") for s in prep.source[canary])
    assert prep.record["canaries"] == {"random_labels": 20, "confusable_labels": 20, "shuffle_pixels": 7, "gaussian": 7}
    w = np.array(prep.record["canary_confusion"])  # the data's own proxy confusions
    confusable = canary & (prep.kind == "confusable_labels")
    has_confusions = w[prep.true_label[confusable]].sum(1) > 0  # digit 0 is never confused here: a uniform flip
    assert (w[prep.true_label[confusable], prep.label[confusable]][has_confusions] > 0).all()
    assert has_confusions.mean() > 0.8 and (prep.label[confusable] != prep.true_label[confusable]).all()
    # a label canary stands in for its original, which leaves training: no correctly labelled twin
    replaced = prep.role == "replaced"
    assert replaced.sum() == 40 and not prep.trained[replaced].any()
    twins = {s.split(":", 2)[2] for s, k in zip(prep.source[canary], prep.kind[canary])
             if k in ("random_labels", "confusable_labels")}
    assert twins == set(prep.source[replaced])


def test_a_run_with_canaries_and_no_test_split(tmp_path):
    store = Store(tmp_path / "c.duckdb")
    run_id = run_one(RunConfig(canaries=0.05, test_fraction=0.0, epochs=2, model="mlp", device="cpu",
                               train_size=500), store)
    with connect_readonly(store.path) as con:
        roles = dict(con.execute("select role, count(*) from examples group by 1").fetchall())
        n_obs = con.execute("select count(*) from observations").fetchone()[0]
        n_evals = con.execute("select count(*) from evals").fetchone()[0]
        status = con.execute("select status from runs where run_id = ?", [run_id]).fetchone()[0]
    assert roles == {"train": 481, "replaced": 19, "canary": 25}
    assert n_obs == 2 * (481 + 25) and n_evals == 0 and status == "complete"


def test_image_size_resizes_every_split():
    prep = prepare(RunConfig(image_size=16, train_size=100, test_size=50))
    assert prep.x.shape[1:] == (1, 16, 16) and prep.test.x.shape[1:] == (1, 16, 16)
    small = prepare(RunConfig(image_size=8, train_size=100))
    assert np.array_equal(small.x, prepare(RunConfig(train_size=100)).x)  # the native size is left alone
