"""What a dataset must not contradict. `check_dataset` runs on every loaded dataset (load_dataset calls it); the
file loaders use `file_identity` to find one file listed twice. A contradiction that leaves no correct answer is
refused (one line, UserError); one a user would expect in real data (a few duplicate images) is a `warning: ...`
line on stderr, with its counts, and a note in Dataset.notes, which every run stores."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError
from lossaudit.training.datasets.base import Dataset

NAMES_SHOWN = 5  # classes named in one message, the rest counted


def warn(spec: str, message: str) -> str:
    """Print `warning: dataset SPEC: message` on stderr; returns the note to keep in Dataset.notes."""
    note = f"dataset {spec!r}: {message}"
    print(f"warning: {note}", file=sys.stderr)
    return note


def file_identity(path: Path):
    """What makes two paths the same file (a symbolic or hard link to it): (device, inode), or the resolved path
    where the file system has no inodes."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(path)


def image_keys(x: np.ndarray) -> np.ndarray:
    """(N,) 16-byte digests (dtype V16) of the images x (N, ...) uint8: equal exactly when the pixels are (but for a
    2^-128 chance). About 0.2 s for 50,000 CIFAR images."""
    rows = np.ascontiguousarray(x).reshape(len(x), int(np.prod(x.shape[1:])))
    digests = b"".join(hashlib.blake2b(row, digest_size=16).digest() for row in rows)
    return np.frombuffer(digests, dtype="V16")


def class_names(classes, indices) -> str:
    """'a', 'b' and 3 more."""
    names = [repr(classes[int(i)]) for i in indices]
    more = len(names) - NAMES_SHOWN
    return ", ".join(names[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def check_dataset(ds: Dataset) -> Dataset:
    """The dataset, with a note for each warning printed; UserError for a class that has test examples but no
    training example (no model can learn it)."""
    notes = [*_split_classes(ds), *_same_pixels(ds)]
    return dataclasses.replace(ds, notes=ds.notes + tuple(notes)) if notes else ds


def _split_classes(ds: Dataset) -> list[str]:
    """Refuse classes present only in the test split; warn about classes present only in the training split."""
    if not len(ds.test):
        return []
    train = np.bincount(ds.train.y, minlength=ds.n_classes)
    test = np.bincount(ds.test.y, minlength=ds.n_classes)
    only_test = np.flatnonzero((test > 0) & (train == 0))
    if len(only_test):
        which = ", ".join(f"{ds.classes[c]!r} ({int(test[c])} test example(s))" for c in only_test[:NAMES_SHOWN])
        which += f" and {len(only_test) - NAMES_SHOWN} more" if len(only_test) > NAMES_SHOWN else ""
        what = (f"class {which} has no training example, so no model can learn it" if len(only_test) == 1 else
                f"classes {which} have no training example, so no model can learn them")
        raise UserError(f"dataset {ds.spec!r}: {what}; valid: test classes that are also training classes (add "
                        "training examples, or drop those test examples; where lossaudit splits the data, a class "
                        "needs 2 examples, or use --test-fraction 0)")
    only_train = np.flatnonzero((train > 0) & (test == 0))
    if not len(only_train):
        return []
    return [warn(ds.spec, f"{len(only_train)} class(es) have training examples but none in the test split "
                          f"({class_names(ds.classes, only_train)}); their test error is not measured")]


def _same_pixels(ds: Dataset) -> list[str]:
    """Warn about identical images under different labels (over both splits) and test images identical to a
    training image; hashes, not pairwise comparison."""
    n_train = len(ds.train)
    keys = np.concatenate([image_keys(ds.train.x), image_keys(ds.test.x)])
    if not len(keys):
        return []
    label = np.concatenate([ds.train.y, ds.test.y])
    source = np.concatenate([ds.train.source, ds.test.source]).astype(object)
    _, group = np.unique(keys, return_inverse=True)
    group = group.ravel()
    notes = []
    lowest, highest = np.full(group.max() + 1, ds.n_classes), np.full(group.max() + 1, -1)
    np.minimum.at(lowest, group, label)
    np.maximum.at(highest, group, label)
    mixed = (lowest != highest)[group]  # (N,) in a group of identical images with more than one label
    if mixed.any():
        a = int(np.flatnonzero(mixed)[0])
        b = int(np.flatnonzero((group == group[a]) & (label != label[a]))[0])
        notes.append(warn(ds.spec, f"{len(np.unique(group[mixed]))} image(s) appear under more than one label "
                                   f"({int(mixed.sum())} examples), e.g. {source[a]!r} ({ds.classes[label[a]]}) and "
                                   f"{source[b]!r} ({ds.classes[label[b]]}) have the same pixels"))
    in_train = np.zeros(group.max() + 1, bool)
    in_train[group[:n_train]] = True
    leaked = np.flatnonzero(in_train[group[n_train:]])
    if len(leaked):
        t = n_train + int(leaked[0])
        twin = int(np.flatnonzero(group[:n_train] == group[t])[0])
        notes.append(warn(ds.spec, f"{len(leaked)} of the {len(ds.test)} test examples have the same pixels as a "
                                   f"training example, e.g. {source[t]!r} and {source[twin]!r}; the test error is "
                                   "partly measured on images the model trained on"))
    return notes
