"""The audit over arrays (lossaudit.audit_arrays, find_label_issues, lossaudit.audit.confident, .heads): the confident
joint's exact counts, planted label noise found from probabilities, losses and features, and one line for bad input."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import lossaudit
from lossaudit.audit import confident
from lossaudit.audit.arrays import audit
from lossaudit.core.errors import UserError

K = 5


def _probs(rng, true, sharp=2.5):
    """Out-of-sample probabilities a model might give examples of class `true`: mostly right, sometimes not."""
    logits = rng.normal(0, 1, (len(true), K))
    logits[np.arange(len(true)), true] += sharp
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def _noisy(rng, n=3000, share=0.2):
    """True classes, labels with a share flipped uniformly to another class, and which were flipped."""
    true = rng.integers(0, K, n)
    flipped = rng.random(n) < share
    label = true.copy()
    label[flipped] = (true[flipped] + rng.integers(1, K, int(flipped.sum()))) % K
    return true, label, flipped


def _trusted(rng, m=1000):
    test = np.repeat(np.arange(K), m // K)
    return test, _probs(rng, test)


def test_the_confident_joint_counts_exactly_as_defined():
    # class 0's examples: p_0 = .9, .7, .2 → t_0 = 0.6; class 1's: p_1 = .8, .6, .4 → t_1 = 0.6
    probs = np.array([[.9, .1], [.7, .3], [.2, .8], [.2, .8], [.4, .6], [.6, .4]])
    label = np.array([0, 0, 0, 1, 1, 1])
    assert confident.thresholds(probs, label) == pytest.approx([0.6, 0.6])
    # example 2 (labelled 0) is confidently 1; example 5 (labelled 1) is confidently 0; the rest on their label
    assert confident.confident_class(probs, np.array([0.6, 0.6])).tolist() == [0, 0, 1, 1, 1, 0]
    est = confident.estimate(probs, label, n_boot=20)
    assert est.share == pytest.approx(2 / 6)
    assert est.matrix == pytest.approx(np.array([[2 / 3, 1 / 3], [1 / 3, 2 / 3]]))
    counted = confident.confident_class(probs, confident.thresholds(probs, label))
    assert ((counted >= 0) & (counted != label)).tolist() == [False, False, True, False, False, True]  # off its label


def test_an_example_above_no_threshold_is_not_counted_and_its_label_keeps_its_count():
    probs = np.array([[.9, .1], [.5, .5], [.2, .8], [.1, .9]])  # t_0 = .7, t_1 = .85: examples 1, 2 above neither
    label = np.array([0, 0, 1, 1])
    counted = confident.confident_class(probs, confident.thresholds(probs, label))
    assert counted.tolist() == [0, -1, -1, 1]
    joint = confident.joint(label, counted, 2)
    assert joint == pytest.approx(np.array([[2.0, 0.0], [0.0, 2.0]]))  # each row's one counted example, rescaled to 2


def test_planted_flips_are_found_from_out_of_sample_probabilities():
    rng = np.random.default_rng(0)
    true, label, flipped = _noisy(rng)
    probs = _probs(rng, true)
    result = lossaudit.audit_arrays(label, pred_probs=probs, replay=False)
    assert roc_auc_score(flipped, result.examples.score) > 0.95
    found = lossaudit.find_label_issues(label, probs)
    assert len(found) == round(result.noise_share * len(label))
    assert flipped[found].mean() > 3 * flipped.mean()  # far above chance
    assert np.array_equal(found, result.ranked_indices)
    ranks = result.examples.set_index("index")["rank"]
    assert (np.diff(ranks.loc[found].to_numpy()) > 0).all()  # most suspect first


def test_read_against_trusted_labels_the_estimate_covers_the_planted_share():
    rng = np.random.default_rng(1)
    true, label, flipped = _noisy(rng)
    test, test_probs = _trusted(rng)
    result = lossaudit.audit_arrays(label, pred_probs=_probs(rng, true), test_labels=test, test_pred_probs=test_probs)
    low, high = result.noise_interval
    assert low <= flipped.mean() <= high and abs(result.noise_share - flipped.mean()) < 0.05
    assert result.noise_reference == "trusted labels" and result.score == "trusted_posterior"
    assert result.verdict == "unsafe" and "sb50" in result.verdict_line  # sb50 over-picks the flips it replays
    assert "implied" in result.replay_source or "imply" in result.replay_source
    by_class = result.per_class.set_index("class")
    assert by_class.n.sum() == len(label) and by_class.suspects.sum() == len(result.suspects)


def test_clean_labels_read_near_zero_and_are_not_called_unsafe():
    rng = np.random.default_rng(2)
    true = rng.integers(0, K, 3000)
    test, test_probs = _trusted(rng)
    result = lossaudit.audit_arrays(true, pred_probs=_probs(rng, true), test_labels=test, test_pred_probs=test_probs)
    assert result.noise_interval[0] <= 0.01 and result.noise_share < 0.03
    assert result.verdict in ("safe", "caution")


def test_features_from_a_backbone_give_out_of_sample_probabilities_that_find_the_flips():
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 1, (K, 32))
    true, label, flipped = _noisy(rng, n=2000)
    features = centres[true] + rng.normal(0, 1.2, (len(true), 32))
    test = np.repeat(np.arange(K), 100)
    result = lossaudit.audit_arrays(label, features=features, test_labels=test,
                                    test_features=centres[test] + rng.normal(0, 1.2, (len(test), 32)), replay=False)
    assert roc_auc_score(flipped, result.examples.score) > 0.95
    assert result.noise_interval[0] - 0.02 <= flipped.mean() <= result.noise_interval[1] + 0.02


def test_a_head_never_sees_the_label_of_the_example_it_predicts():
    """Features of pure noise in many dimensions: a head can memorise the labels it trains on, so only predictions
    out of sample stay at chance."""
    from sklearn.linear_model import LogisticRegression

    from lossaudit.audit.heads import cross_fitted
    rng = np.random.default_rng(4)
    label, features = rng.integers(0, K, 400), rng.normal(0, 1, (400, 300))
    in_sample = LogisticRegression(max_iter=500).fit(features, label).predict_proba(features)[np.arange(400), label]
    assert in_sample.mean() > 0.8  # what a head that saw the labels would say
    heads = cross_fitted(features, label, K)
    assert heads.probs[np.arange(400), label].mean() < 1.5 / K
    assert np.abs(np.bincount(heads.reader) - 80).max() <= K  # each class dealt round-robin: folds within ±1 per class


def test_losses_alone_rank_the_examples_but_cannot_estimate_a_share():
    rng = np.random.default_rng(5)
    true, label, flipped = _noisy(rng, n=1000)
    losses = rng.gamma(1.0, 0.3, (1000, 4)) + 2.0 * flipped[:, None] * np.linspace(1, 0.5, 4)  # flips stay high
    result = audit(label, losses=losses)
    assert result.score == "mean_loss" and roc_auc_score(flipped, result.examples.score) > 0.95
    assert result.verdict == "unknown" and "predicted probabilities" in result.verdict_line
    assert not result.examples.suspect.any()


def test_class_names_are_read_and_kept():
    rng = np.random.default_rng(6)
    true = rng.integers(0, 2, 200)
    names = np.array(["cat", "dog"])[true]
    result = audit(names, pred_probs=np.eye(2)[true] * 0.8 + 0.1, classes=["cat", "dog"])
    assert set(result.examples.given_label) == {"cat", "dog"} and result.classes == ["cat", "dog"]


@pytest.mark.parametrize("call, words", [
    (lambda: audit([0, 1, 1], pred_probs=np.ones((3, 3))), "row 0 sums to 3"),
    (lambda: audit([0, 1, 1], pred_probs=np.full((2, 2), 0.5)), "expected shape (3, 2)"),
    (lambda: audit([0, 1, 5], pred_probs=np.full((3, 2), 0.5), classes=["a", "b"]), "class index 5 is outside 0..1"),
    (lambda: audit(["a", "b", "c"], pred_probs=np.full((3, 2), 0.5), classes=["a", "b"]), "unknown class 'c'; valid: a, b"),
    (lambda: audit([0, 1], pred_probs=np.array([[0.5, np.nan], [0.5, 0.5]])), "finite"),
    (lambda: audit([0, 1]), "give pred_probs"),
    (lambda: audit([0.0, np.nan], pred_probs=np.full((2, 2), 0.5)), "position 1 holds nan"),
    (lambda: audit([0.0, 1.5], pred_probs=np.full((2, 2), 0.5)), "position 1 holds 1.5, not a class index"),
    (lambda: audit([0, 1], pred_probs=np.full((2, 2), 0.5), test_labels=[0]), "together"),
    (lambda: audit([0, 1], losses=[[1.0], [-1.0]]), ">= 0"),
    (lambda: audit([0, 1], pred_probs=np.full((2, 2), 0.5), score="aum"), "score 'aum' is not among"),
    (lambda: lossaudit.audit_arrays([0, 1], features=np.zeros((2, 3)), pred_probs=np.full((2, 2), .5)), "not both"),
    (lambda: lossaudit.audit_arrays([0, 0, 0, 0, 0, 1], features=np.zeros((6, 2)), replay=False), "class 1 has 1 example(s)"),
])
def test_bad_arrays_get_one_line_naming_them(call, words):
    with pytest.raises(UserError) as err:
        call()
    assert words in str(err.value) and "\n" not in str(err.value)
