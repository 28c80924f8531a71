"""The validation split: carved from the training data with its labels as given, the same for every method and
seed, never trained on, evaluated with the test split."""

import numpy as np
import pytest

from lossaudit.core.errors import UserError
from lossaudit.core.store import Store, connect_readonly
from lossaudit.running import run_one
from lossaudit.training.config import RunConfig, build_grid
from lossaudit.training.methods import DEFAULT_METHODS
from lossaudit.training.prepare import prepare


def test_the_split_is_stratified_the_same_for_every_method_and_seed_and_carries_the_corruption():
    a = prepare(RunConfig(train_size=600, val_size=100, corruption="random_labels:0.5", seed=0, method="sgd"))
    b = prepare(RunConfig(train_size=600, val_size=100, corruption="random_labels:0.5", seed=3, method="rho"))
    va, vb = a.role == "validation", b.role == "validation"
    assert va.sum() == vb.sum() == 100
    assert np.array_equal(a.example_id[va], b.example_id[vb])  # carved by split_seed, not by seed or method
    assert not a.trained[va].any()
    assert not (b.role[vb] == "holdout").any() and (b.role == "holdout").sum() > 0  # rho's holdout from the rest
    counts = np.bincount(a.train.y[va], minlength=10)
    assert counts.max() - counts.min() <= 2  # stratified by the data's own labels
    assert 0.25 < a.is_corrupted[va].mean() < 0.75  # as noisy as the training data around it (50%)


def test_a_run_evaluates_the_validation_split_and_never_trains_on_it(tmp_path):
    store = Store(tmp_path / "v.duckdb")
    run_id = run_one(RunConfig(epochs=2, train_size=400, val_size=80, model="mlp", device="cpu"), store)
    with connect_readonly(store.path) as con:
        roles = dict(con.execute("select role, count(*) from examples where run_id = ? group by role",
                                 [run_id]).fetchall())
        trained = con.execute("select count(*) from observations o join examples e using (run_id, example_id) "
                              "where run_id = ? and e.role = 'validation'", [run_id]).fetchone()[0]
        evals = con.execute("select val_error, val_loss, test_error from evals where run_id = ?", [run_id]).fetchall()
        n_train = con.execute("select n_train from runs where run_id = ?", [run_id]).fetchone()[0]
    assert roles == {"train": 320, "validation": 80} and n_train == 320
    assert trained == 0
    assert all(0 <= v <= 1 and loss > 0 for v, loss, _ in evals)
    assert evals[0][0] > 0.5 and evals[-1][0] < evals[0][0]  # it learns what it never saw, like the test split


def test_a_validation_split_cannot_go_with_canaries():
    with pytest.raises(UserError, match="--val-size 50 with --canaries"):
        build_grid({"val_size": 50, "canaries": 0.05, "method": "sgd"}, default_methods=DEFAULT_METHODS)
