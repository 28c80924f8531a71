"""Exact semantics of the paper's corruptions (as the README's Corruptions section states them)."""

import numpy as np
import pytest

from lossaudit.core.errors import UserError
from lossaudit.training.config import RunConfig
from lossaudit.training.corruptions import CORRUPTIONS, corrupt, parse_corruption
from lossaudit.training.prepare import prepare


def _images(n, c=3, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
@pytest.mark.parametrize("share", [0.25, 0.5, 1.0])
def test_every_kind_selects_exactly_the_share_and_leaves_the_rest_alone(kind, share):
    x, y = _images(401), np.arange(401) % 10
    confusion = np.ones((10, 10)) if CORRUPTIONS[kind].needs_confusion else None  # every class confusable
    out = corrupt(x, y, 10, f"{kind}:{share}", seed=3, confusion=confusion)
    assert out.is_corrupted.sum() == round(share * 401)
    clean = ~out.is_corrupted
    assert np.array_equal(out.x[clean], x[clean])
    assert np.array_equal(out.label[clean], y[clean])
    assert np.array_equal(out.true_label, y)
    assert out.kind == kind and out.share == share
    again = corrupt(x, y, 10, f"{kind}:{share}", seed=3, confusion=confusion)
    assert np.array_equal(again.x, out.x) and np.array_equal(again.label, out.label)


def test_corruption_depends_on_the_seed():
    x, y = _images(300), np.arange(300) % 10
    a, b = corrupt(x, y, 10, "random_labels:0.5", 0), corrupt(x, y, 10, "random_labels:0.5", 1)
    assert not np.array_equal(a.is_corrupted, b.is_corrupted)


def test_random_labels_are_uniform_over_all_classes_including_the_original():
    k, n = 10, 200_000
    y = np.arange(n) % k
    out = corrupt(np.zeros((n, 1, 1, 1), np.uint8), y, k, "random_labels:1.0", seed=0)
    assert out.is_corrupted.all()
    kept = (out.label == y).mean()  # the original label is one of the K equally likely draws
    assert abs(kept - 1 / k) < 0.005
    freq = np.bincount(out.label, minlength=k) / n
    assert np.abs(freq - 1 / k).max() < 0.005
    # independent of the original: within one original class the new labels are still uniform
    within = np.bincount(out.label[y == 3], minlength=k) / (y == 3).sum()
    assert np.abs(within - 1 / k).max() < 0.01
    assert out.record["labels_changed"] == int((out.label != y).sum())
    assert np.array_equal(out.x, np.zeros((n, 1, 1, 1), np.uint8))


def test_shuffle_pixels_uses_one_permutation_for_every_image_and_channel():
    n, c, h, w = 50, 3, 4, 5
    rng = np.random.default_rng(1)
    # every image channel holds h*w distinct values, so the permutation can be read off each one
    x = np.stack([np.stack([rng.permutation(256)[: h * w] for _ in range(c)]) for _ in range(n)]).astype(np.uint8)
    x = x.reshape(n, c, h, w)
    out = corrupt(x, np.zeros(n, int), 2, "shuffle_pixels:0.5", seed=7)
    idx = np.flatnonzero(out.is_corrupted)
    perms = set()
    for i in idx:
        for ch in range(c):
            src, new = x[i, ch].reshape(-1), out.x[i, ch].reshape(-1)
            position = {int(v): j for j, v in enumerate(src)}
            perms.add(tuple(position[int(v)] for v in new))  # new[j] = src[perm[j]]
    assert len(perms) == 1
    perm = perms.pop()
    assert sorted(perm) == list(range(h * w)) and perm != tuple(range(h * w))
    assert np.array_equal(out.label, np.zeros(n))


def test_gaussian_images_match_each_images_own_mean_and_variance():
    n, c, h, w = 40, 3, 32, 32
    rng = np.random.default_rng(2)
    means = rng.uniform(90, 160, n)
    stds = rng.uniform(10, 30, n)
    x = np.clip(rng.normal(means[:, None, None, None], stds[:, None, None, None], (n, c, h, w)), 0, 255).astype(np.uint8)
    out = corrupt(x, np.zeros(n, int), 2, "gaussian:0.5", seed=5)
    idx = np.flatnonzero(out.is_corrupted)
    for i in idx:
        src, new = x[i].astype(float), out.x[i].astype(float)
        assert not np.array_equal(src, new)
        m = src.size  # 3072 draws per image; allow 5 standard errors for mean and std
        assert abs(new.mean() - src.mean()) < 5 * src.std() / np.sqrt(m)
        assert abs(new.std() / src.std() - 1) < 5 / np.sqrt(2 * m)
    # noise, not the image: within an image, no correlation with the original pixels
    centred = lambda a: (a - a.mean(axis=(1, 2, 3), keepdims=True)).reshape(-1)  # noqa: E731
    corr = np.corrcoef(centred(x[idx].astype(float)), centred(out.x[idx].astype(float)))[0, 1]
    assert abs(corr) < 0.05
    assert out.record["values_clipped"] < 1e-3 * out.record["values_total"]  # mid-range images barely clip


def test_gaussian_records_clipping_of_extreme_images():
    x = np.zeros((4, 1, 8, 8), np.uint8)
    x[:, :, :4] = 255  # mean 127.5, std 127.5: a good part of the noise falls outside 0..255
    out = corrupt(x, np.zeros(4, int), 2, "gaussian:1.0", seed=0)
    assert out.record["values_clipped"] > 0
    assert out.x.min() >= 0 and out.x.max() <= 255


@pytest.mark.parametrize("spec", ["random_labels:1.5", "random_labels:0", "random_labels:-0.1", "random_labels:abc",
                                  "random_labels", "blur:0.1", "", "none:0.5"])
def test_bad_corruption_specs_are_one_clear_line(spec):
    with pytest.raises(UserError) as err:
        parse_corruption(spec)
    message = str(err.value)
    assert "\n" not in message and repr(spec) in message and "random_labels" in message


def test_none_is_no_corruption():
    assert parse_corruption("none") == (None, 0.0)


def test_test_images_are_never_corrupted():
    clean = prepare(RunConfig(corruption="none"))
    noisy = prepare(RunConfig(corruption="gaussian:1.0"))
    assert noisy.is_corrupted.all()
    assert np.array_equal(noisy.test.x, clean.test.x) and np.array_equal(noisy.test.y, clean.test.y)
