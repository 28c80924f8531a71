"""Which runs are comparable: a run's experiment (everything but the grid axes) and its arm (the method as compared).

An experiment is the set of runs whose resolved configuration is identical except for the grid
axes: the method with its own parameters, the corruption and the seed. Every comparison (Table 1,
curves, corrupted share, separability, verdicts) is made within one experiment, so runs with other
epochs, another model, batch size or dataset never mix. A method's parameters (sb's beta, vr's pool,
...) belong to the method axis: `sb` with `--beta 3` is another arm of the same experiment, named
`sb beta=3`, next to the same sgd baseline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path, PurePath

from lossaudit.core.errors import UserError
from lossaudit.core.records import experiment_id
from lossaudit.core.settings import show
from lossaudit.training.config import FIELDS, RunConfig
from lossaudit.training.methods import resolve_params

GRID_AXES = ("method", "corruption", "seed")
ALWAYS_NAMED = ("dataset", "model", "epochs")  # in every experiment's name; other fields only when not default
# settings added with the budget protocol (training.budget) and the validation split: in the key only when set, so
# that a run of the paper's protocol keeps the experiment id it had before they existed
KEYED_WHEN_SET = ("schedule", "budget", "budget_unit", "forward_cost", "val_size")


@dataclass(frozen=True)
class Identity:
    experiment_id: str  # 12 hex digits of a hash of the experiment's configuration (`key`)
    experiment: str  # readable: dataset · model · epochs, then every setting away from its default
    arm: str  # the method as given, then any of its parameters away from the method's defaults
    key: dict  # the experiment's configuration (experiment_config)


def experiment_config(cfg: RunConfig, device_type: str) -> dict:
    """The configuration every run of an experiment shares: all fields except the grid axes and the method's
    own parameters; the device as its type (cpu, cuda, mps), since that changes the numbers."""
    values = cfg.to_dict()
    key = {k: values[k] for k in FIELDS if k not in GRID_AXES and k != "device"
           and not (k in KEYED_WHEN_SET and values[k] == FIELDS[k].default)}
    key["dataset"] = _absolute(cfg.dataset)  # the same relative path from another folder is other data
    if cfg.confusion:
        key["confusion"] = str(Path(cfg.confusion).expanduser().absolute())
    key["device"] = device_type
    return key


def _absolute(spec: str) -> str:
    name, sep, path = spec.partition(":")
    return f"{name}:{Path(path).expanduser().absolute()}" if sep and path else spec


def _show(value) -> str:
    return show(value) or "none"


def _short_dataset(spec: str) -> str:
    name, sep, path = spec.partition(":")
    return f"{name}:{PurePath(path.rstrip('/')).name or path}" if sep else spec


def experiment_name(key: dict) -> str:
    defaults = RunConfig().to_dict()
    parts = [_short_dataset(key["dataset"]), key["model"], f"{key['epochs']} epochs"]
    parts += [f"{k}={_show(v)}" for k, v in key.items()
              if k not in ALWAYS_NAMED and k != "device" and _show(v) != _show(defaults.get(k))]
    if key["device"] != "cpu":
        parts.append(key["device"])
    return " · ".join(parts)


def arm(cfg: RunConfig) -> str:
    """`sb50`, or `sb beta=3` when a parameter of the method differs from its defaults (preset included)."""
    reference = dataclasses.asdict(resolve_params(cfg.method))
    changed = [f"{k}={_show(v)}" for k, v in dataclasses.asdict(cfg.params).items() if v != reference[k]]
    return " ".join([cfg.method, *changed])


def identify(cfg: RunConfig, device_type: str) -> Identity:
    key = experiment_config(cfg, device_type)
    return Identity(experiment_id(key), experiment_name(key), arm(cfg), key)


def traits_of(cfg: RunConfig) -> dict:
    """`traits` of the method a config names, without training (for runs stored before the traits were)."""
    import torch

    from lossaudit.training.methods import create_method
    method = create_method(cfg.method, cfg.params, batch_size=cfg.batch_size, n_train=1, epochs=cfg.epochs,
                           device=torch.device("cpu"), generator=torch.Generator())
    return method.traits()


def stored_traits(values: dict) -> dict | None:
    """`traits_of` a stored config (its `method` included); None for a method or setting this version does not know."""
    try:
        return traits_of(RunConfig.from_dict(values))
    except UserError:
        return None


def identify_stored(values: dict, device_type: str) -> dict | None:
    """The identity of a run stored by lossaudit 0.1 (its config as stored, `method` included), with what its config
    lacks (method traits, rho's upfront cost); None for a method or setting this version no longer knows."""
    try:
        cfg = RunConfig.from_dict(values)
        who = identify(cfg, device_type)
    except UserError:
        return None
    patch = {} if "method_traits" in values else {"method_traits": traits_of(cfg)}
    if "irreducible_model" in values and "upfront" not in values:
        il = values["irreducible_model"]
        patch["upfront"] = {k: il.get(k, 0) for k in ("backprops", "forwards", "seconds")} | {
            "for": "the irreducible-loss model"}
    return {"experiment_id": who.experiment_id, "experiment": who.experiment, "arm": who.arm, "config_patch": patch}
