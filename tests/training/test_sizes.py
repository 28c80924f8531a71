"""Sizes too small for the data or the method: one line naming the value and what would be valid, nothing written —
and the sizes that look too small but train correctly (a batch or a selection pool larger than the data)."""

import dataclasses
import hashlib

import numpy as np
import pytest
from typer.testing import CliRunner

from lossaudit.cli import app
from lossaudit.core.errors import UserError
from lossaudit.training.config import RunConfig
from lossaudit.training.datasets import load_dataset, stratified_subset
from lossaudit.training.datasets.base import _quotas
from lossaudit.training.logs import NullSink
from lossaudit.training.methods import all_names
from lossaudit.training.prepare import check_fits, prepare, train_data
from lossaudit.training.trainer import Trainer

pytestmark = pytest.mark.fault("numbers")

RUN = ["run", "--model", "mlp", "--epochs", "1", "--device", "cpu", "--method", "sgd", "--corruption", "none"]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def existing_db(tmp_path_factory):
    """A lossaudit database that already exists (empty): a refused run must leave it byte for byte as it was."""
    from lossaudit.core.store import Store
    path = tmp_path_factory.mktemp("sizes") / "existing.duckdb"
    Store(path)
    return path


@pytest.fixture(scope="module")
def rectangles(tmp_path_factory):
    """An npz of 6×9 images of 3 classes."""
    path = tmp_path_factory.mktemp("rect") / "rect.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (60, 6, 9), dtype=np.uint8), y=np.arange(60) % 3)
    return path


def refused(args: list[str], message: str, tmp_path, existing_db) -> None:
    """`args` fails with exactly one line holding `message`, creates no new database and leaves an existing one
    unchanged."""
    fresh = tmp_path / "fresh.duckdb"
    before = _sha256(existing_db)
    for db in (fresh, existing_db):
        result = CliRunner().invoke(app, [*args, "--db", str(db)])
        assert result.exit_code == 2 and (result.exception is None or isinstance(result.exception, SystemExit)), \
            result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not fresh.exists() and _sha256(existing_db) == before


CASES = [
    (["--train-size", "5"], "--train-size 5: a stratified subset needs at least one example of each of the 10 "
                            "classes; valid: 0 (all) or 10..1437"),
    (["--test-size", "3"], "--test-size 3: a stratified subset needs at least one example of each of the 10 classes; "
                           "valid: 0 (all) or 10..360"),
    (["--train-size", "99999"], "--train-size 99999: the dataset has only 1437 such examples; valid: 0 (all) or "
                                "10..1437"),
    (["--test-size", "5", "--test-fraction", "0"], "--test-size 5: there are no such examples (the split is empty); "
                                                   "valid: 0"),
    (["--test-fraction", "0.001"], "--test-fraction 0.001: splitting the 1797 examples into 2 test and 1795 training "
                                   "examples cannot put one of each of the 10 classes on both sides; valid: 0 (no test "
                                   "split) or 0.006..0.994"),
    (["--train-size", "10", "--folds", "2"], "--folds 2: cross-fitting deals every class's training examples over the "
                                             "2 folds (each fold stratified by label), but class '0' has only 1; "
                                             "valid: --folds 0 (off), or at least 2 training examples of every class"),
    (["--train-size", "20", "--folds", "3"], "but class '0' has only 2; valid: --folds 0 (off) or 2,"),
    (["--train-size", "15", "--method", "rho"], "--method rho: its stratified holdout (--holdout-fraction 0.5 of the "
                                                "15 training examples: 8 held out, 7 trained) needs one example of "
                                                "each of the 10 classes on both sides, but class '0' has only 1 "
                                                "training example; valid: --train-size 20..1437 (or 0, all 1437) or a "
                                                "method without a holdout"),
    (["--train-size", "30", "--method", "rho", "--holdout-fraction", "0.8"],
     "24 held out, 6 trained) needs one example of each of the 10 classes on both sides; valid: --train-size "
     "50..1437 (or 0, all 1437) or --holdout-fraction 0.334..0.666 or a method without a holdout"),
    (["--train-size", "20", "--image-size", "4", "--model", "resnet8", "--batch-size", "19"],
     "--model resnet8 on 4×4 images: its BatchNorm layers see 1×1 feature maps there, so a training step of a single "
     "example fails, and the last batch of each epoch (20 examples in batches of 19) can make one; valid: "
     "--image-size 5 or more, or --model mlp"),
    (["--train-size", "40", "--image-size", "4", "--model", "resnet8", "--method", "sb50"],
     "and sb50's selection (its last batch of an epoch has a random size) can make one"),
    (["--dataset", "npz:{rect}"], "--model mlp on 6×9 images: the mlp is built for square images; valid: "
                                  "--image-size S (S >= 4: every image resized to S×S), or a convolutional model"),
]


@pytest.mark.parametrize("args, message", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_sizes_out_of_reach_are_one_line_and_write_nothing(args, message, tmp_path, existing_db, rectangles):
    refused([*RUN, *[a.format(rect=rectangles) for a in args]], message, tmp_path, existing_db)


def test_an_audit_whose_folds_cannot_hold_every_class_writes_nothing(tmp_path, existing_db):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "single.npz", x=rng.integers(0, 256, (41, 8, 8), dtype=np.uint8),
             y=np.r_[np.arange(40) % 4, 4])  # class 4 has one example: it cannot be in both folds
    refused(["audit", f"npz:{tmp_path / 'single.npz'}", "--out", str(tmp_path / "suspects"), "--device", "cpu"],
            "the audit's 2 cross-fitted proxies each hold out half of every class, so every class needs at least 2 "
            "examples; class '4' has only 1", tmp_path, existing_db)
    assert not list(tmp_path.glob("suspects*"))


def test_check_fits_judges_a_cell_by_the_data_of_another_cell_of_its_grid():
    """A grid's cells differ in method, corruption and seed: the data of its sgd cell tells that its rho cell cannot
    train, with the very line prepare() gives for the rho cell itself."""
    sgd = RunConfig(train_size=15, model="mlp", device="cpu", corruption="random_labels:0.2", seed=1)
    prep = prepare(sgd)
    rho = dataclasses.replace(sgd, method="rho", params=None, corruption="none", seed=0)
    with pytest.raises(UserError) as from_grid:
        check_fits(rho, prep)
    with pytest.raises(UserError) as own:
        prepare(rho)
    assert str(from_grid.value) == str(own.value) and "--method rho: its stratified holdout" in str(own.value)
    check_fits(dataclasses.replace(sgd, method="sb50", params=None, seed=2), prep)  # the other cells fit
    check_fits(dataclasses.replace(sgd, method="vr33", params=None, corruption="none"), prep)


def test_every_method_trains_on_tiny_data_with_a_batch_and_pool_larger_than_it():
    """20 examples, B = 16: vr33's pool (48) and rho's (32, of its 10 trained examples) exceed the data, sb's batch
    its picks. Each trains: an epoch is one round, the picks scaled to the candidates there are."""
    cache: dict = {}
    for name in all_names():
        params = {"tau_th": 1e-6} if name.startswith("vr") else None  # switch vr on from its second epoch
        cfg = RunConfig(method=name, params=params, train_size=20, batch_size=16, epochs=2, model="mlp", device="cpu",
                        corruption="none")
        prep = prepare(cfg, cache)
        check_fits(cfg, prep)
        trainer = Trainer(cfg, train_data(prep))
        trainer.fit(NullSink())
        c = trainer.counters
        n = int(prep.trained.sum())
        assert 0 < c.backprops <= 2 * n and c.step >= 2, name
        if name.startswith("vr33"):  # one pool of all 20 candidates, round(20 · 16 / 48) = 7 picks
            assert c.selection_candidates == n and c.selection_picks == 7


def test_a_batch_larger_than_the_data_is_one_step_an_epoch():
    cfg = RunConfig(train_size=20, batch_size=64, epochs=3, model="mlp", device="cpu", corruption="none")
    trainer = Trainer(cfg, train_data(prepare(cfg)))
    trainer.fit(NullSink())
    assert trainer.counters.step == 3 and trainer.counters.backprops == 60


def test_subsets_scikit_learn_cannot_stratify_take_every_class_and_the_rest_in_proportion():
    train = load_dataset("digits").train
    sub = stratified_subset(train, 1430, seed=0)  # 7 left out: fewer than the 10 classes
    assert len(sub) == 1430 and len(np.unique(sub.example_id)) == 1430 and np.all(np.diff(sub.example_id) > 0)
    assert np.all(np.bincount(train.y) - np.bincount(sub.y, minlength=10) <= 1)
    assert np.array_equal(stratified_subset(train, 1430, seed=0).example_id, sub.example_id)
    assert not np.array_equal(stratified_subset(train, 1430, seed=1).example_id, sub.example_id)
    from sklearn.model_selection import train_test_split  # where scikit-learn can, its subset is kept as it was
    keep, _ = train_test_split(np.arange(len(train)), train_size=500, stratify=train.y, random_state=3)
    assert np.array_equal(stratified_subset(train, 500, seed=3).example_id, np.sort(keep))


@pytest.mark.parametrize("counts, n", [([1, 1, 5], 4), ([2, 3, 10], 14), ([1, 9], 2), ([4, 4, 4], 11), ([1, 1], 2)])
def test_quotas_take_one_of_each_class_and_never_more_than_it_has(counts, n):
    quota = _quotas(np.array(counts), n)
    assert quota.sum() == n and np.all(quota >= 1) and np.all(quota <= counts)
