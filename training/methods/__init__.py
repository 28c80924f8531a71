"""The selection-method registry: name → class, plus named presets of the paper's cells."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from audit.errors import UserError, choices
from training.methods.base import Forward, Method, Selection
from training.methods.sgd import SGD

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (SGD,)}


@dataclass(frozen=True)
class Preset:
    method: str
    params: dict = field(default_factory=dict)
    description: str = ""


PRESETS: dict[str, Preset] = {}


def all_names() -> list[str]:
    return list(METHODS) + list(PRESETS)


def resolve(name: str) -> tuple[str, dict]:
    """Method or preset name → (registry method, parameter overrides)."""
    if name in METHODS:
        return name, {}
    if name in PRESETS:
        return PRESETS[name].method, dict(PRESETS[name].params)
    raise UserError(f"unknown method {name!r}; valid: {choices(all_names())}")


def check_method(name: str) -> None:
    resolve(name)


def create_method(name: str, *, batch_size: int, n_train: int, device: torch.device,
                  generator: torch.Generator, **params) -> Method:
    method, overrides = resolve(name)
    return METHODS[method](batch_size=batch_size, n_train=n_train, device=device, generator=generator,
                           **{**params, **overrides})


__all__ = ["DEFAULT_METHODS", "Forward", "Method", "Selection", "METHODS", "PRESETS", "resolve", "check_method", "create_method", "all_names"]

# What `lossaudit run` trains when no --method is given: every method, paper cells as presets.
DEFAULT_METHODS: tuple[str, ...] = ("sgd",)
