"""One kind of registry for everything the project extends by name: methods, corruptions, datasets, models, scores,
analyses and report sections.

A registry maps a name to an entry, an object that carries its own `name`. An entry is added once with
`REGISTRY.register(entry)` (a name already taken is a ValueError, so two entries never shadow each other), and looked
up with `REGISTRY.lookup(name)`, which names the valid entries when the name is unknown. It reads like a dict.
"""

from __future__ import annotations

from typing import Generic, Iterator, Mapping, TypeVar

from lossaudit.core.errors import UserError, choices

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, what: str):
        self.what = what  # what an entry is, in words ("method", "corruption", ...)
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """Add `entry` under its `name`; returns it, so that it can decorate a class."""
        name = getattr(entry, "name", "")
        if not name or name in self._entries:
            raise ValueError(f"{self.what} name {name!r} is empty or taken")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def lookup(self, name: str) -> T:
        if name not in self._entries:
            raise UserError(f"unknown {self.what} {name!r}; valid: {choices(self._entries)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self._entries)})"
