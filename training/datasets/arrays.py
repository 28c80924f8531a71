"""Datasets held as arrays: scikit-learn's digits, NumPy .npz files, and CIFAR-10's cifar-10-batches-py format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError
from lossaudit.training.datasets.base import (Dataset, Split, _check_labels, _from_arrays, _label_array,
                                              register_dataset)


# ---------------------------------------------------------------------------------------------
# digits


@register_dataset("digits", "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)", needs_path=False)
def load_digits(spec: str, *, split_seed: int, test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits
    bunch = sk_digits()
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8); raw values are 0..16
    y = bunch.target.astype(np.int64)
    sources = np.array([f"digits:{i}" for i in range(len(y))], dtype=object)
    return _from_arrays(spec, [str(c) for c in range(10)], x, y, sources, split_seed=split_seed, test_fraction=test_fraction)


# ---------------------------------------------------------------------------------------------
# npz


def _to_nchw(spec: str, x: np.ndarray) -> np.ndarray:
    if x.dtype != np.uint8:
        raise UserError(f"dataset {spec!r}: images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return np.ascontiguousarray(x)
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise UserError(f"dataset {spec!r}: images must be N×H×W, N×C×H×W or N×H×W×C with C in (1, 3); got shape {x.shape}")


@register_dataset("npz", "a NumPy .npz with uint8 images `x` (N×H×W×C or N×C×H×W) and labels `y`; "
                  "optional `x_test`, `y_test`, `classes`", needs_path=True)
def load_npz(spec: str, path: Path, *, split_seed: int, test_fraction: float) -> Dataset:
    if not path.is_file():
        raise UserError(f"dataset {spec!r}: file {str(path)!r} does not exist")
    try:
        arrays = np.load(path, allow_pickle=False)
    except Exception as err:
        raise UserError(f"dataset {spec!r}: cannot read {str(path)!r} as .npz ({err})") from None
    missing = {"x", "y"} - set(arrays.files)
    if missing:
        raise UserError(f"dataset {spec!r}: {str(path)!r} lacks array(s) {sorted(missing)}; it has {sorted(arrays.files)}")
    x, y = _to_nchw(spec, arrays["x"]), _label_array(spec, "y", arrays["y"])
    if len(x) != len(y):
        raise UserError(f"dataset {spec!r}: x has {len(x)} images but y has {len(y)} labels")
    if ("x_test" in arrays.files) != ("y_test" in arrays.files):
        raise UserError(f"dataset {spec!r}: x_test and y_test come together; {str(path)!r} has only one of them")
    yt = _label_array(spec, "y_test", arrays["y_test"]) if "y_test" in arrays.files else np.zeros(0, np.int64)
    n_classes = int(max(y.max(initial=0), yt.max(initial=0))) + 1
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else [str(c) for c in range(n_classes)]
    y = _check_labels(spec, y, len(classes))
    sources = np.array([f"{path}:{i}" for i in range(len(y))], dtype=object)
    if "x_test" not in arrays.files:
        return _from_arrays(spec, classes, x, y, sources, split_seed=split_seed, test_fraction=test_fraction)
    xt = _to_nchw(spec, arrays["x_test"])
    if xt.shape[1:] != x.shape[1:] or len(xt) != len(yt):
        raise UserError(f"dataset {spec!r}: x_test must hold images like x ({' x '.join(map(str, x.shape[1:]))}), one "
                        f"per y_test label; got shape {arrays['x_test'].shape} for {len(yt)} labels")
    if len(yt) and yt.max() >= len(classes):
        raise UserError(f"dataset {spec!r}: y_test must lie in 0..{len(classes) - 1}, found up to {yt.max()}")
    train = Split(x, y, np.arange(len(y), dtype=np.int64), sources)
    test = Split(xt, yt, np.arange(len(yt), dtype=np.int64),
                 np.array([f"{path}:test:{i}" for i in range(len(yt))], dtype=object))
    return Dataset(spec, tuple(classes), train, test)


# ---------------------------------------------------------------------------------------------
# cifar10 (the cifar-10-batches-py format torchvision downloads)


def _cifar_dir(spec: str, path: Path) -> Path:
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / "batches.meta").is_file():
            return candidate
    raise UserError(f"dataset {spec!r}: no cifar-10-batches-py folder at {str(path)!r} "
                    "(expected batches.meta, data_batch_1..5 and test_batch)")


def _read_cifar_batch(spec: str, file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(file, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:
        raise UserError(f"dataset {spec!r}: cannot read CIFAR batch {str(file)!r} ({type(err).__name__}: {err})") from None
    return x, y


@register_dataset("cifar10", "CIFAR-10 in torchvision's cifar-10-batches-py format (no download)", needs_path=True)
def load_cifar10(spec: str, path: Path, *, split_seed: int, test_fraction: float) -> Dataset:
    folder = _cifar_dir(spec, path)
    with open(folder / "batches.meta", "rb") as fh:
        classes = [c.decode() for c in pickle.load(fh, encoding="bytes")[b"label_names"]]
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files or not (folder / "test_batch").is_file():
        raise UserError(f"dataset {spec!r}: {str(folder)!r} needs data_batch_1.. and test_batch")
    parts = [_read_cifar_batch(spec, f) for f in train_files]
    sources = np.array([f"{f}:{i}" for f, (_, y) in zip(train_files, parts) for i in range(len(y))], dtype=object)
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    xt, yt = _read_cifar_batch(spec, folder / "test_batch")
    train = Split(x, _check_labels(spec, y, len(classes)), np.arange(len(y), dtype=np.int64), sources)
    test = Split(xt, yt, np.arange(len(yt), dtype=np.int64),
                 np.array([f"{folder / 'test_batch'}:{i}" for i in range(len(yt))], dtype=object))
    return Dataset(spec, tuple(classes), train, test)
