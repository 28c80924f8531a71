"""The run record: the one place a `runs` row is put together, for a run trained by `lossaudit run` (on one process
or many) and for a loop recorded with lossaudit.Recorder, so that every run names its experiment the same way.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

from lossaudit.core.errors import UserError
from lossaudit.core.version import __version__

# Every trait a run's method_traits holds (training/methods/base.py, Method.traits, says what each means).
TRAITS = ("loss_based", "is_control", "is_baseline", "nominal_selectivity", "switch", "diagnostics", "upfront")


def experiment_id(key: dict) -> str:
    """12 hex digits of a hash of what makes an experiment (everything but the grid axes), as compact sorted JSON."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# A recorded loop's own settings that tell its arms and cells apart rather than its experiment, and the keys the
# Recorder adds to the settings it stores.
RECORDED_GRID_KEYS = ("method", "seed", "corruption")
RECORDER_KEYS = ("recorder", "threads", "processes", "method_traits")


def recorded_key(dataset: str, model: str, n_examples: int, settings: dict) -> dict:
    """What makes the experiment of a loop recorded with lossaudit.Recorder: its data, model, size and settings."""
    return {"recorded": True, "dataset": str(dataset), "model": str(model), "n_examples": int(n_examples),
            "config": {k: v for k, v in settings.items() if k not in RECORDED_GRID_KEYS}}


def run_record(*, key: dict, experiment: str, arm: str, method: str, dataset: str, model: str, corruption: str,
               corruption_kind: str | None, corrupt_frac: float, seed: int, n_train: int, n_test: int,
               classes: Sequence[str], epochs: int, config: dict, command: str, device: str,
               torch_version: str) -> dict:
    """The `runs` row of a run about to start: its experiment (`key` hashed; `experiment` its readable name) and arm,
    what it trains on, and its config, which holds the method's traits in config['method_traits']."""
    missing = [t for t in TRAITS if t not in config.get("method_traits", {})]
    if missing:
        raise UserError(f"method traits: {', '.join(missing)} missing; a run's traits are {', '.join(TRAITS)}")
    return dict(experiment_id=experiment_id(key), experiment=experiment, arm=arm, method=method, dataset=dataset,
                model=model, corruption=corruption, corruption_kind=corruption_kind, corrupt_frac=corrupt_frac,
                seed=int(seed), n_train=int(n_train), n_test=int(n_test), n_classes=len(classes),
                classes=list(classes), epochs=int(epochs), config=config, command=command, version=__version__,
                torch_version=torch_version, device=device)
