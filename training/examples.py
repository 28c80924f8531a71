"""A run's examples, prepared from its settings: the dataset loaded, the subsets taken, the images resized,
corrupted, canaries added, a holdout kept out — and the images of a stored run reproduced as they were trained.

numpy only (torch just to resize images), so that the report can show the images without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError
from lossaudit.training.canaries import KINDS, make_canaries
from lossaudit.training.confusions import proxy_confusion, read_pairs
from lossaudit.training.corruptions import CORRUPTIONS, corrupt, parse_corruption
from lossaudit.training.datasets import Dataset, Split, load_dataset, stratified_subset

RESIZE_CHUNK = 4096  # images resized per interpolation call


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """A run's data, one row per training example (canaries appended last).

    x, label, true_label, is_corrupted, kind: the examples as trained; role: train, holdout (kept
    out of training for rho's irreducible-loss model), canary, replaced (an original a label canary
    stands in for, not trained), validation (carved from the training data to evaluate and select by, with its
    labels as given) or held_out (in the fold cross-fitting keeps out of this run, predicted
    out-of-sample; never stored as the run's example); example_id, source: identity.
    """

    dataset: Dataset
    train: Split  # the user's training examples before corruption
    test: Split
    x: np.ndarray
    label: np.ndarray
    true_label: np.ndarray
    is_corrupted: np.ndarray
    kind: np.ndarray
    role: np.ndarray
    example_id: np.ndarray
    source: np.ndarray
    record: dict

    @property
    def trained(self) -> np.ndarray:
        return ~np.isin(self.role, ("holdout", "replaced", "held_out", "validation"))


@dataclass(frozen=True)
class DataSpec:
    """The settings that decide a run's examples (a RunConfig's, or a stored run's config)."""

    dataset: str
    split_seed: int = 0
    test_fraction: float = 0.2
    train_size: int = 0
    test_size: int = 0
    image_size: int = 0
    corruption: str = "none"
    confusion: str = ""
    seed: int = 0
    canaries: float = 0.0
    folds: int = 0
    fold: int = 0
    val_size: int = 0
    holdout: float = 0.0  # share of the training examples the method keeps out of training

    @classmethod
    def of(cls, values, holdout: float = 0.0) -> "DataSpec":
        """From a RunConfig or a stored config mapping."""
        get = values.get if isinstance(values, dict) else lambda k, d=None: getattr(values, k, d)
        names = [f.name for f in dataclasses.fields(cls) if f.name != "holdout"]
        return cls(**{k: get(k) for k in names if get(k) is not None}, holdout=holdout)


def cached_dataset(cfg: DataSpec, cache: dict) -> Dataset:
    """The spec's dataset, loaded once into `cache` (a grid's cells and an audit's folds share it)."""
    key = (cfg.dataset, cfg.split_seed, cfg.test_fraction)
    if key not in cache:
        cache[key] = load_dataset(cfg.dataset, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction)
    return cache[key]


def prepare_examples(cfg: DataSpec, cache: dict | None = None) -> Prepared:
    """Load (or reuse) the dataset, take the configured subsets, resize, corrupt, add canaries, hold out."""
    cache = {} if cache is None else cache
    dataset = cached_dataset(cfg, cache)
    train = stratified_subset(dataset.train, cfg.train_size, cfg.split_seed, what="--train-size")
    test = stratified_subset(dataset.test, cfg.test_size, cfg.split_seed, what="--test-size")
    if cfg.image_size:
        _check_memory(cfg.image_size, len(train) + len(test), train.x.shape[1])
        train = dataclasses.replace(train, x=resize(train.x, cfg.image_size))
        test = dataclasses.replace(test, x=resize(test.x, cfg.image_size))
    confusion = confusion_of(cfg, dataset, train, cache)
    c = corrupt(train.x, train.y, dataset.n_classes, cfg.corruption, cfg.seed,
                confusion=None if confusion is None else confusion[0])
    kind = np.where(c.is_corrupted, c.kind or "", None).astype(object)
    role = np.full(len(train), "train", dtype=object)
    rest = np.arange(len(train))
    if cfg.val_size or cfg.holdout:
        from sklearn.model_selection import train_test_split
    if cfg.val_size:  # the same examples for every method, seed and corruption: by the data's labels and split_seed
        rest, val = train_test_split(rest, test_size=cfg.val_size, stratify=train.y, random_state=cfg.split_seed)
        role[val] = "validation"
    if cfg.holdout:
        _, held = train_test_split(rest, test_size=cfg.holdout, stratify=train.y[rest], random_state=cfg.split_seed)
        role[held] = "holdout"
    x, label, true, bad, ids, src = c.x, c.label, c.true_label, c.is_corrupted, train.example_id, train.source
    record = dict(c.record)
    if confusion is not None:
        record["confusion"] = {"source": confusion[1], "weights": confusion[0].tolist()}
    if cfg.canaries:
        canary_confusion = proxy_confusion_of(cfg, dataset, train, c.label, cache)
        can = make_canaries(c.x, c.label, dataset.n_classes, cfg.canaries, cfg.seed, confusion=canary_confusion)
        role[can.replaces] = "replaced"  # a label canary stands in for its original (see training.canaries)
        first = len(dataset.train)  # canary ids follow every id of the full training split
        x, label = np.concatenate([x, can.x]), np.concatenate([label, can.label])
        true = np.concatenate([true, c.true_label[can.origin]])
        bad = np.concatenate([bad, np.ones(len(can), bool)])
        kind = np.concatenate([kind, can.kind])
        role = np.concatenate([role, np.full(len(can), "canary", dtype=object)])
        ids = np.concatenate([ids, first + np.arange(len(can))])
        src = np.concatenate([src, np.array([f"canary:{k}:{s}" for k, s in zip(can.kind, train.source[can.origin])],
                                            dtype=object)])
        record["canaries"] = {k: int((can.kind == k).sum()) for k in KINDS}
        record["replaced_by_label_canaries"] = int(len(can.replaces))
        record["canary_confusion"] = canary_confusion.tolist()
    if cfg.folds:
        folds = assign_folds(c.label, cfg.folds, cfg.split_seed)
        if cfg.canaries:
            folds = np.concatenate([folds, folds[can.origin]])  # a canary goes with its original
        role[(folds == cfg.fold) & ((role == "train") | (role == "canary"))] = "held_out"
        record["held_out"] = int((role == "held_out").sum())
    return Prepared(dataset=dataset, train=train, test=test, x=x, label=label, true_label=true, is_corrupted=bad,
                    kind=kind, role=role, example_id=ids, source=src, record=record)


def confusion_of(cfg: DataSpec, dataset: Dataset, train: Split, cache: dict) -> tuple[np.ndarray, str] | None:
    """W[true, given] and where it came from, when the corruption needs one: the --confusion file's pairs, or the
    clean proxy's confusions of the training examples (computed once per process and data)."""
    kind, _ = parse_corruption(cfg.corruption)
    if kind is None or not CORRUPTIONS[kind].needs_confusion:
        return None
    if cfg.confusion:
        return read_pairs(cfg.confusion, list(dataset.classes)), str(Path(cfg.confusion).expanduser().resolve())
    return proxy_confusion_of(cfg, dataset, train, train.y, cache), "proxy"


def proxy_confusion_of(cfg: DataSpec, dataset: Dataset, train: Split, label: np.ndarray, cache: dict) -> np.ndarray:
    """The clean proxy's confusions of the training images with these labels, computed once per process and data."""
    key = ("proxy_confusion", cfg.dataset, cfg.split_seed, cfg.test_fraction, cfg.train_size, cfg.image_size,
           label.tobytes())
    if key not in cache:
        cache[key] = proxy_confusion(train.x, label, dataset.n_classes)
    return cache[key]


def assign_folds(label: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold of each example, 0..folds-1: within each label, a seeded permutation dealt round-robin, so every
    fold holds each label's examples in equal shares (±1)."""
    from lossaudit.core.folds import deal
    return deal(label, folds, [seed, 0xF01D])


MEMORY_SHARE = 0.5  # of the memory available, the most the resized images (and their copies) may take


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_memory(size: int, n: int, channels: int) -> None:
    """One line instead of a crash when resizing to `size` would not fit: the images are held as uint8 on the host
    and again on the training device, and each chunk passes through float32 while it is resized."""
    need = n * channels * size * size * 2 + RESIZE_CHUNK * channels * size * size * 4 * 2
    available = _available_memory()
    if available is not None and need > MEMORY_SHARE * available:
        raise UserError(f"--image-size {size}: {n} images of {channels}×{size}×{size} would need about "
                        f"{need / 1e9:.1f} GB, more than half of the {available / 1e9:.1f} GB available; use a smaller "
                        "--image-size (or --train-size)")


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) uint8 → (N, C, size, size): bilinear with antialiasing, aspect ratio not kept."""
    if x.shape[2:] == (size, size) or len(x) == 0:
        return x
    import torch  # only here: everything else in this module is numpy
    out = np.empty((len(x), x.shape[1], size, size), dtype=np.uint8)
    for start in range(0, len(x), RESIZE_CHUNK):
        chunk = torch.from_numpy(x[start:start + RESIZE_CHUNK]).float()
        small = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True,
                                                align_corners=False)
        out[start:start + RESIZE_CHUNK] = small.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


class RunImages:
    """The training images of stored runs as they were trained (dataset, subset, size, corruption and canaries
    reproduced from runs.config), for the report's galleries; without torch unless the images were resized."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, run: dict, example_ids) -> np.ndarray:
        if run["config"].get("recorder"):  # a loop of the user's own: its images are the files it recorded
            return recorded_images(run.get("sources") or {}, example_ids)
        prep = prepare_examples(DataSpec.of(run["config"]), self.cache)  # the trained examples: holdout not needed
        position = {int(e): i for i, e in enumerate(prep.example_id)}
        return prep.x[[position[int(e)] for e in example_ids]]


GALLERY_SIZE = 64  # recorded images larger than this are shrunk (aspect kept) for the report's tiles


def recorded_images(sources: dict, example_ids) -> list[np.ndarray]:
    """The images of a recorded run's examples, read from the sources it recorded (image file paths), as (C, H, W)
    uint8 arrays; one clear error when a source is not an image file."""
    from PIL import Image, UnidentifiedImageError
    out = []
    for e in example_ids:
        source = sources.get(int(e))
        try:
            with Image.open(str(source)) as im:
                im = im.convert("RGB" if im.mode not in ("L", "1") else "L")
                im.thumbnail((GALLERY_SIZE, GALLERY_SIZE))
                arr = np.asarray(im)
        except (OSError, UnidentifiedImageError, TypeError, ValueError):
            raise UserError(f"example {int(e)}: its recorded source {source!r} is not a readable image file; pass "
                            "sources= (image file paths) to the Recorder for the report's galleries") from None
        out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return out
