"""What the ground floor needs from a floor above it, handed down at start-up rather than imported upward.

Upgrading a database written before schema 5 needs the traits each run's method declares now (its switch and
diagnostics), and one written by lossaudit 0.1 (schema 1) needs each run's experiment and arm, which only the
training floor can work out from a stored config; the package root registers that function here (lazily: training
and torch load only when an old database is opened), so that this floor never names training.
"""

from __future__ import annotations

from typing import Callable

from lossaudit.core.errors import UserError

# identify(stored config: dict, device type) -> {"experiment_id", "experiment", "arm", "config_patch"} or None
_legacy_identity: list[Callable[[dict, str], dict | None]] = []


def register_legacy_identity(identify: Callable[[dict, str], dict | None]) -> None:
    _legacy_identity[:] = [identify]


# traits(stored config: dict) -> the method traits its method declares now (switch, diagnostics, ...) or None
_stored_traits: list[Callable[[dict], dict | None]] = []


def register_stored_traits(traits: Callable[[dict], dict | None]) -> None:
    _stored_traits[:] = [traits]


def stored_traits(values: dict) -> dict | None:
    """The traits the method of a run stored before schema 5 declares now (None: a method this version does not
    know, or no training floor registered)."""
    return _stored_traits[0](values) if _stored_traits else None


def legacy_identity(values: dict, device_type: str) -> dict | None:
    """The experiment and arm of a run stored by lossaudit 0.1 (None: settings this version does not know)."""
    if not _legacy_identity:
        raise UserError("this database was written by lossaudit 0.1 and needs a one-off upgrade, which the lossaudit "
                        "command makes: open it once with it (e.g. `lossaudit sql --list --db PATH`)")
    return _legacy_identity[0](values, device_type)
