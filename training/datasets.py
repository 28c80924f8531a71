"""Datasets: a registry of loaders that all return uint8 images N×C×H×W, int labels and stable example ids.

Spec strings are ``NAME`` or ``NAME:PATH`` (``digits``, ``imagefolder:~/data/pets``,
``cifar10:~/data/cifar-10-batches-py``, ``npz:arrays.npz``). `example_id` is the index of an example
in the full training split of its dataset, so it is stable under subsetting and shuffling.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lossaudit.errors import UserError, choices

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


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
    load: Callable[..., Dataset]
    description: str
    needs_path: bool


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str, *, needs_path: bool):
    def wrap(fn):
        DATASETS[name] = DatasetEntry(fn, description, needs_path)
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


def load_dataset(spec: str, *, split_seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Load a dataset by spec. Datasets without their own test split get a seeded stratified one
    (test_fraction 0: none, every example is a training example)."""
    name, path = parse_spec(spec)
    entry = DATASETS[name]
    kwargs = dict(split_seed=split_seed, test_fraction=test_fraction)
    return entry.load(spec, path, **kwargs) if entry.needs_path else entry.load(spec, **kwargs)


def stratified_subset(split: Split, n: int, seed: int) -> Split:
    """A seeded, class-stratified subset of n examples (ordered by example_id)."""
    if n <= 0 or n >= len(split):
        return split
    from sklearn.model_selection import train_test_split
    keep, _ = train_test_split(np.arange(len(split)), train_size=n, stratify=split.y, random_state=seed)
    return split.take(np.sort(keep))


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split; test_fraction 0 puts every example in train (an empty test split)."""
    if test_fraction == 0:
        return np.arange(len(y)), np.zeros(0, dtype=np.int64)
    from sklearn.model_selection import train_test_split
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=stratify, random_state=seed)
    return np.sort(train), np.sort(test)


def _from_arrays(spec, classes, x, y, sources, *, split_seed, test_fraction, **extra) -> Dataset:
    """Build a Dataset from one pool of examples by a seeded stratified split."""
    train_idx, test_idx = _stratified_split(y, test_fraction, split_seed)
    train = Split(x[train_idx], y[train_idx], np.arange(len(train_idx), dtype=np.int64), sources[train_idx])
    test = Split(x[test_idx], y[test_idx], np.arange(len(test_idx), dtype=np.int64), sources[test_idx])
    return Dataset(spec, tuple(classes), train, test, **extra)


def _check_labels(spec: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"dataset {spec!r}: labels must be a 1-d integer array, got {y.dtype} of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise UserError(f"dataset {spec!r}: labels must lie in 0..{n_classes - 1}, found {y.min()}..{y.max()}")
    if len(np.unique(y)) < 2:
        raise UserError(f"dataset {spec!r} has examples of {len(np.unique(y))} class(es); at least 2 are needed")
    return y.astype(np.int64)


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
    x, y = _to_nchw(spec, arrays["x"]), arrays["y"]
    if len(x) != len(y):
        raise UserError(f"dataset {spec!r}: x has {len(x)} images but y has {len(y)} labels")
    n_classes = int(max(y.max(), arrays["y_test"].max() if "y_test" in arrays.files else 0)) + 1
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else [str(c) for c in range(n_classes)]
    y = _check_labels(spec, y, len(classes))
    sources = np.array([f"{path}:{i}" for i in range(len(y))], dtype=object)
    if "x_test" not in arrays.files:
        return _from_arrays(spec, classes, x, y, sources, split_seed=split_seed, test_fraction=test_fraction)
    xt, yt = _to_nchw(spec, arrays["x_test"]), arrays["y_test"].astype(np.int64)
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


# ---------------------------------------------------------------------------------------------
# csv (path,label)


@register_dataset("csv", "a CSV with columns path,label (paths relative to the CSV's folder or absolute; "
                  "labels are class names)", needs_path=True)
def load_csv(spec: str, path: Path, *, split_seed: int, test_fraction: float) -> Dataset:
    import pandas as pd
    if not path.is_file():
        raise UserError(f"dataset {spec!r}: file {str(path)!r} does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise UserError(f"dataset {spec!r}: cannot read {str(path)!r} as CSV ({err})") from None
    if not {"path", "label"} <= set(table.columns):
        raise UserError(f"dataset {spec!r}: the CSV needs columns path,label; it has {', '.join(table.columns)}")
    if table.empty:
        raise UserError(f"dataset {spec!r}: the CSV lists no images")
    files = [Path(p).expanduser() if Path(p).expanduser().is_absolute() else (path.parent / p) for p in table.path]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"dataset {spec!r}: {len(missing)} of {len(files)} listed files do not exist, "
                        f"e.g. {missing[0]!r}")
    classes = sorted(set(table.label))
    if len(classes) < 2:
        raise UserError(f"dataset {spec!r} has examples of {len(classes)} class(es); at least 2 are needed")
    groups = {"all": {c: [f.resolve() for f, label in zip(files, table.label) if label == c] for c in classes}}
    out, skipped, notes = _decode_folder(spec, groups, classes)
    for file, reason in skipped:
        print(f"warning: skipped unreadable image {file}: {reason}", file=sys.stderr)
    x, y, src = out["all"]
    return _from_arrays(spec, classes, x, y, src.astype(object), split_seed=split_seed, test_fraction=test_fraction,
                        skipped=tuple(skipped), notes=tuple(notes))


# ---------------------------------------------------------------------------------------------
# imagefolder


def _list_class_folders(root: Path) -> dict[str, list[Path]]:
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[d.name] = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
                             and not f.name.startswith("."))
    return out


def _decode(path: Path):
    """Decode one image to an H×W×3 uint8 array; returns (array, was_grey) or (None, reason)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "F")
            return np.asarray(im.convert("RGB"), dtype=np.uint8), grey
    except Exception as err:  # any undecodable file is reported and skipped
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"


def _cache_dir() -> Path:
    return Path(os.environ.get("LOSSAUDIT_CACHE", Path.home() / ".cache" / "lossaudit")).expanduser()


def _folder_key(files: list[Path]) -> str:
    h = hashlib.sha1(b"imagefolder-v1")
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode_folder(spec: str, groups: dict[str, dict[str, list[Path]]], classes: list[str]):
    """Decode every image of every split; returns arrays per split, skipped files and notes."""
    jobs = [(split, classes.index(c), f) for split, folders in groups.items() for c, fs in folders.items() for f in fs]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(lambda job: _decode(job[2]), jobs))
    skipped = [(str(job[2]), res[1]) for job, res in zip(jobs, decoded) if res[0] is None]
    ok = [(job, res) for job, res in zip(jobs, decoded) if res[0] is not None]
    if not ok:
        raise UserError(f"dataset {spec!r}: none of its {len(jobs)} image files could be read")
    sizes = Counter(arr.shape[:2] for _, (arr, _) in ok)
    (h, w), _ = sizes.most_common(1)[0]
    grey = all(g for _, (_, g) in ok)
    notes = []
    if len(sizes) > 1:
        n_resized = sum(n for s, n in sizes.items() if s != (h, w))
        notes.append(f"{n_resized} image(s) resized to the most common size {h}x{w} (bilinear)")
    from PIL import Image
    out = {}
    for split in groups:
        items = [(job, arr) for job, (arr, _) in ok if job[0] == split]
        x = np.empty((len(items), 1 if grey else 3, h, w), dtype=np.uint8)
        for i, (_, arr) in enumerate(items):
            if arr.shape[:2] != (h, w):
                arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR))
            x[i] = arr[..., :1].transpose(2, 0, 1) if grey else arr.transpose(2, 0, 1)
        y = np.array([job[1] for job, _ in items], dtype=np.int64)
        src = np.array([str(job[2]) for job, _ in items], dtype=str)
        out[split] = (x, y, src)
    return out, skipped, notes


@register_dataset("imagefolder", "class-per-folder images (PATH/<class>/*.jpg); PATH/train and PATH/test "
                  "are used as splits when present", needs_path=True)
def load_imagefolder(spec: str, path: Path, *, split_seed: int, test_fraction: float) -> Dataset:
    if not path.is_dir():
        raise UserError(f"dataset {spec!r}: folder {str(path)!r} does not exist")
    path = path.resolve()
    has_splits = (path / "train").is_dir() and (path / "test").is_dir()
    groups = ({"train": _list_class_folders(path / "train"), "test": _list_class_folders(path / "test")}
              if has_splits else {"all": _list_class_folders(path)})
    first = groups["train" if has_splits else "all"]
    classes = [c for c, fs in first.items() if fs]
    if len(classes) < 2:
        raise UserError(f"dataset {spec!r}: {str(path)!r} needs at least 2 class folders with images, "
                        f"found {len(classes)} ({', '.join(classes) or 'none'})")
    if has_splits:
        extra = [c for c, fs in groups["test"].items() if fs and c not in classes]
        if extra:
            raise UserError(f"dataset {spec!r}: test classes {extra} have no training folder")
    groups = {s: {c: fs for c, fs in g.items() if c in classes} for s, g in groups.items()}
    all_files = [f for g in groups.values() for fs in g.values() for f in fs]

    cache = _cache_dir() / f"imagefolder-{hashlib.sha1(str(path).encode()).hexdigest()[:10]}-{_folder_key(all_files)}.npz"
    if cache.is_file():
        arrays = np.load(cache, allow_pickle=False)
        out = {s: (arrays[f"{s}_x"], arrays[f"{s}_y"], arrays[f"{s}_src"]) for s in groups}
        skipped = [tuple(r) for r in arrays["skipped"]] if len(arrays["skipped"]) else []
        notes = list(arrays["notes"])
    else:
        out, skipped, notes = _decode_folder(spec, groups, classes)
        _write_cache(cache, out, skipped, notes)
    for file, reason in skipped:
        print(f"warning: skipped unreadable image {file}: {reason}", file=sys.stderr)
    extra = dict(skipped=tuple(skipped), notes=tuple(notes))
    if has_splits:
        (x, y, src), (xt, yt, srct) = out["train"], out["test"]
        train = Split(x, y, np.arange(len(y), dtype=np.int64), src.astype(object))
        test = Split(xt, yt, np.arange(len(yt), dtype=np.int64), srct.astype(object))
        return Dataset(spec, tuple(classes), train, test, **extra)
    x, y, src = out["all"]
    return _from_arrays(spec, classes, x, y, src.astype(object), split_seed=split_seed, test_fraction=test_fraction, **extra)


def _write_cache(cache: Path, out, skipped, notes) -> None:
    """Store decoded arrays; drop older caches of the same folder. A failed write only costs speed."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        for old in cache.parent.glob(cache.name.rsplit("-", 1)[0] + "-*.npz"):
            old.unlink(missing_ok=True)
        arrays = {f"{s}_{k}": v for s, (x, y, src) in out.items() for k, v in (("x", x), ("y", y), ("src", src))}
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, skipped=np.array(skipped, dtype=str).reshape(-1, 2), notes=np.array(notes, dtype=str), **arrays)
        os.replace(tmp, cache)
    except OSError as err:
        print(f"warning: could not cache decoded images in {cache.parent}: {err}", file=sys.stderr)
