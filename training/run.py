"""Running configs: prepare a run's data, record the run, train it, and mark how it ended."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from lossaudit import __version__
from lossaudit.errors import TrainingFailed
from lossaudit.audit.store import Store
from lossaudit.training.config import Grid, RunConfig
from lossaudit.training.canaries import KINDS, make_canaries
from lossaudit.training.corruptions import corrupt, parse_corruption
from lossaudit.training.datasets import Dataset, Split, load_dataset, stratified_subset
from lossaudit.training.identity import identify, traits
from lossaudit.training.methods import method_class, resolve
from lossaudit.training.trainer import Trainer, TrainData


@dataclass(frozen=True)
class Prepared:
    """A run's data, one row per training example (canaries appended last).

    x, label, true_label, is_corrupted, kind: the examples as trained; role: train, holdout (kept
    out of training for rho's irreducible-loss model), canary, or replaced (an original a label canary
    stands in for, not trained); example_id, source: identity.
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
        return (self.role != "holdout") & (self.role != "replaced")


def prepare(cfg: RunConfig, cache: dict | None = None) -> Prepared:
    """Load (or reuse) the dataset, take the configured subsets, resize, corrupt, add canaries, hold out."""
    key = (cfg.dataset, cfg.split_seed, cfg.test_fraction)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = load_dataset(cfg.dataset, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction)
    dataset = cache[key]
    train = stratified_subset(dataset.train, cfg.train_size, cfg.split_seed)
    test = stratified_subset(dataset.test, cfg.test_size, cfg.split_seed)
    if cfg.image_size:
        train = dataclasses.replace(train, x=resize(train.x, cfg.image_size))
        test = dataclasses.replace(test, x=resize(test.x, cfg.image_size))
    c = corrupt(train.x, train.y, dataset.n_classes, cfg.corruption, cfg.seed)
    kind = np.where(c.is_corrupted, c.kind or "", None).astype(object)
    role = np.full(len(train), "train", dtype=object)
    if method_class(cfg.method).needs_irreducible_loss:
        from sklearn.model_selection import train_test_split
        _, held = train_test_split(np.arange(len(train)), test_size=cfg.holdout_fraction, stratify=train.y,
                                   random_state=cfg.split_seed)
        role[held] = "holdout"
    x, label, true, bad, ids, src = c.x, c.label, c.true_label, c.is_corrupted, train.example_id, train.source
    record = dict(c.record)
    if cfg.canaries:
        can = make_canaries(c.x, c.label, dataset.n_classes, cfg.canaries, cfg.seed)
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
    return Prepared(dataset, train, test, x, label, true, bad, kind, role, ids, src, record)


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) uint8 → (N, C, size, size): bilinear with antialiasing, aspect ratio not kept."""
    if x.shape[2:] == (size, size) or len(x) == 0:
        return x
    out = np.empty((len(x), x.shape[1], size, size), dtype=np.uint8)
    for start in range(0, len(x), 4096):
        chunk = torch.from_numpy(x[start:start + 4096]).float()
        small = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True,
                                                align_corners=False)
        out[start:start + 4096] = small.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def examples_frame(prep: Prepared) -> pd.DataFrame:
    return pd.DataFrame({
        "example_id": prep.example_id.astype(np.int32),
        "label": prep.label.astype(np.int16),
        "true_label": prep.true_label.astype(np.int16),
        "corruption": pd.array(prep.kind, dtype="string"),
        "is_corrupted": prep.is_corrupted,
        "source": prep.source.astype(str),
        "role": prep.role.astype(str),
    })


def train_data(prep: Prepared) -> TrainData:
    keep, held = prep.trained, prep.role == "holdout"
    has_holdout = bool(held.any())
    return TrainData(prep.x[keep], prep.label[keep], prep.example_id[keep], prep.test.x, prep.test.y,
                     prep.dataset.n_classes,
                     holdout_x=prep.x[held] if has_holdout else None, holdout_y=prep.label[held] if has_holdout else None,
                     holdout_id=prep.example_id[held] if has_holdout else None)


def run_row(cfg: RunConfig, prep: Prepared, trainer: Trainer, *, command: str, extra: dict | None = None) -> dict:
    kind, share = parse_corruption(cfg.corruption)
    who = identify(cfg, trainer.device.type)
    config = cfg.to_dict() | {
        "method_resolved": resolve(cfg.method)[0],
        "method_params": trainer.method.params(),
        "method_traits": traits(trainer.method),
        "corruption_record": prep.record,
        "dataset_notes": list(prep.dataset.notes),
        "skipped_files": len(prep.dataset.skipped),
        "image_shape": list(prep.x.shape[1:]),
        "n_holdout": int((prep.role == "holdout").sum()),
        "n_canaries": int((prep.role == "canary").sum()),
    } | (extra or {})
    return dict(experiment_id=who.experiment_id, experiment=who.experiment, arm=who.arm, method=cfg.method, dataset=cfg.dataset, model=cfg.model, corruption=cfg.corruption,
                corruption_kind=kind, corrupt_frac=share, seed=cfg.seed, n_train=int(prep.trained.sum()),
                n_test=len(prep.test), n_classes=prep.dataset.n_classes, classes=list(prep.dataset.classes),
                epochs=cfg.epochs, config=config, command=command, version=__version__,
                torch_version=torch.__version__, device=str(trainer.device))


class StoreSink:
    """Hands each finished epoch to the store as one transaction."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id

    def write_epoch(self, epoch: int, *, observations, steps, evals) -> None:
        self.store.append(self.run_id, observations=observations, steps=steps, evals=evals, epochs_done=epoch + 1)

    def write_irreducible(self, example_id, loss, summary) -> None:
        """rho's irreducible losses, and what fitting their model cost (counted into rho's cost as upfront work)."""
        upfront = {k: summary[k] for k in ("backprops", "forwards", "seconds")} | {"for": "the irreducible-loss model"}
        self.store.set_irreducible(self.run_id, pd.DataFrame({"example_id": example_id.astype(np.int32),
                                                              "irreducible_loss": loss.astype(np.float32)}),
                                   {"irreducible_model": summary, "upfront": upfront})


class RunFailed(TrainingFailed):
    """A run ended failed (its reason is stored in runs.error); carries the run_id."""

    def __init__(self, run_id: int, reason: str):
        super().__init__(reason)
        self.run_id = run_id


def run_one(cfg: RunConfig, store: Store, *, command: str = "", cache: dict | None = None,
            progress: Callable[[int], None] | None = None, prep: Prepared | None = None,
            extra_config: dict | None = None) -> int:
    """Train one config into `store`; returns its run_id. The run ends complete, failed or interrupted.

    A run whose training fails (TrainingFailed: diverged, non-finite scores) is marked failed with the
    one-line reason and raises RunFailed; any other error is marked failed and re-raised as it is.
    `prep` is the config's prepared data when the caller already has it; `extra_config` is merged into
    the stored config (e.g. the audit marks its proxy runs)."""
    prep = prepare(cfg, cache) if prep is None else prep
    trainer = Trainer(cfg, train_data(prep), progress=progress)
    run_id = store.start_run(run_row(cfg, prep, trainer, command=command, extra=extra_config), examples_frame(prep))
    try:
        trainer.fit(StoreSink(store, run_id))
    except KeyboardInterrupt:
        store.finish(run_id, "interrupted", "stopped by Ctrl-C or SIGTERM")
        raise
    except TrainingFailed as err:
        store.finish(run_id, "failed", str(err))
        raise RunFailed(run_id, str(err)) from None
    except Exception as err:
        store.finish(run_id, "failed", " ".join(f"{type(err).__name__}: {err}".split()))
        raise
    store.finish(run_id, "complete")
    return run_id


def candidates(cfg: RunConfig, prep: Prepared) -> int:
    """Candidates a run will process, for progress bars (the irreducible-loss run of rho included)."""
    n_held = int((prep.role == "holdout").sum())
    return int(prep.trained.sum()) * cfg.epochs + n_held * (cfg.il_epochs or cfg.epochs)


def run_grid(cells: Grid | list[RunConfig], store: Store, *, command: str = "", cache: dict | None = None,
             on_start: Callable[[int, RunConfig, int], Callable[[int], None]] | None = None,
             on_failed: Callable[[RunFailed, RunConfig], None] | None = None) -> list[int]:
    """Run every cell (a grid's expanded configs, or a list of them) in order; returns their run_ids.

    A cell whose training fails is marked failed and reported to `on_failed(err, cfg)`; the next cell
    goes on. `on_start(i, cfg, n_candidates)` returns that run's progress callback; `cache` holds loaded
    datasets (pass the one used to check the grid, to load them once)."""
    store.mark_orphans()
    cache = {} if cache is None else cache
    run_ids = []
    for i, cfg in enumerate(cells.runs() if isinstance(cells, Grid) else cells):
        prep = prepare(cfg, cache)
        progress = on_start(i, cfg, candidates(cfg, prep)) if on_start else None
        try:
            run_ids.append(run_one(cfg, store, command=command, progress=progress, prep=prep))
        except RunFailed as err:
            run_ids.append(err.run_id)
            if on_failed:
                on_failed(err, cfg)
    return run_ids


class RunImages:
    """The training images of stored runs as they were trained (dataset, subset and corruption
    reproduced from runs.config), for the report's galleries."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, run: dict, example_ids) -> np.ndarray:
        cfg = RunConfig.from_dict(run["config"])
        prep = prepare(cfg, self.cache)
        position = {int(e): i for i, e in enumerate(prep.example_id)}
        return prep.x[[position[int(e)] for e in example_ids]]
