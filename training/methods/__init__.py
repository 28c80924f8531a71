"""The selection-method registry (name → class) and presets for the paper's cells.

Adding a method: one file with a `Method` subclass, plus one line in `METHODS` below. The tests
are parametrised over this registry, so the new entry is exercised automatically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from lossaudit.errors import UserError, choices
from lossaudit.training.config import RunConfig
from lossaudit.training.methods.base import Forward, Method, Selection
from lossaudit.training.methods.rho import RhoLoss
from lossaudit.training.methods.sb import EntropySelectiveBackprop, SelectiveBackprop
from lossaudit.training.methods.sgd import SGD
from lossaudit.training.methods.uniform import UniformSubset
from lossaudit.training.methods.vr import ImportanceSampling

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    SGD, SelectiveBackprop, EntropySelectiveBackprop, ImportanceSampling, UniformSubset, RhoLoss)}


@dataclass(frozen=True)
class Preset:
    method: str
    params: dict = field(default_factory=dict)  # RunConfig fields the preset fixes
    description: str = ""


PRESETS: dict[str, Preset] = {
    "sb50": Preset("sb", {"beta": 1.0}, "the paper's SB 50%: sb with beta 1"),
    "sb33": Preset("sb", {"beta": 2.0}, "the paper's SB 33%: sb with beta 2"),
    "sbe50": Preset("sbe", {"beta": 1.0}, "entropy SB at 50%: sbe with beta 1"),
    "sbe33": Preset("sbe", {"beta": 2.0}, "entropy SB at 33%: sbe with beta 2"),
    "vr50": Preset("vr", {"max_selectivity": 0.5}, "the paper's VR 50%: pool of 2B"),
    "vr33": Preset("vr", {"max_selectivity": 1 / 3}, "the paper's VR 33%: pool of 3B"),
    "uniform50": Preset("uniform", {"selectivity": 0.5}, "random 50% subset, the control for sb50 and vr50"),
    "uniform33": Preset("uniform", {"selectivity": 1 / 3}, "random 33% subset, the control for sb33 and vr33"),
}

# What `lossaudit run` trains when no --method is given.
DEFAULT_METHODS: tuple[str, ...] = ("sgd", "sb50", "sb33", "sbe50", "vr50", "vr33", "uniform50", "uniform33", "rho")


def all_names() -> list[str]:
    return list(METHODS) + list(PRESETS)


def resolve(name: str) -> tuple[str, dict]:
    """Method or preset name → (registry method, RunConfig fields the preset fixes)."""
    if name in METHODS:
        return name, {}
    if name in PRESETS:
        return PRESETS[name].method, dict(PRESETS[name].params)
    raise UserError(f"unknown method {name!r}; valid: {choices(all_names())}")


def check_method(name: str) -> None:
    resolve(name)


def method_class(name: str) -> type[Method]:
    return METHODS[resolve(name)[0]]


def apply_preset(cfg: RunConfig) -> RunConfig:
    """The config with the fields of its method's preset filled in (the method name is kept as given)."""
    return dataclasses.replace(cfg, **resolve(cfg.method)[1])


def create_method(cfg: RunConfig, *, n_train: int, device: torch.device, generator: torch.Generator) -> Method:
    return method_class(cfg.method)(apply_preset(cfg), n_train=n_train, device=device, generator=generator)


__all__ = ["DEFAULT_METHODS", "Forward", "METHODS", "Method", "PRESETS", "Selection", "all_names", "apply_preset",
           "check_method", "create_method", "method_class", "resolve"]
