"""The reading against trusted labels (lossaudit.audit.transition): exact on exact mixtures, unbiased on clean data,
and planted class-dependent noise found — its share, its pairs and its examples."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lossaudit.audit import transition as tr

K = 4


def _looks(rng, true, k=K, sharp=3.0):
    """Probability vectors a proxy might give images of class `true`: mostly right, confusing 0↔1 and 2↔3."""
    alpha = np.ones((len(true), k))
    alpha[np.arange(len(true)), true] += sharp * 3
    alpha[np.arange(len(true)), true ^ 1] += sharp  # each class's confusable partner
    return np.stack([rng.dirichlet(a) for a in alpha])


def _data(rng, *, n=4000, m=800, flip=None, readers=2):
    """Audited examples (true classes uniform, a share `flip[k]` of class k labelled as its partner) and trusted ones,
    each predicted by one of `readers` proxies that see images alike."""
    true = rng.integers(0, K, n)
    label = true.copy()
    mislabeled = np.zeros(n, bool)
    for k, share in (flip or {}).items():
        mine = np.flatnonzero(true == k)
        moved = rng.choice(mine, int(round(share * len(mine))), replace=False)
        label[moved], mislabeled[moved] = k ^ 1, True
    trusted_label = np.repeat(np.arange(K), m // K)
    data = tr.Trusted(_looks(rng, true), label, rng.integers(0, readers, n),
                      np.stack([_looks(rng, trusted_label) for _ in range(readers)]), trusted_label)
    return data, mislabeled


def test_an_exact_mixture_of_the_trusted_classes_is_read_exactly():
    rng = np.random.default_rng(0)
    trusted_label = np.repeat(np.arange(K), 50)
    trusted = _looks(rng, trusted_label)
    # the examples labelled j: copies of trusted examples, class by class, in known shares
    shares = np.array([[0.8, 0.2, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.05, 0.25, 0.7]])
    probs, label = [], []
    for j in range(K):
        for k in range(K):
            copies = int(round(shares[j, k] * 20))  # 20 copies of each class-k trusted example per unit of share
            probs.append(np.repeat(trusted[trusted_label == k], copies, axis=0))
            label.append(np.full(50 * copies, j))
    data = tr.Trusted(np.concatenate(probs), np.concatenate(label), np.zeros(sum(map(len, label)), int),
                      trusted[None], trusted_label)
    assert tr.transition(data) == pytest.approx(shares, abs=1e-9)
    counts = np.bincount(data.user_label)
    assert tr.share_of(tr.transition(data), counts) == pytest.approx(
        np.sum(counts * (1 - np.diag(shares))) / counts.sum(), abs=1e-9)


def test_the_shown_transition_has_no_negative_shares_and_rows_summing_to_one():
    shown = tr.shown(np.array([[1.02, -0.02], [0.3, 0.7]]))
    assert shown == pytest.approx(np.array([[1.0, 0.0], [0.3, 0.7]]))


def test_clean_data_reads_near_zero_with_an_interval_that_holds_it():
    for seed in range(3):
        est = tr.estimate(_data(np.random.default_rng(seed))[0], n_boot=100)
        assert est.low == 0.0 and est.share <= 0.02 and est.high < 0.05
    assert np.allclose(np.diag(est.matrix), 1.0, atol=0.05)


@pytest.mark.parametrize("flip", [{0: 0.3, 1: 0.3, 2: 0.1}, {3: 0.4}])
def test_planted_class_dependent_noise_is_read_with_its_share_its_pairs_and_its_examples(flip):
    data, mislabeled = _data(np.random.default_rng(2), flip=flip)
    est = tr.estimate(data, n_boot=100)
    truth = mislabeled.mean()
    assert abs(est.share - truth) < 0.03 and est.low < est.share < est.high < est.low + 0.1
    for k, share in flip.items():  # of the examples labelled k's partner, the share that truly are k
        given = k ^ 1
        planted = np.mean((data.user_label == given) & mislabeled) / np.mean(data.user_label == given)
        assert est.matrix[given, k] == pytest.approx(planted, abs=0.05)
        assert est.per_class[given] == pytest.approx(planted, abs=0.05)
    posterior = tr.mislabeled_probability(data, est.matrix)
    assert np.all((posterior >= 0) & (posterior <= 1))
    assert roc_auc_score(mislabeled, posterior) > 0.85  # chance is 0.5
    # the examples it is surest about are mostly wrong, and those it clears mostly right
    assert mislabeled[posterior > 0.8].mean() > 0.8 and mislabeled[posterior < 0.2].mean() < 0.1


def test_the_interval_covers_the_planted_share_about_as_often_as_it_says():
    """A 90% interval (5-95% of the bootstrap): over 20 independent draws of data and trusted examples, it holds the
    planted share in at least 15 (a binomial(20, 0.9) falls below that with probability 1%)."""
    covered = 0
    for seed in range(20):
        data, mislabeled = _data(np.random.default_rng(100 + seed), n=1500, m=200, flip={0: 0.3, 2: 0.2})
        est = tr.estimate(data, n_boot=100, seed=seed)
        covered += est.low <= mislabeled.mean() <= est.high
    assert covered >= 15


def test_each_proxy_is_read_against_its_own_predictions_of_the_trusted_examples():
    """Two proxies that see images differently (one much sharper): pooling their predictions into one reference
    would misread the mix; pairing each with its own does not."""
    rng = np.random.default_rng(3)
    data, mislabeled = _data(rng, flip={0: 0.25})
    sharp = data.user_reader == 1
    true = np.where(mislabeled, data.user_label ^ 1, data.user_label)
    data.user_probs[sharp] = _looks(rng, true[sharp], sharp=12.0)
    data.trusted_probs[1] = _looks(rng, data.trusted_label, sharp=12.0)
    assert tr.estimate(data, n_boot=50).share == pytest.approx(mislabeled.mean(), abs=0.03)


def test_classes_with_too_few_trusted_examples_are_named():
    data, _ = _data(np.random.default_rng(4), m=40)
    keep = (data.trusted_label != 2) | (np.arange(len(data.trusted_label)) % 10 == 0)  # one trusted example of 2
    data = tr.Trusted(data.user_probs, data.user_label, data.user_reader, data.trusted_probs[:, keep],
                      data.trusted_label[keep])
    assert data.missing_classes() == [2]


def _ambiguous(rng, n, share_ambiguous, k=K):
    """Images of uniform true classes; a share of them ambiguous, which the proxies read as the next class."""
    true = rng.integers(0, k, n)
    ambiguous = rng.random(n) < share_ambiguous
    seen = np.where(ambiguous, (true + 1) % k, true)
    return true, ambiguous, _looks(rng, seen, k, sharp=6.0)


@pytest.mark.parametrize("flipped", [0.5, 1.0])
def test_noise_on_ambiguous_images_reads_low_but_stays_inside_the_bounds(flipped):
    """Half or all of the ambiguous images (20%) relabelled as the class they look like: a transition reading sees
    (almost) none of it; the bounds d - e <= share <= d + e hold the truth."""
    rng = np.random.default_rng(3)
    true, ambiguous, probs = _ambiguous(rng, 6000, 0.2)
    label = true.copy()
    moved = ambiguous & (rng.random(len(true)) < flipped)
    label[moved] = (true[moved] + 1) % K
    trusted_label, _, trusted_probs = _ambiguous(rng, 2000, 0.2)
    data = tr.Trusted(probs, label, np.zeros(len(label), np.int64), trusted_probs[None], trusted_label)
    reading = tr.estimate(data, n_boot=100)
    truth = moved.mean()
    assert reading.high < truth - 0.05  # the class-conditional reading misses it
    assert reading.bounds[0] <= truth <= reading.bounds[1]
    d = np.mean(probs.argmax(1) != label)
    e = np.mean(trusted_probs.argmax(1) != trusted_label)
    assert (reading.disagreement, reading.trusted_error) == pytest.approx((d, e))
    assert reading.bounds[0] <= max(0.0, d - e) and reading.bounds[1] >= d + e
    assert f"between {reading.bounds[0]:.1%} and {reading.bounds[1]:.1%}" in tr.bounds_note(reading)


def test_the_bounds_hold_class_conditional_noise_too():
    rng = np.random.default_rng(4)
    data, mislabeled = _data(rng, flip={0: 0.3, 2: 0.2})
    reading = tr.estimate(data, n_boot=100)
    assert reading.bounds[0] <= mislabeled.mean() <= reading.bounds[1]
    assert reading.bounds[0] <= reading.low and reading.high <= reading.bounds[1]
