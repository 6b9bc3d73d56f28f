"""The one registry every extension point uses: entries by name, listed in registration order, with clear errors.

    SOLVERS = Registry("solver", key="sample.solver")
    SOLVERS.register("euler", EulerInfo)
    SOLVERS["eulr"]   # UnknownNameError: unknown solver 'eulr' (sample.solver); did you mean 'euler'? choose one of: euler, ...

A registry reads like a dict (`name in R`, `R[name]`, `R.get(name)`, iteration, `items()`), refuses a second
entry under a taken name unless asked to replace it, and its lookup error names the key a user sets, the
closest registered name and every choice. It imports nothing of imgflow: any layer may hold one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name no registry entry has (the message names the key, the closest name and the choices)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Named entries of one kind. `what` names the kind in messages ("backbone"); `key` is the setting that picks an entry
    ("model.arch"), shown beside an unknown name."""

    def __init__(self, what: str, key: str = "", entries: Iterable[tuple[str, T]] = ()) -> None:
        self.what = what
        self.key = key
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            self.register(name, entry)

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add `entry` under `name` (a second entry under a taken name needs replace=True); returns the entry."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} needs a non-empty string name, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"a {self.what} named {name!r} is already registered; pick another name or pass replace=True")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            where = f" ({self.key})" if self.key else ""
            hint = did_you_mean(name, self._entries).removesuffix("?")
            raise UnknownNameError(f"unknown {self.what} {name!r}{where}{hint}{'?' if hint else ';'} "
                                   f"choose one of: {', '.join(self._entries)}") from None

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def keys(self):
        return self._entries.keys()

    def values(self):
        return self._entries.values()

    def items(self):
        return self._entries.items()

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"


__all__ = ["Registry", "UnknownNameError", "did_you_mean"]
