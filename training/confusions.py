"""Which classes a dataset's images are genuinely confused with: a class-by-class weight matrix W[true, given].

Two sources, for the `confusable_labels` corruption and for the audit's confusable label canaries:

- a file of class pairs (`--confusion pairs.csv`): rows `true,given` or `true,given,weight`, class names as the
  dataset names them; a pair both ways needs both rows; weight > 0 (1 when not given);
- otherwise a clean proxy's confusions (`proxy_confusion`): off-diagonal counts of the out-of-fold predictions of a
  ridge classifier on random convolutional features, 2-fold cross-fitted on (at most PROXY_MAX examples of) the
  data as labelled. No training, float32 features and a float64 solve: the same matrix with 1 or 2 threads. On
  10,000 CIFAR-10 images (10 s on 2 CPU cores; out-of-fold error 58%) each class's most-confused class is a
  semantic neighbour: airplane→ship, automobile→truck, bird→deer, cat→dog, deer→horse, dog→cat, frog→deer,
  horse→dog, ship→airplane, truck→automobile.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError, choices

PROXY_MAX = 10_000  # examples the proxy is fitted on (a stratified sample beyond that): a class-level statistic
PROXY_FILTERS = 128  # random filters, drawn from normalised image patches
PROXY_SIZE = 32  # larger images are shrunk to this first
PROXY_RIDGE = 1.0  # ridge penalty, relative to the mean diagonal of the features' Gram matrix
PROXY_THRESHOLD = 0.5  # features are relu(patch · filter - this)


def read_pairs(path: str | Path, classes: list[str]) -> np.ndarray:
    """W[true, given] from a CSV of class pairs; one clear line for anything else."""
    path = Path(path).expanduser()
    what = f"--confusion {str(path)!r}"
    if not path.is_file():
        raise UserError(f"{what}: no such file; give a CSV with rows true,given[,weight] of class names")
    index = {str(c): i for i, c in enumerate(classes)}
    w = np.zeros((len(classes), len(classes)))
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{what}: not a readable CSV ({err})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["true", "given"]:
        rows = rows[1:]
    for n, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not any(row):
            continue
        if len(row) not in (2, 3):
            raise UserError(f"{what}, row {n}: {','.join(row)!r} is not true,given[,weight]")
        for name in row[:2]:
            if name not in index:
                raise UserError(f"{what}, row {n}: unknown class {name!r}; valid: {choices(index)}")
        t, g = index[row[0]], index[row[1]]
        if t == g:
            raise UserError(f"{what}, row {n}: a class cannot be confused with itself ({row[0]!r})")
        try:
            weight = float(row[2]) if len(row) == 3 else 1.0
        except ValueError:
            raise UserError(f"{what}, row {n}: weight {row[2]!r} is not a number") from None
        if not (np.isfinite(weight) and weight > 0):
            raise UserError(f"{what}, row {n}: weight {row[2]!r} must be a number > 0")
        if w[t, g]:
            raise UserError(f"{what}, row {n}: the pair {row[0]} → {row[1]} is given twice")
        w[t, g] = weight
    if not w.any():
        raise UserError(f"{what}: no pairs; give rows true,given[,weight] of class names")
    return w


def proxy_confusion(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0) -> np.ndarray:
    """Off-diagonal confusion counts C[label, predicted] of a cross-fitted clean proxy (see the module docstring).

    x: (N, C, H, W) uint8; y: (N,) labels as given. Deterministic for given data and seed."""
    rng = np.random.default_rng([seed, 0xC0F5])
    if len(y) > PROXY_MAX:
        keep = np.sort(rng.choice(len(y), PROXY_MAX, replace=False))
        x, y = x[keep], y[keep]
    scores = _cross_fitted(_random_features(_proxy_images(x), rng), y, n_classes, rng.permutation(len(y)) % 2)
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    read = ~np.isnan(scores).any(1)  # a fold with nothing to fit on predicts nothing
    np.add.at(counts, (y[read], scores[read].argmax(1)), 1)
    np.fill_diagonal(counts, 0)
    return counts


def proxy_scores(x: np.ndarray, y: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(N, K) every example's out-of-fold class scores from the same clean proxy, 2-fold cross-fitted over all N
    examples (each fold's classifier fitted on at most PROXY_MAX examples of the other fold): how much each image
    looks like each class to a model that never saw its label."""
    if not len(y):
        return np.zeros((0, n_classes))
    features = _random_features(_proxy_images(x), rng)
    fold = rng.permutation(len(y)) % 2
    return _cross_fitted(features, y, n_classes, fold, fit_max=PROXY_MAX, rng=rng)


def _proxy_images(x: np.ndarray):
    import torch  # only here: the rest of lossaudit.training's data preparation is numpy

    images = torch.from_numpy(x).float()
    if max(x.shape[2:]) > PROXY_SIZE:
        images = torch.nn.functional.interpolate(images, size=(PROXY_SIZE, PROXY_SIZE), mode="bilinear",
                                                 antialias=True, align_corners=False)
    return images


def _cross_fitted(features: np.ndarray, y: np.ndarray, n_classes: int, fold: np.ndarray, *, fit_max: int = 0,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """(N, K) ridge scores of each example from the classifier fitted on the other fold (NaN where a fold is empty);
    with fit_max, each fit uses a seeded sample of at most that many of the other fold's examples."""
    scores = np.full((len(y), n_classes), np.nan)
    targets = np.eye(n_classes)[y]
    for k in (0, 1):
        fit, out = np.flatnonzero(fold != k), fold == k
        if not out.any() or not len(fit):
            continue
        if fit_max and len(fit) > fit_max:
            fit = np.sort(rng.choice(fit, fit_max, replace=False))
        gram = features[fit].T @ features[fit]
        gram[np.diag_indices_from(gram)] += PROXY_RIDGE * np.trace(gram) / len(gram)
        coef = np.linalg.solve(gram, features[fit].T @ targets[fit])
        scores[out] = features[out] @ coef
    return scores


def _random_features(x, rng: np.random.Generator) -> np.ndarray:
    """x: (N, C, H, W) float32 pixels 0..255 → (N, F + 1) float64: standardised relu responses to random normalised patches, average-pooled to 2×2, and a
    constant."""
    import torch
    from torch.nn import functional as F

    x = x / 255
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    n, c, h, w = x.shape
    k = 5 if min(h, w) >= 16 else 3 if min(h, w) >= 6 else 1
    a = rng.integers(0, n, PROXY_FILTERS)
    i, j = rng.integers(0, h - k + 1, PROXY_FILTERS), rng.integers(0, w - k + 1, PROXY_FILTERS)
    filters = torch.stack([x[p, :, r:r + k, s:s + k] for p, r, s in zip(a, i, j)])
    filters = filters - filters.mean((1, 2, 3), keepdim=True)
    filters = filters / filters.flatten(1).norm(dim=1).clamp_min(1e-6)[:, None, None, None]
    out = []
    with torch.inference_mode():
        for start in range(0, n, 1000):
            f = F.relu(F.conv2d(x[start:start + 1000], filters) - PROXY_THRESHOLD)
            out.append(F.adaptive_avg_pool2d(f, 2).flatten(1))
    f = torch.cat(out).double().numpy()
    f = (f - f.mean(0)) / np.maximum(f.std(0), 1e-6)
    return np.hstack([f, np.ones((n, 1))])
