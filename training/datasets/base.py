"""What every dataset is (uint8 images N×C×H×W, int labels, stable example ids), the loader registry, and the
helpers loaders share: splitting, subsets, label checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lossaudit.core.errors import UserError, choices
from lossaudit.core.registry import Registry

@dataclass(frozen=True)
class Split:
    """One split. x: (N, C, H, W) uint8; y: (N,) int64; example_id: (N,) int64; source: (N,) str."""

    x: np.ndarray
    y: np.ndarray
    example_id: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> "Split":
        return Split(self.x[index], self.y[index], self.example_id[index], self.source[index])


@dataclass(frozen=True)
class Dataset:
    spec: str
    classes: tuple[str, ...]
    train: Split
    test: Split
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (path, reason) of unreadable files
    notes: tuple[str, ...] = field(default=())  # what the loader did that a user should know

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Callable[..., Dataset]
    description: str
    needs_path: bool


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(name: str, description: str, *, needs_path: bool):
    """Decorates the function that loads a dataset: registers it under `name` (lossaudit.core.registry)."""
    def wrap(fn):
        DATASETS.register(DatasetEntry(name, fn, description, needs_path))
        return fn
    return wrap


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split ``NAME[:PATH]`` and check NAME against the registry."""
    name, _, path = spec.partition(":")
    if name not in DATASETS:
        raise UserError(f"unknown dataset {spec!r}; valid: {choices(n + (':PATH' if e.needs_path else '') for n, e in DATASETS.items())}")
    entry = DATASETS[name]
    if entry.needs_path and not path:
        raise UserError(f"dataset {spec!r} needs a path: {name}:PATH")
    if not entry.needs_path and path:
        raise UserError(f"dataset {name!r} takes no path (got {spec!r})")
    return name, (Path(path).expanduser() if path else None)


def read_dataset(spec: str, *, split_seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Read a dataset by spec, unchecked (training.datasets.load_dataset checks it). Datasets without their own
    test split get a seeded stratified one (test_fraction 0: none, every example is a training example)."""
    name, path = parse_spec(spec)
    entry = DATASETS[name]
    kwargs = dict(split_seed=split_seed, test_fraction=test_fraction)
    return entry.load(spec, path, **kwargs) if entry.needs_path else entry.load(spec, **kwargs)


def stratified_subset(split: Split, n: int, seed: int, *, what: str = "--train-size") -> Split:
    """A seeded, class-stratified subset of n examples (ordered by example_id) with at least one example of each
    class the split has; 0 = all. A size out of reach (more than the split has, fewer than its classes) is an
    error naming `what` and the valid sizes."""
    if n <= 0 or n == len(split):
        return split
    if not len(split):
        raise UserError(f"{what} {n}: there are no such examples (the split is empty); valid: 0")
    n_classes = len(np.unique(split.y))
    valid = f"valid: 0 (all) or {n_classes}..{len(split)}"
    if n > len(split):
        raise UserError(f"{what} {n}: the dataset has only {len(split)} such examples; {valid}")
    if n < n_classes:
        raise UserError(f"{what} {n}: a stratified subset needs at least one example of each of the {n_classes} "
                        f"classes; {valid}")
    return split.take(_stratified_pick(split.y, n, seed))


def _stratified_pick(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n,) sorted rows of y, K <= n < len(y), each class in proportion and at least once: scikit-learn's seeded
    stratified split where it can make one (every subset made before stays as it was), else `_quotas`."""
    counts = np.unique(y, return_counts=True)[1]
    if counts.min() >= 2 and len(y) - n >= len(counts):
        from sklearn.model_selection import train_test_split
        keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
        return np.sort(keep)
    rng = np.random.default_rng([seed, 0x5B5E7])
    keep = [rng.choice(np.flatnonzero(y == c), q, replace=False) for c, q in zip(np.unique(y), _quotas(counts, n))]
    return np.sort(np.concatenate(keep))


def _quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """(K,) examples to take of each class for n in K..sum(counts): one each, the rest in proportion to what each has
    beyond that (largest remainders first), never more than it has."""
    extra, spare = counts - 1, n - len(counts)
    share = extra * (spare / max(1, extra.sum()))
    quota = np.floor(share).astype(np.int64)
    quota[np.argsort(quota - share, kind="stable")[:spare - quota.sum()]] += 1
    return 1 + quota


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split; test_fraction 0 puts every example in train (an empty test split). A class with a
    single example cannot be stratified: then the split is plain random (training.datasets.checks then refuses a
    class left without training examples)."""
    if test_fraction == 0:
        return np.arange(len(y)), np.zeros(0, dtype=np.int64)
    from sklearn.model_selection import train_test_split
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    _check_fraction(test_fraction, len(y), int((counts > 0).sum()) if stratify is not None else 1)
    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=stratify, random_state=seed)
    return np.sort(train), np.sort(test)


def _check_fraction(test_fraction: float, n: int, n_classes: int) -> None:
    """One line unless a split of n examples by test_fraction leaves n_classes on each side (1: any split)."""
    n_test = math.ceil(test_fraction * n)  # scikit-learn's count
    if n_classes <= n_test <= n - n_classes:
        return
    each = f"one of each of the {n_classes} classes" if n_classes > 1 else "one example"
    valid = fraction_range(n, n_classes)
    raise UserError(f"--test-fraction {test_fraction:g}: splitting the {n} examples into {n_test} test and "
                    f"{n - n_test} training examples cannot put {each} on both sides; valid: 0 (no test split)"
                    + (f" or {valid}" if valid else f"; a split needs at least {2 * n_classes} examples"))


def fraction_range(n: int, n_classes: int) -> str:
    """The fractions f (3 decimals) with ceil(f·n) in n_classes..n − n_classes, as 'lo..hi'; '' if there are none."""
    lo, hi = math.ceil(1000 * n_classes / n) / 1000, math.floor(1000 * (n - n_classes) / n) / 1000
    return f"{lo:g}..{hi:g}" if lo <= hi else ""


def _from_arrays(spec, classes, x, y, sources, *, split_seed, test_fraction, **extra) -> Dataset:
    """Build a Dataset from one pool of examples by a seeded stratified split."""
    train_idx, test_idx = _stratified_split(y, test_fraction, split_seed)
    train = Split(x[train_idx], y[train_idx], np.arange(len(train_idx), dtype=np.int64), sources[train_idx])
    test = Split(x[test_idx], y[test_idx], np.arange(len(test_idx), dtype=np.int64), sources[test_idx])
    return Dataset(spec, tuple(classes), train, test, **extra)


def _label_array(spec: str, name: str, y: np.ndarray) -> np.ndarray:
    """A 1-d array of non-negative integer class indices, or one line saying what it is instead."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"dataset {spec!r}: {name} must be a 1-d array of integer class indices (class names go in "
                        f"`classes`), got {y.dtype} of shape {y.shape}")
    if len(y) and y.min() < 0:
        raise UserError(f"dataset {spec!r}: {name} must be class indices 0, 1, ..., found {y.min()}")
    return y.astype(np.int64)


def _check_labels(spec: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"dataset {spec!r}: labels must be a 1-d integer array, got {y.dtype} of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise UserError(f"dataset {spec!r}: labels must lie in 0..{n_classes - 1}, found {y.min()}..{y.max()}")
    if len(np.unique(y)) < 2:
        raise UserError(f"dataset {spec!r} has examples of {len(np.unique(y))} class(es); at least 2 are needed")
    return y.astype(np.int64)
