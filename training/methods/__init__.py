"""The selection-method registry: name → class, with every method's presets and parameters.

Adding a method: one file with a `Method` subclass (its `Params`, presets and traits declared on it),
plus one `register` line below. Its parameters become `lossaudit run` flags and config keys, its
presets become method names, and the tests, parametrised over this registry, exercise it.
"""

from __future__ import annotations

import dataclasses

import torch

from lossaudit.core.errors import UserError, choices
from lossaudit.core.registry import Registry
from lossaudit.training.methods.base import Diagnostic, Forward, Method, Preset, Selection
from lossaudit.training.methods.ibp import InfoBatchPlausible
from lossaudit.training.methods.infobatch import InfoBatch
from lossaudit.training.methods.rho import RhoLoss
from lossaudit.training.methods.sb import EntropySelectiveBackprop, SelectiveBackprop
from lossaudit.training.methods.sbp import PlausibleSelectiveBackprop
from lossaudit.training.methods.sgd import SGD
from lossaudit.training.methods.uniform import UniformSubset
from lossaudit.training.methods.vr import ImportanceSampling

METHODS: Registry[type[Method]] = Registry("method")
PRESETS: dict[str, tuple[str, Preset]] = {}  # preset name → (method, its parameter values)


def register(cls: type[Method]) -> type[Method]:
    """Add a method (and its presets) to the registry; usable as a decorator."""
    for name in (cls.name, *cls.presets):
        owner = name if name in METHODS else PRESETS[name][0] if name in PRESETS else cls.name
        if owner != cls.name:
            raise ValueError(f"method or preset name {name!r} is taken by {owner}")
    METHODS.register(cls)
    PRESETS.update({name: (cls.name, preset) for name, preset in cls.presets.items()})
    return cls


for _cls in (SGD, SelectiveBackprop, EntropySelectiveBackprop, ImportanceSampling, UniformSubset, RhoLoss,
             PlausibleSelectiveBackprop, InfoBatch, InfoBatchPlausible):
    register(_cls)

# What `lossaudit run` trains when no --method is given.
DEFAULT_METHODS: tuple[str, ...] = ("sgd", "sb50", "sb33", "sbe50", "stalesb50", "vr50", "vr33", "infobatch50", "ibp50",
                                     "uniform50", "uniform33", "rho")
# What `lossaudit audit` replays on its proxy run's losses, and the one its verdict rests on.
REPLAYED: tuple[str, ...] = ("sb50", "sb33", "vr50", "vr33", "stalesb50", "infobatch50", "infobatch30")
AUDIT_REFERENCE = "sb50"
# The method that trains every example every epoch: the reference arm of a grid, the audit's proxies, a holdout model.
BASELINE = "sgd"


def all_names() -> list[str]:
    return list(METHODS) + list(PRESETS)


def resolve(name: str) -> tuple[type[Method], dict]:
    """Method or preset name → (method class, the parameter values the preset fixes)."""
    if name in METHODS:
        return METHODS[name], {}
    if name in PRESETS:
        method, preset = PRESETS[name]
        return METHODS[method], dict(preset.params)
    raise UserError(f"unknown method {name!r}; valid: {choices(all_names())}")


def method_class(name: str) -> type[Method]:
    return resolve(name)[0]


def parameters() -> dict[str, dataclasses.Field]:
    """Every method parameter by name (the first declaration of a shared name), for flags and config keys."""
    out: dict[str, dataclasses.Field] = {}
    for cls in METHODS.values():
        for f in dataclasses.fields(cls.Params):
            out.setdefault(f.name, f)
    return out


def users_of(param: str) -> list[str]:
    """The methods that have a parameter of this name."""
    return [name for name, cls in METHODS.items() if param in {f.name for f in dataclasses.fields(cls.Params)}]


def resolve_params(name: str, given: dict | None = None):
    """The parameters of method or preset `name`: its defaults, then the values given (those it has), then the
    preset's own values (a preset means them), coerced and checked."""
    import lossaudit.core.settings as settings

    cls, fixed = resolve(name)
    own = {f.name for f in dataclasses.fields(cls.Params)}
    return settings.build(cls.Params, {k: v for k, v in (given or {}).items() if k in own} | fixed)


def create_method(name: str, params, *, batch_size: int, n_train: int, device: torch.device,
                  generator: torch.Generator, epochs: int = 0) -> Method:
    return method_class(name)(params, batch_size=batch_size, n_train=n_train, device=device, generator=generator,
                              epochs=epochs)


__all__ = ["AUDIT_REFERENCE", "BASELINE", "DEFAULT_METHODS", "Diagnostic", "Forward", "METHODS", "Method", "PRESETS",
           "Preset", "REPLAYED",
           "Selection", "all_names", "create_method", "method_class", "parameters", "register", "resolve",
           "resolve_params", "users_of"]
