"""The audit's estimators on planted truth: the tail-share bound, the uniform/confusable mix of label pairs, and
the mixed estimate they make together."""

import numpy as np
import pytest

from lossaudit.audit import noise_share

K = 10


def _confusions() -> np.ndarray:
    """Each class confused with its two neighbours (weights 3:1), as the canaries' W[true, given]."""
    w = np.zeros((K, K))
    for c in range(K):
        w[c, (c + 1) % K], w[c, (c - 1) % K] = 3.0, 1.0
    return w


def _flip(true: np.ndarray, kind: np.ndarray, rng) -> np.ndarray:
    """Given labels of mislabeled examples: uniform over the other classes, or drawn from `_confusions`."""
    w = _confusions()
    given = (true + rng.integers(1, K, len(true))) % K
    for i in np.flatnonzero(kind == "confusable"):
        given[i] = rng.choice(K, p=w[true[i]] / w[true[i]].sum())
    return given


def test_tail_share_is_exact_where_clean_examples_never_reach():
    rng = np.random.default_rng(0)
    clean, noisy = rng.uniform(0, 1, 8000), rng.uniform(2, 3, 2000)
    share, t = noise_share.tail_share(np.concatenate([clean, noisy]), rng.uniform(2, 3, 400))
    assert share == pytest.approx(0.2, abs=0.02) and t >= 2


def test_tail_share_weights_canaries():
    """Weighting two canary samples is the same as pooling them in those proportions."""
    rng = np.random.default_rng(1)
    user = rng.normal(0, 1, 5000)
    a, b = rng.normal(2, 1, 300), rng.normal(1, 1, 300)
    pooled = noise_share.tail_share(user, np.concatenate([a, a, a, b]))
    weighted = noise_share.tail_share(user, np.concatenate([a, b]), np.concatenate([np.full(300, 3.0), np.ones(300)]))
    assert weighted[0] == pytest.approx(pooled[0], rel=1e-9)


@pytest.mark.parametrize("uniform_share", [0.0, 0.3, 0.7, 1.0])
def test_label_mix_recovers_the_share_of_uniform_flips(uniform_share):
    rng = np.random.default_rng(2)
    n = 4000
    true = rng.integers(0, K, n)
    kind = np.where(rng.random(n) < uniform_share, "uniform", "confusable")
    given = _flip(true, kind, rng)
    assert noise_share.label_mix(given, true, _confusions()) == pytest.approx(uniform_share, abs=0.05)


def test_label_mix_of_nothing_is_even():
    assert noise_share.label_mix(np.array([], int), np.array([], int), _confusions()) == 0.5


@pytest.mark.parametrize("kind", ["uniform", "confusable"])
def test_mixed_share_finds_the_share_whatever_the_noise_looks_like(kind):
    """Uniform flips score high, confusable ones lower (closer to the clean examples): read against the wrong canary
    kind the share is off, at the mix the label pairs show it is right."""
    rng = np.random.default_rng(3)
    n, share = 10000, 0.2
    noisy = rng.random(n) < share
    true = rng.integers(0, K, n)
    kinds = np.full(n, kind)
    given = np.where(noisy, _flip(true, kinds, rng), true)
    score = np.where(~noisy, rng.normal(0, 1, n), rng.normal(3.5 if kind == "uniform" else 2.0, 1, n))
    other = np.where(noisy, true, (given + 1) % K)  # the most likely other class: the true one, for the noisy
    canaries = {"random_labels": rng.normal(3.5, 1, 300), "confusable_labels": rng.normal(2.0, 1, 300)}
    est, _, lam = noise_share.mixed_share(score, (given, other), _confusions(), canaries)
    assert est == pytest.approx(noisy.mean(), abs=0.03)
    assert lam > 0.8 if kind == "uniform" else lam < 0.2
    wrong = {"uniform": "confusable_labels", "confusable": "random_labels"}[kind]
    assert abs(noise_share.tail_share(score, canaries[wrong])[0] - noisy.mean()) > 0.05


def test_the_interval_holds_the_estimate_under_each_canary_kind():
    rng = np.random.default_rng(5)
    n = 4000
    noisy = rng.random(n) < 0.15
    true = rng.integers(0, K, n)
    given = np.where(noisy, _flip(true, np.full(n, "uniform"), rng), true)
    score = np.where(noisy, rng.normal(3.0, 1, n), rng.normal(0, 1, n))
    other = np.where(noisy, true, (given + 1) % K)
    canaries = {"random_labels": rng.normal(3.5, 1, 100), "confusable_labels": rng.normal(2.0, 1, 100)}
    est = noise_share.estimate_share(score, (given, other), _confusions(), canaries, n_boot=50)
    assert est.low <= min(est.by_kind.values()) <= max(est.by_kind.values()) <= est.high
    assert est.low <= est.share <= est.high and set(est.by_kind) == set(canaries)
    assert noise_share.estimate_share(score, (given, other), _confusions(), {"random_labels": score[:4]}) is None
