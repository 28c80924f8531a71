"""A run's data and record: its examples prepared (training.examples) with its method's holdout, the data the
trainer takes, and the `runs` and `examples` rows that describe the run."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import torch

from lossaudit.core.errors import UserError
from lossaudit.core.records import run_record
from lossaudit.training import distributed
from lossaudit.training.config import RunConfig
from lossaudit.training.corruptions import parse_corruption
from lossaudit.training.datasets import Split, stratified_subset
from lossaudit.training.datasets.base import fraction_range
from lossaudit.training.examples import DataSpec, Prepared, cached_dataset, prepare_examples
from lossaudit.training.identity import identify
from lossaudit.training.methods import method_class, resolve
from lossaudit.training.trainer import Trainer, TrainData, planned_passes


def prepare(cfg: RunConfig, cache: dict | None = None) -> Prepared:
    """The run's examples (training.examples), with the share of them its method keeps out of training; UserError
    (one line) instead when the run cannot train on them (`check_fits`)."""
    cache = {} if cache is None else cache
    spec = DataSpec.of(cfg, holdout=method_class(cfg.method).holdout_share(cfg.params))
    if spec.holdout:  # before scikit-learn's stratified holdout split would fail on too few examples
        labels, classes = _training_labels(spec, cache)
        _check_holdout(cfg, labels, len(cached_dataset(spec, cache).train), classes)
    prep = prepare_examples(spec, cache)
    check_fits(cfg, prep)
    return prep


def check_fits(cfg: RunConfig, prep: Prepared) -> None:
    """UserError (one line naming the value and what would be valid) when cell `cfg` cannot train.

    `prep` is the Prepared data of `cfg` or of another cell of its grid (cells differ only in method, corruption and
    seed): only what every cell shares is read — the training subset's labels before corruption (prep.train.y),
    the full training split's size and the image shape — never the roles, which depend on the method. A batch or a
    selection pool larger than the training examples is not refused: an epoch is then one step (one pool), and the
    methods scale their picks to the candidates there are (Method.picks_for)."""
    _check_corruption(cfg, len(prep.train.y))
    _check_folds(cfg, prep.train.y, prep.dataset.classes)
    _check_holdout(cfg, prep.train.y, len(prep.dataset.train), prep.dataset.classes)
    _check_model_takes_images(cfg, prep)


def examples_frame(prep: Prepared) -> pd.DataFrame:
    """The run's `examples` rows: every example but those cross-fitting holds out (stored with the run that trains
    them; this run only predicts them)."""
    keep = prep.role != "held_out"
    return pd.DataFrame({
        "example_id": prep.example_id[keep].astype(np.int32),
        "label": prep.label[keep].astype(np.int16),
        "true_label": prep.true_label[keep].astype(np.int16),
        "corruption_kind": pd.array(prep.kind[keep], dtype="string"),
        "is_corrupted": prep.is_corrupted[keep],
        "source": prep.source[keep].astype(str),
        "role": prep.role[keep].astype(str),
    })


def train_data(prep: Prepared) -> TrainData:
    keep, held, out, val = prep.trained, prep.role == "holdout", prep.role == "held_out", prep.role == "validation"
    has_holdout, has_out, has_val = bool(held.any()), bool(out.any()), bool(val.any())
    return TrainData(x=prep.x[keep], y=prep.label[keep], example_id=prep.example_id[keep], test_x=prep.test.x,
                     test_y=prep.test.y, n_classes=prep.dataset.n_classes,
                     holdout_x=prep.x[held] if has_holdout else None, holdout_y=prep.label[held] if has_holdout else None,
                     holdout_id=prep.example_id[held] if has_holdout else None,
                     predict_x=prep.x[out] if has_out else None, predict_id=prep.example_id[out] if has_out else None,
                     test_id=prep.test.example_id, val_x=prep.x[val] if has_val else None,
                     val_y=prep.label[val] if has_val else None)


def run_row(cfg: RunConfig, prep: Prepared, trainer: Trainer, *, command: str, extra: dict | None = None) -> dict:
    """The `runs` row of a run about to train: what it is, its experiment and arm, and its resolved config."""
    kind, share = parse_corruption(cfg.corruption)
    who = identify(cfg, trainer.device.type)
    config = cfg.to_dict() | {
        "method_resolved": resolve(cfg.method)[0].name,
        "method_params": trainer.method.params(),
        "method_traits": trainer.method.traits(),
        "corruption_record": prep.record,
        "dataset_notes": list(prep.dataset.notes),
        "skipped_files": len(prep.dataset.skipped),
        "image_shape": list(prep.x.shape[1:]),
        "n_holdout": int((prep.role == "holdout").sum()),
        "n_canaries": int((prep.role == "canary").sum()),
        "n_held_out": int((prep.role == "held_out").sum()),
        "threads": torch.get_num_threads(),
        "processes": distributed.current().world,  # under torchrun: the run's processes (training.distributed)
    } | (extra or {})
    return run_record(key=who.key, experiment=who.experiment, arm=who.arm, method=cfg.method, dataset=cfg.dataset,
                      model=cfg.model, corruption=cfg.corruption, corruption_kind=kind, corrupt_frac=share,
                      seed=cfg.seed, n_train=int(prep.trained.sum()), n_test=len(prep.test),
                      classes=list(prep.dataset.classes), epochs=cfg.epochs, config=config, command=command,
                      device=str(trainer.device), torch_version=torch.__version__)


def candidates(cfg: RunConfig, prep: Prepared) -> int:
    """Candidates a run will process, for progress bars (a holdout model's training taken as as many epochs; a
    budgeted run's passes as it plans them)."""
    held = int((prep.role == "holdout").sum()) * method_class(cfg.method).holdout_epochs(cfg.params, cfg.epochs)
    return int(prep.trained.sum()) * planned_passes(cfg) + held


# ---------------------------------------------------------------------------------------------
# what a cell needs of its data (check_fits)

MAX_FOLDS = 20  # RunConfig.folds' own upper limit
SMALL_IMAGE = 8  # the registered conv models halve an image twice: above this side their feature maps stay above 1×1


def _training_labels(spec: DataSpec, cache: dict) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N,) labels of the training subset prepare_examples takes (before corruption), and the class names; the
    subset's images are not copied."""
    dataset = cached_dataset(spec, cache)
    t = dataset.train
    labels_only = Split(np.zeros((len(t), 0), np.uint8), t.y, t.example_id, t.source)
    return stratified_subset(labels_only, spec.train_size, spec.split_seed, what="--train-size").y, dataset.classes


def _rarest(y: np.ndarray, n_classes: int) -> tuple[int, int, int]:
    """(the rarest class present, its count, the classes present) of labels y (N,)."""
    counts = np.bincount(y, minlength=n_classes)
    rarest = int(np.argmin(np.where(counts > 0, counts, len(y) + 1)))
    return rarest, int(counts[rarest]), int((counts > 0).sum())


def _check_corruption(cfg: RunConfig, n: int) -> None:
    """A corruption of round(share · n) = 0 examples corrupts nothing: a share too small for these n examples."""
    kind, share = parse_corruption(cfg.corruption)
    if kind is not None and round(share * n) == 0:
        raise UserError(f"corruption {cfg.corruption!r}: {share:g} of the {n} training examples rounds to none of "
                        f"them; valid: a share above {0.5 / n:.3g} (or none)")


def _check_folds(cfg: RunConfig, y: np.ndarray, classes: tuple[str, ...]) -> None:
    """Cross-fitting deals each class's examples round-robin over the folds: every class needs one per fold."""
    if not cfg.folds:
        return
    rarest, fewest, _ = _rarest(y, len(classes))
    if fewest >= cfg.folds:
        return
    valid = "--folds 0 (off)" + ("" if fewest < 2 else " or 2" if fewest == 2 else f" or 2..{min(MAX_FOLDS, fewest)}")
    raise UserError(f"--folds {cfg.folds}: cross-fitting deals every class's training examples over the {cfg.folds} "
                    f"folds (each fold stratified by label), but class {classes[rarest]!r} has only {fewest}; valid: "
                    f"{valid}, or at least {cfg.folds} training examples of every class"
                    + (" (a larger --train-size)" if cfg.train_size else ""))


def _smallest_split(share: float, n_classes: int) -> int:
    """The fewest examples a stratified split by `share` (scikit-learn's ceil(share·n) on one side) can leave
    n_classes on both sides of."""
    n = 2 * n_classes
    while not n_classes <= math.ceil(share * n) <= n - n_classes:
        n += 1
    return n


def _check_holdout(cfg: RunConfig, y: np.ndarray, n_full: int, classes: tuple[str, ...]) -> None:
    """A method's holdout (rho's) is a stratified split of the training subset y (N,): both sides need every class
    (the holdout model learns them all; the run trains them all); n_full: the whole training split's size."""
    share = method_class(cfg.method).holdout_share(cfg.params)
    if not share:
        return
    rarest, fewest, n_classes = _rarest(y, len(classes))
    n, n_hold = len(y), math.ceil(share * len(y))
    if fewest >= 2 and n_classes <= n_hold <= n - n_classes:
        return
    flag = "--holdout-fraction" if hasattr(cfg.params, "holdout_fraction") else "holdout share"
    need, fractions = _smallest_split(share, n_classes), fraction_range(n, n_classes)
    options = [f"--train-size {need}..{n_full} (or 0, all {n_full})"] if n < need <= n_full else []
    options += [f"{flag} {fractions}"] if fewest >= 2 and fractions else []
    but = f", but class {classes[rarest]!r} has only {fewest} training example" if fewest < 2 else ""
    raise UserError(f"--method {cfg.method}: its stratified holdout ({flag} {share:g} of the {n} training examples: "
                    f"{n_hold} held out, {n - n_hold} trained) needs one example of each of the {n_classes} classes "
                    f"on both sides{but}; valid: {' or '.join(options + ['a method without a holdout'])}")


def _check_model_takes_images(cfg: RunConfig, prep: Prepared) -> None:
    """The models must take the images: the mlp is built for square ones; a BatchNorm over 1×1 feature maps (a conv
    model on images of at most 4×4) fails on a training step of a single example, which the run may make."""
    channels, h, w = prep.x.shape[1:]
    if cfg.model == "mlp" and h != w:
        raise UserError(f"--model mlp on {h}×{w} images: the mlp is built for square images; valid: --image-size S "
                        "(S >= 4: every image resized to S×S), or a convolutional model (resnet8, wrn-16-4, ...)")
    if min(h, w) > SMALL_IMAGE or not _fails_on_one(cfg.model, channels, h, w, prep.dataset.n_classes):
        return
    why = _single_example_step(cfg, prep)
    if why is None:
        return
    fits = next((s for s in range(max(h, w) + 1, 4 * SMALL_IMAGE)
                 if not _fails_on_one(cfg.model, channels, s, s, prep.dataset.n_classes)), 4 * SMALL_IMAGE)
    raise UserError(f"--model {cfg.model} on {h}×{w} images: its BatchNorm layers see 1×1 feature maps there, so a "
                    f"training step of a single example fails, and {why} can make one; valid: --image-size {fits} or "
                    "more, or --model mlp")


def _single_example_step(cfg: RunConfig, prep: Prepared) -> str | None:
    """What can make a training step of one example in this cell, or None: a batch size of 1; a method that selects
    (its picks, and so its last batch, are random); cross-fitting (fold sizes follow the corrupted labels); else the
    epoch's last batch, from the count of trained examples (the subset, plus canaries, less the originals label
    canaries replace)."""
    from lossaudit.training.canaries import LABEL_KINDS, canary_counts
    from lossaudit.training.methods import Method

    if cfg.batch_size == 1:
        return "--batch-size 1"
    if method_class(cfg.method).selects is not Method.selects:
        return f"{cfg.method}'s selection (its last batch of an epoch has a random size)"
    if cfg.folds:
        return "cross-fitting (the folds' sizes vary)"
    n = len(prep.train)
    canaries = canary_counts(int(round(cfg.canaries * n)), True)
    trained = n + sum(canaries.values()) - sum(canaries[k] for k in LABEL_KINDS)
    if trained % cfg.batch_size == 1:
        return f"the last batch of each epoch ({trained} examples in batches of {cfg.batch_size})"
    return None


@functools.lru_cache(maxsize=64)
def _fails_on_one(model: str, channels: int, h: int, w: int, n_classes: int) -> bool:
    """Whether a training-mode forward of one (channels, h, w) image fails in `model`, built as the trainer does."""
    from lossaudit.training.models import create_model
    with torch.random.fork_rng(devices=[]):  # the process's generator untouched
        net = create_model(model, in_channels=channels, n_classes=n_classes, image_size=h).train()
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, h, w))
    except ValueError:
        return True
    return False
