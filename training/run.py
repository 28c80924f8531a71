"""Running configs: prepare a run's data, record the run, train it, and mark how it ended."""

from __future__ import annotations

import platform
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
from training.methods import resolve
from training.trainer import Trainer, TrainData, resolve_device


@dataclass(frozen=True)
class Prepared:
    dataset: Dataset
    train: Split
    test: Split
    corrupted: Corrupted


def prepare(cfg: RunConfig, cache: dict | None = None) -> Prepared:
    """Load (or reuse) the dataset, take the configured subsets, apply the run's corruption."""
    key = (cfg.dataset, cfg.split_seed, cfg.test_fraction)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = load_dataset(cfg.dataset, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction)
    dataset = cache[key]
    train = stratified_subset(dataset.train, cfg.train_size, cfg.split_seed)
    test = stratified_subset(dataset.test, cfg.test_size, cfg.split_seed)
    return Prepared(dataset, train, test, corrupt(train.x, train.y, dataset.n_classes, cfg.corruption, cfg.seed))


def examples_frame(prep: Prepared) -> pd.DataFrame:
    c = prep.corrupted
    return pd.DataFrame({
        "example_id": prep.train.example_id.astype(np.int32),
        "label": c.label.astype(np.int16),
        "true_label": c.true_label.astype(np.int16),
        "corruption": pd.array(np.where(c.is_corrupted, c.kind or "", None), dtype="string"),
        "is_corrupted": c.is_corrupted,
        "source": prep.train.source.astype(str),
    })


def run_row(cfg: RunConfig, prep: Prepared, *, method_params: dict, command: str) -> dict:
    kind, share = parse_corruption(cfg.corruption)
    method, _ = resolve(cfg.method)
    config = cfg.to_dict() | {
        "method_resolved": method,
        "method_params": method_params,
        "corruption_record": prep.corrupted.record,
        "dataset_notes": list(prep.dataset.notes),
        "skipped_files": len(prep.dataset.skipped),
        "image_shape": list(prep.train.x.shape[1:]),
    }
    return dict(method=cfg.method, dataset=cfg.dataset, model=cfg.model, corruption=cfg.corruption,
                corruption_kind=kind, corrupt_frac=share, seed=cfg.seed, n_train=len(prep.train),
                n_test=len(prep.test), n_classes=prep.dataset.n_classes, classes=list(prep.dataset.classes),
                epochs=cfg.epochs, config=config, command=command, version=__version__,
                torch_version=torch.__version__, device=str(resolve_device(cfg.device)))


class StoreSink:
    """Hands each finished epoch to the store as one transaction."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id

    def write_epoch(self, epoch: int, *, observations, steps, evals) -> None:
        self.store.append(self.run_id, observations=observations, steps=steps, evals=evals, epochs_done=epoch + 1)


def run_one(cfg: RunConfig, store: Store, *, command: str = "", cache: dict | None = None,
            progress: Callable[[int], None] | None = None) -> int:
    """Train one config into `store`; returns its run_id. The run ends complete, failed or interrupted."""
    prep = prepare(cfg, cache)
    method_params: dict = {}
    run_id = store.start_run(run_row(cfg, prep, method_params=method_params, command=command), examples_frame(prep))
    data = TrainData(prep.corrupted.x, prep.corrupted.label, prep.train.example_id, prep.test.x, prep.test.y,
                     prep.dataset.n_classes)
    try:
        Trainer(cfg, data, StoreSink(store, run_id), method_params=method_params, progress=progress).fit()
    except KeyboardInterrupt:
        store.finish(run_id, "interrupted", "stopped by Ctrl-C or SIGTERM")
        raise
    except Exception as err:
        store.finish(run_id, "failed", f"{type(err).__name__}: {err}")
        raise
    store.finish(run_id, "complete")
    return run_id


def candidates_per_run(cfg: RunConfig, cache: dict) -> int:
    """Candidates a run will process (for progress bars): N × epochs."""
    return len(prepare(cfg, cache).train) * cfg.epochs


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


def describe_machine() -> str:
    return f"{platform.node()} ({platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads)"
