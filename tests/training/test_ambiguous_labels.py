"""`ambiguous_labels`: human-like label noise, its exact rule and planted ambiguity found."""

import numpy as np

from lossaudit.training.confusions import proxy_scores
from lossaudit.training.corruptions import corrupt


def _blends(n=600, k=2, seed=1):
    """Images blended from two class prototypes: weight a of the first; the label is the class it looks more like,
    so an image with a near 0.5 is genuinely ambiguous."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (2, 3, 8, 8)).astype(float)
    a = rng.uniform(0, 1, n)
    x = a[:, None, None, None] * protos[0] + (1 - a[:, None, None, None]) * protos[1]
    x = np.clip(np.round(x + rng.normal(0, 8, x.shape)), 0, 255).astype(np.uint8)
    return x, (a < 0.5).astype(np.int64), a


def test_the_flips_are_the_smallest_margins_of_the_reference_each_to_its_best_other_class():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (401, 3, 6, 5), dtype=np.uint8), np.arange(401) % 10
    out = corrupt(x, y, 10, "ambiguous_labels:0.25", seed=3)
    scores = proxy_scores(x, y, 10, np.random.default_rng([3, 0xC0FFEE]))  # the stream corrupt() seeds
    own = scores[np.arange(401), y]
    others = scores.copy()
    others[np.arange(401), y] = -np.inf
    margin = own - others.max(1)
    assert out.is_corrupted.sum() == 100
    assert set(np.flatnonzero(out.is_corrupted)) == set(np.argsort(margin)[:100])
    flipped = out.is_corrupted
    assert np.array_equal(out.label[flipped], others.argmax(1)[flipped])
    assert (out.label[flipped] != y[flipped]).all() and out.record["labels_changed"] == 100
    assert np.array_equal(out.label[~flipped], y[~flipped]) and np.array_equal(out.true_label, y)
    assert np.array_equal(out.x, x)
    assert out.record["margin_cut"] == margin[flipped].max()


def test_planted_ambiguous_images_are_the_ones_flipped():
    x, y, a = _blends()
    out = corrupt(x, y, 2, "ambiguous_labels:0.2", seed=0)
    distance = np.abs(a - 0.5)  # how far an image is from the boundary between the two looks
    chosen, rest = distance[out.is_corrupted], distance[~out.is_corrupted]
    assert chosen.mean() < 0.3 * rest.mean()
    # nearly the 20% closest to the boundary: none of them further out than the closest 30%
    assert chosen.max() < np.quantile(distance, 0.3)
    assert (out.label[out.is_corrupted] == 1 - y[out.is_corrupted]).all()


def test_a_random_share_of_the_same_images_is_not_ambiguous():
    """The control: random_labels at the same share picks images at every distance from the boundary."""
    x, y, a = _blends()
    out = corrupt(x, y, 2, "random_labels:0.2", seed=0)
    distance = np.abs(a - 0.5)
    assert distance[out.is_corrupted].mean() > 0.6 * distance[~out.is_corrupted].mean()
