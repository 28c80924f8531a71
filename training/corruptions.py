"""Corruptions of the training split (the paper's Section 3.1, and realistic label noise), a registry keyed by kind.

A spec is ``none`` or ``KIND:SHARE`` with 0 < SHARE <= 1. Exactly round(SHARE · N) training
examples are selected, seeded (for `confusable_labels`, among the examples of the classes that have a
confusable class; for `ambiguous_labels`, the images a clean reference model finds most ambiguous); test images are
never corrupted. Every corruption returns the new images and labels
plus the per-example ground truth that is stored with the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lossaudit.core.errors import UserError, choices
from lossaudit.core.registry import Registry


@dataclass(frozen=True, kw_only=True)
class Corrupted:
    """Training data after corruption. x: (N, C, H, W) uint8; label, true_label: (N,) int64; is_corrupted: (N,) bool."""

    x: np.ndarray
    label: np.ndarray
    true_label: np.ndarray
    is_corrupted: np.ndarray
    kind: str | None
    share: float
    record: dict = field(default_factory=dict)  # what was done, for runs.config (e.g. the permutation's seed, clipping)


@dataclass(frozen=True)
class CorruptionEntry:
    name: str
    apply: Callable[..., Corrupted]
    description: str
    needs_confusion: bool = False  # apply takes `confusion`, W[true, given] (training.confusions), and selects only
    # among the examples whose class has a confusable class
    chooses: bool = False  # apply is given the number of examples to corrupt and chooses them itself


CORRUPTIONS: Registry[CorruptionEntry] = Registry("corruption")


def register_corruption(name: str, description: str, *, needs_confusion: bool = False, chooses: bool = False):
    """Decorates the function that applies a corruption: registers it under `name` (lossaudit.core.registry)."""
    def wrap(fn):
        CORRUPTIONS.register(CorruptionEntry(name, fn, description, needs_confusion, chooses))
        return fn
    return wrap


def parse_corruption(spec: str) -> tuple[str | None, float]:
    """``none`` → (None, 0.0); ``KIND:SHARE`` → (kind, share). One clear error for anything else."""
    if spec == "none":
        return None, 0.0
    kind, sep, share_text = spec.partition(":")
    valid = f"none or KIND:SHARE with KIND in {{{choices(CORRUPTIONS)}}} and 0 < SHARE <= 1"
    if kind not in CORRUPTIONS or not sep:
        raise UserError(f"unknown corruption {spec!r}; valid: {valid}")
    try:
        share = float(share_text)
    except ValueError:
        raise UserError(f"corruption {spec!r}: share {share_text!r} is not a number; valid: {valid}") from None
    if not 0.0 < share <= 1.0:
        raise UserError(f"corruption {spec!r}: share {share} is outside (0, 1]; valid: {valid}")
    return kind, share


def corrupt(x: np.ndarray, y: np.ndarray, n_classes: int, spec: str, seed: int, *,
            confusion: np.ndarray | None = None) -> Corrupted:
    """Apply a corruption spec to training images x (N, C, H, W) uint8 and labels y (N,); `confusion`, W[true, given]
    (n_classes × n_classes, >= 0), for the kinds that need one."""
    kind, share = parse_corruption(spec)
    if kind is None:
        return Corrupted(x=x, label=y.copy(), true_label=y.copy(), is_corrupted=np.zeros(len(y), dtype=bool),
                         kind=None, share=0.0)
    entry = CORRUPTIONS[kind]
    rng = np.random.default_rng([seed, 0xC0FFEE])
    n = int(round(share * len(y)))
    selected = np.zeros(len(y), dtype=bool)
    if entry.chooses:
        return entry.apply(x, y, n_classes, n, rng, share)
    if not entry.needs_confusion:
        selected[rng.choice(len(y), size=n, replace=False)] = True
        return entry.apply(x, y, n_classes, selected, rng, share)
    if confusion is None:
        raise ValueError(f"corruption {kind} needs a confusion matrix")
    confusion = np.where(np.eye(n_classes, dtype=bool), 0.0, confusion)  # a class is never confused with itself
    eligible = np.flatnonzero(confusion[y].sum(1) > 0)
    if n > len(eligible):
        raise UserError(f"corruption {spec!r}: {n} examples asked for, but only {len(eligible)} belong to a class "
                        f"with a confusable class; valid: a share up to {len(eligible) / len(y):.3f}, or more pairs "
                        "in --confusion")
    selected[rng.choice(eligible, size=n, replace=False)] = True
    return entry.apply(x, y, n_classes, selected, rng, share, confusion=confusion)


@register_corruption("random_labels", "selected examples get a label drawn uniformly from all K classes, "
                     "the original included (about (K-1)/K of them change)")
def random_labels(x, y, n_classes, selected, rng, share) -> Corrupted:
    label = y.copy()
    label[selected] = rng.integers(0, n_classes, size=int(selected.sum()))
    changed = int((label != y).sum())
    return Corrupted(x=x, label=label, true_label=y.copy(), is_corrupted=selected, kind="random_labels", share=share,
                     record={"labels_changed": changed})


@register_corruption("shuffle_pixels", "one random permutation of pixel positions, shared by every selected "
                     "image and by all channels of an image")
def shuffle_pixels(x, y, n_classes, selected, rng, share) -> Corrupted:
    n, c, h, w = x.shape
    perm = rng.permutation(h * w)
    out = x.copy()
    out[selected] = x[selected].reshape(-1, c, h * w)[:, :, perm].reshape(-1, c, h, w)
    return Corrupted(x=out, label=y.copy(), true_label=y.copy(), is_corrupted=selected, kind="shuffle_pixels",
                     share=share, record={"permutation_head": perm[:8].tolist()})


@register_corruption("gaussian", "selected images replaced by Gaussian noise with that image's own pixel mean "
                     "and variance, rounded and clipped to 0..255")
def gaussian(x, y, n_classes, selected, rng, share) -> Corrupted:
    out = x.copy()
    chosen = x[selected].astype(np.float64)
    flat = chosen.reshape(len(chosen), -1)
    mean, std = flat.mean(axis=1), flat.std(axis=1)  # per image, over all its pixels and channels
    noise = rng.standard_normal(chosen.shape) * std[:, None, None, None] + mean[:, None, None, None]
    clipped = int(((noise < 0) | (noise > 255)).sum())
    out[selected] = np.clip(np.round(noise), 0, 255).astype(np.uint8)
    return Corrupted(x=out, label=y.copy(), true_label=y.copy(), is_corrupted=selected, kind="gaussian", share=share,
                     record={"values_clipped": clipped, "values_total": int(noise.size)})


@register_corruption("confusable_labels", "selected examples get the label of a class their own class is confused "
                     "with: drawn from the other classes in proportion to W[true, ·] (--confusion pairs, or a clean "
                     "proxy's confusion counts); always a label other than the original", needs_confusion=True)
def confusable_labels(x, y, n_classes, selected, rng, share, *, confusion) -> Corrupted:
    label = y.copy()
    rows = np.flatnonzero(selected)
    weights = confusion[y[rows]].astype(np.float64)
    weights[np.arange(len(rows)), y[rows]] = 0.0  # never the original class
    cumulative = np.cumsum(weights, axis=1)
    draw = rng.random(len(rows)) * cumulative[:, -1]
    label[rows] = (cumulative <= draw[:, None]).sum(1)  # the first class whose cumulative weight exceeds the draw
    return Corrupted(x=x, label=label, true_label=y.copy(), is_corrupted=selected, kind="confusable_labels",
                     share=share, record={"labels_changed": int((label != y).sum())})


@register_corruption("ambiguous_labels", "human-like label noise: the chosen examples are the images a clean reference "
                     "model (a ridge classifier on random convolutional features, 2-fold cross-fitted on the labels as "
                     "given) finds most ambiguous, those with the smallest margin between the score of their own class "
                     "and the best other; each gets that other class, the one its image is confused with",
                     chooses=True)
def ambiguous_labels(x, y, n_classes, n, rng, share) -> Corrupted:
    from lossaudit.training.confusions import proxy_scores

    scores = proxy_scores(x, y, n_classes, rng)
    rows = np.arange(len(y))
    own = scores[rows, y]
    others = scores.copy()
    others[rows, y] = -np.inf
    other, margin = others.argmax(1), own - others.max(1)
    order = np.lexsort((rng.permutation(len(y)), margin))  # smallest margin first; exact ties in a seeded order
    selected = np.zeros(len(y), dtype=bool)
    selected[order[:n]] = True
    label = y.copy()
    label[selected] = other[selected]
    chosen = margin[selected]
    return Corrupted(x=x, label=label, true_label=y.copy(), is_corrupted=selected, kind="ambiguous_labels",
                     share=share, record={"labels_changed": int((label != y).sum()),
                                          "margin_cut": float(chosen.max()) if len(chosen) else None})
