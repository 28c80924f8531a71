"""Typed settings: a default, a unit, a help line and a valid range on every field of a frozen dataclass.

The run configuration and every selection method's parameters are declared with `setting`; the same
declaration gives the command-line flag and its help, converts values from flags and config files,
and checks the range, so a value is described and validated in one place.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from lossaudit.core.errors import UserError

MAX_EPOCHS = 100_000  # far beyond any schedule (every epoch setting is bounded by it); steps are counted in 32 bits


def setting(default, help: str, *, unit: str = "", check: Callable[[Any], bool] | None = None, rule: str = ""):
    """A dataclass field with a unit (shown as `[unit]`), a valid range (`check`, described by `rule`) and help."""
    return dataclasses.field(default=default, metadata={"help": help, "unit": unit, "check": check, "rule": rule})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def show(value) -> str:
    """A value as a user types it: tuples comma-separated, floats short."""
    if isinstance(value, (tuple, list)):
        return ",".join(show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(field: dataclasses.Field) -> str:
    """The help line of a setting: what it is, its unit, its valid range and default."""
    meta = field.metadata
    unit = f" [{meta['unit']}]" if meta.get("unit") else ""
    rule = f"; {meta['rule']}" if meta.get("rule") else ""
    return f"{meta.get('help', '')}{unit}{rule}  [default: {show(field.default)}]"


def coerce(field: dataclasses.Field, value: Any, *, name: str | None = None) -> Any:
    """A value from a file or flag converted to the field's type; one clear line, naming the flag (`name`, or the
    field's own), when impossible."""
    default = field.default
    try:
        if isinstance(value, bool) and not isinstance(default, bool):
            raise ValueError  # YAML's `epochs: true` is not a number
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if value not in (True, False, 0, 1):
                raise ValueError
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(float(v) for v in items if str(v).strip() != "")
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag(name or field.name)}: {value!r} is not a valid {type(default).__name__}") from None


def build(cls, values: dict[str, Any]):
    """An instance of the settings dataclass `cls` from (possibly textual) values, coerced and checked."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    obj = cls(**{k: coerce(fields[k], v) for k, v in values.items() if k in fields})
    check(obj)
    return obj


def check(obj) -> None:
    """Every field of a settings dataclass within its declared range, or one line naming the first that is not. A
    number must be finite whatever its range says (inf or nan is never a setting)."""
    for f in dataclasses.fields(obj):
        test = f.metadata.get("check")
        value = getattr(obj, f.name)
        numbers = value if isinstance(value, tuple) else (value,)
        finite = all(math.isfinite(v) for v in numbers if isinstance(v, float))
        if not finite or (test is not None and not test(value)):
            rule = f.metadata.get("rule") or "valid"
            raise UserError(f"{flag(f.name)} must be {rule}{'' if finite else ' and finite'}, got {show(value)}")
