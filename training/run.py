"""Running configs: prepare a run's data, record the run, train it, and mark how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from audit import __version__
from audit.store import Store
from training.config import Grid, RunConfig
from training.corruptions import Corrupted, corrupt, parse_corruption
from training.datasets import Dataset, Split, load_dataset, stratified_subset
from training.methods import method_class, resolve
from training.trainer import Trainer, TrainData


@dataclass(frozen=True)
class Prepared:
    """A run's data. `corrupted` covers the whole training split; `holdout` marks examples kept out of
    training (the irreducible-loss split of rho), all False for other methods."""

    dataset: Dataset
    train: Split
    test: Split
    corrupted: Corrupted
    holdout: np.ndarray


def prepare(cfg: RunConfig, cache: dict | None = None) -> Prepared:
    """Load (or reuse) the dataset, take the configured subsets, apply the run's corruption."""
    key = (cfg.dataset, cfg.split_seed, cfg.test_fraction)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = load_dataset(cfg.dataset, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction)
    dataset = cache[key]
    train = stratified_subset(dataset.train, cfg.train_size, cfg.split_seed)
    test = stratified_subset(dataset.test, cfg.test_size, cfg.split_seed)
    holdout = np.zeros(len(train), dtype=bool)
    if method_class(cfg.method).needs_irreducible_loss:
        from sklearn.model_selection import train_test_split
        _, held = train_test_split(np.arange(len(train)), test_size=cfg.holdout_fraction, stratify=train.y,
                                   random_state=cfg.split_seed)
        holdout[held] = True
    return Prepared(dataset, train, test, corrupt(train.x, train.y, dataset.n_classes, cfg.corruption, cfg.seed), holdout)


def examples_frame(prep: Prepared) -> pd.DataFrame:
    c = prep.corrupted
    kind = pd.Series(pd.NA, index=range(len(c.label)), dtype="string")
    kind[c.is_corrupted] = c.kind
    return pd.DataFrame({
        "example_id": prep.train.example_id.astype(np.int32),
        "label": c.label.astype(np.int16),
        "true_label": c.true_label.astype(np.int16),
        "corruption": kind,
        "is_corrupted": c.is_corrupted,
        "source": prep.train.source.astype(str),
        "role": np.where(prep.holdout, "holdout", "train"),
    })


def train_data(prep: Prepared) -> TrainData:
    c, keep = prep.corrupted, ~prep.holdout
    held = prep.holdout if prep.holdout.any() else None
    return TrainData(c.x[keep], c.label[keep], prep.train.example_id[keep], prep.test.x, prep.test.y,
                     prep.dataset.n_classes,
                     holdout_x=None if held is None else c.x[held], holdout_y=None if held is None else c.label[held],
                     holdout_id=None if held is None else prep.train.example_id[held])


def run_row(cfg: RunConfig, prep: Prepared, trainer: Trainer, *, command: str) -> dict:
    kind, share = parse_corruption(cfg.corruption)
    config = cfg.to_dict() | {
        "method_resolved": resolve(cfg.method)[0],
        "method_params": trainer.method.params(),
        "corruption_record": prep.corrupted.record,
        "dataset_notes": list(prep.dataset.notes),
        "skipped_files": len(prep.dataset.skipped),
        "image_shape": list(prep.train.x.shape[1:]),
        "n_holdout": int(prep.holdout.sum()),
    }
    return dict(method=cfg.method, dataset=cfg.dataset, model=cfg.model, corruption=cfg.corruption,
                corruption_kind=kind, corrupt_frac=share, seed=cfg.seed, n_train=int((~prep.holdout).sum()),
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
        self.store.set_irreducible(self.run_id, pd.DataFrame({"example_id": example_id.astype(np.int32),
                                                              "irreducible_loss": loss.astype(np.float32)}), summary)


def run_one(cfg: RunConfig, store: Store, *, command: str = "", cache: dict | None = None,
            progress: Callable[[int], None] | None = None) -> int:
    """Train one config into `store`; returns its run_id. The run ends complete, failed or interrupted."""
    prep = prepare(cfg, cache)
    trainer = Trainer(cfg, train_data(prep), progress=progress)
    run_id = store.start_run(run_row(cfg, prep, trainer, command=command), examples_frame(prep))
    try:
        trainer.fit(StoreSink(store, run_id))
    except KeyboardInterrupt:
        store.finish(run_id, "interrupted", "stopped by Ctrl-C or SIGTERM")
        raise
    except Exception as err:
        store.finish(run_id, "failed", f"{type(err).__name__}: {err}")
        raise
    store.finish(run_id, "complete")
    return run_id


def candidates_per_run(cfg: RunConfig, cache: dict) -> int:
    """Candidates a run will process, for progress bars (the irreducible-loss run of rho included)."""
    prep = prepare(cfg, cache)
    n_held = int(prep.holdout.sum())
    return (len(prep.train) - n_held) * cfg.epochs + n_held * (cfg.il_epochs or cfg.epochs)


def run_grid(grid: Grid, store: Store, *, command: str = "",
             on_start: Callable[[int, RunConfig], Callable[[int], None]] | None = None) -> list[int]:
    """Run every config of the grid in order; `on_start(i, cfg)` returns that run's progress callback."""
    store.mark_orphans()
    cache: dict = {}
    run_ids = []
    for i, cfg in enumerate(grid.runs()):
        progress = on_start(i, cfg) if on_start else None
        run_ids.append(run_one(cfg, store, command=command, cache=cache, progress=progress))
    return run_ids


class RunImages:
    """The training images of stored runs as they were trained (dataset, subset and corruption
    reproduced from runs.config), for the report's galleries."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, run: dict, example_ids) -> np.ndarray:
        cfg = RunConfig.from_dict(run["config"])
        prep = prepare(cfg, self.cache)
        position = {int(e): i for i, e in enumerate(prep.train.example_id)}
        return prep.corrupted.x[[position[int(e)] for e in example_ids]]
