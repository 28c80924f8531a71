"""What the ground floor needs from a floor above it, handed down at start-up rather than imported upward.

Upgrading a database written by lossaudit 0.1 (schema 1) needs each run's experiment and arm, which only the
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


def legacy_identity(values: dict, device_type: str) -> dict | None:
    """The experiment and arm of a run stored by lossaudit 0.1 (None: settings this version does not know)."""
    if not _legacy_identity:
        raise UserError("this database was written by lossaudit 0.1 and needs a one-off upgrade, which the lossaudit "
                        "command makes: open it once with it (e.g. `lossaudit sql --list --db PATH`)")
    return _legacy_identity[0](values, device_type)
