"""A run's data and record: its examples prepared (training.examples) with its method's holdout, the data the
trainer takes, and the `runs` and `examples` rows that describe the run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lossaudit.version import __version__
from lossaudit.training import distributed
from lossaudit.training.config import RunConfig
from lossaudit.training.corruptions import parse_corruption
from lossaudit.training.examples import DataSpec, Prepared, prepare_examples
from lossaudit.training.identity import identify, traits
from lossaudit.training.methods import method_class, resolve
from lossaudit.training.trainer import Trainer, TrainData


def prepare(cfg: RunConfig, cache: dict | None = None) -> Prepared:
    """The run's examples (training.examples), with the share of them its method keeps out of training."""
    return prepare_examples(DataSpec.of(cfg, holdout=method_class(cfg.method).holdout_share(cfg.params)), cache)


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
    keep, held, out = prep.trained, prep.role == "holdout", prep.role == "held_out"
    has_holdout, has_out = bool(held.any()), bool(out.any())
    return TrainData(prep.x[keep], prep.label[keep], prep.example_id[keep], prep.test.x, prep.test.y,
                     prep.dataset.n_classes,
                     holdout_x=prep.x[held] if has_holdout else None, holdout_y=prep.label[held] if has_holdout else None,
                     holdout_id=prep.example_id[held] if has_holdout else None,
                     predict_x=prep.x[out] if has_out else None, predict_id=prep.example_id[out] if has_out else None,
                     test_id=prep.test.example_id)


def run_row(cfg: RunConfig, prep: Prepared, trainer: Trainer, *, command: str, extra: dict | None = None) -> dict:
    """The `runs` row of a run about to train: what it is, its experiment and arm, and its resolved config."""
    kind, share = parse_corruption(cfg.corruption)
    who = identify(cfg, trainer.device.type)
    config = cfg.to_dict() | {
        "method_resolved": resolve(cfg.method)[0].name,
        "method_params": trainer.method.params(),
        "method_traits": traits(trainer.method),
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
    return dict(experiment_id=who.experiment_id, experiment=who.experiment, arm=who.arm, method=cfg.method, dataset=cfg.dataset, model=cfg.model, corruption=cfg.corruption,
                corruption_kind=kind, corrupt_frac=share, seed=cfg.seed, n_train=int(prep.trained.sum()),
                n_test=len(prep.test), n_classes=prep.dataset.n_classes, classes=list(prep.dataset.classes),
                epochs=cfg.epochs, config=config, command=command, version=__version__,
                torch_version=torch.__version__, device=str(trainer.device))


def candidates(cfg: RunConfig, prep: Prepared) -> int:
    """Candidates a run will process, for progress bars (a holdout model's training taken as as many epochs)."""
    return int(prep.trained.sum()) * cfg.epochs + int((prep.role == "holdout").sum()) * cfg.epochs
