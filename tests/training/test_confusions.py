"""confusable_labels: exact semantics of the target class, the pairs file, and a proxy that finds planted confusions."""

import numpy as np
import pytest

from lossaudit.core.errors import UserError
from lossaudit.training.config import RunConfig
from lossaudit.training.confusions import proxy_confusion, read_pairs
from lossaudit.training.corruptions import corrupt
from lossaudit.training.prepare import prepare

CLASSES = ["airplane", "bird", "cat", "dog", "ship"]


def _blank(n):
    return np.zeros((n, 1, 1, 1), np.uint8)


def test_the_target_is_drawn_in_proportion_to_the_weights_of_the_true_class():
    w = np.zeros((5, 5))
    w[2, 3] = 3.0  # cat → dog three times as often as cat → bird
    w[2, 1] = 1.0
    w[0, 4] = 1.0  # airplane → ship only
    n = 40_000
    y = np.arange(n) % 5
    out = corrupt(_blank(n), y, 5, "confusable_labels:0.4", seed=0, confusion=w)
    assert out.is_corrupted.sum() == round(0.4 * n)
    assert set(np.unique(y[out.is_corrupted])) == {0, 2}  # only classes with a confusable class are chosen
    assert (out.label[out.is_corrupted] != y[out.is_corrupted]).all()  # always a different label
    cats = out.is_corrupted & (y == 2)
    share_dog = (out.label[cats] == 3).mean()
    assert set(np.unique(out.label[cats])) == {1, 3} and abs(share_dog - 0.75) < 0.015  # 3 : 1
    assert (out.label[out.is_corrupted & (y == 0)] == 4).all()
    assert out.record["labels_changed"] == out.is_corrupted.sum()
    assert np.array_equal(out.true_label, y) and np.array_equal(out.x, _blank(n))


def test_the_diagonal_never_counts():
    w = np.eye(5) * 10
    w[1, 2] = 1.0
    y = np.arange(100) % 5
    out = corrupt(_blank(100), y, 5, "confusable_labels:0.2", seed=1, confusion=w)
    assert (y[out.is_corrupted] == 1).all() and (out.label[out.is_corrupted] == 2).all()


def test_asking_for_more_than_the_confusable_classes_hold_is_one_line():
    w = np.zeros((5, 5))
    w[2, 3] = 1.0
    with pytest.raises(UserError, match=r"only 20 belong to a class with a confusable class; valid: a share up to 0\.200"):
        corrupt(_blank(100), np.arange(100) % 5, 5, "confusable_labels:0.3", seed=0, confusion=w)


def test_pairs_file(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("true,given,weight\ncat,dog,2\ndog,cat\n\nairplane,ship,0.5\n")
    w = read_pairs(f, CLASSES)
    assert w[2, 3] == 2 and w[3, 2] == 1 and w[0, 4] == 0.5 and w.sum() == 3.5
    f.write_text("cat,dog\n")  # no header
    assert read_pairs(f, CLASSES)[2, 3] == 1


@pytest.mark.parametrize("text, message", [
    ("cat,horse\n", "unknown class 'horse'; valid: airplane, bird, cat, dog, ship"),
    ("cat,cat\n", "cannot be confused with itself"),
    ("cat,dog\ncat,dog\n", "given twice"),
    ("cat,dog,-1\n", "must be a number > 0"),
    ("cat,dog,x\n", "is not a number"),
    ("cat\n", "is not true,given[,weight]"),
    ("true,given\n", "no pairs"),
])
def test_bad_pairs_files_are_one_clear_line(tmp_path, text, message):
    f = tmp_path / "pairs.csv"
    f.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        read_pairs(f, CLASSES)
    assert "\n" not in str(err.value) and "pairs.csv" in str(err.value)


def test_a_missing_pairs_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_pairs(tmp_path / "nope.csv", CLASSES)


def test_the_proxy_finds_planted_confusions():
    """Classes 0 and 1 share one image prototype, 2 and 3 another, 4 its own: the proxy confuses 0↔1 and 2↔3."""
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 256, size=(3, 3, 16, 16)).astype(float)
    y = np.arange(1000) % 5
    which = np.array([0, 0, 1, 1, 2])[y]
    x = np.clip(protos[which] + rng.normal(0, 60, size=(1000, 3, 16, 16)), 0, 255).astype(np.uint8)
    counts = proxy_confusion(x, y, 5)
    assert np.all(np.diag(counts) == 0)
    pair_share = (counts[0, 1] + counts[1, 0] + counts[2, 3] + counts[3, 2]) / counts.sum()
    assert counts.sum() > 100 and pair_share > 0.9  # chance among off-diagonal cells: 4 / 20
    assert np.array_equal(proxy_confusion(x, y, 5), counts)  # deterministic


def test_a_run_records_where_its_confusions_came_from(tmp_path):
    prep = prepare(RunConfig(corruption="confusable_labels:0.2"))
    record = prep.record["confusion"]
    assert record["source"] == "proxy" and np.array(record["weights"]).shape == (10, 10)
    changed = prep.label != prep.true_label
    assert changed.sum() == prep.is_corrupted.sum() == round(0.2 * len(prep.label))
    w = np.array(record["weights"])
    assert (w[prep.true_label[changed], prep.label[changed]] > 0).all()  # every new label is a confusable class
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("3,8\n8,3\n")
    with_file = prepare(RunConfig(corruption="confusable_labels:0.1", confusion=str(pairs)))
    flipped = with_file.label != with_file.true_label
    assert set(zip(with_file.true_label[flipped], with_file.label[flipped])) == {(3, 8), (8, 3)}
    assert with_file.record["confusion"]["source"] == str(pairs.resolve())
