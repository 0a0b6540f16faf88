"""Twin of ``csrc/_extensions.pxi``: ``Extensions``, the type-keyed map."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, TypeVar, cast, final

from .._errors import MissingDataError

__all__ = ["Extensions"]

T = TypeVar("T")

# -- Extensions ---------------------------------------------------------------


def _check_key(key: object, method: str) -> None:
    if not isinstance(key, type):
        raise TypeError(
            f"Extensions.{method}: key must be a type, got {type(key).__name__} {key!r}"
        )


_MISSING: Any = object()


@final
class Extensions:
    """A map with at most one value per type: ``ext.insert(Db())``, ``ext.get(Db)``."""

    __slots__ = ("_map",)

    _map: dict[type, Any] | None

    def __init__(self, values: Iterable[object] = ()) -> None:
        self._map = None
        for value in values:
            self.insert(value)

    def insert(self, value: T) -> T | None:
        """Store ``value`` under ``type(value)``; returns the value it replaced or None."""
        if self._map is None:
            self._map = {}
        key = type(value)
        old = self._map.get(key)
        self._map[key] = value
        return cast("T | None", old)

    def get(self, key: type[T]) -> T | None:
        """The value stored for type ``key``, or None."""
        _check_key(key, "get")
        if self._map is None:
            return None
        return cast("T | None", self._map.get(key))

    def get_checked(self, key: type[T]) -> T:
        """The value stored for type ``key``; raises :class:`MissingDataError`."""
        _check_key(key, "get_checked")
        if self._map is not None:
            value = self._map.get(key, _MISSING)
            if value is not _MISSING:
                return cast(T, value)
        raise MissingDataError(key)

    def remove(self, key: type[T]) -> T | None:
        """Remove and return the value for type ``key``, or None if absent."""
        _check_key(key, "remove")
        if self._map is None:
            return None
        return cast("T | None", self._map.pop(key, None))

    def __contains__(self, key: object) -> bool:
        return self._map is not None and key in self._map

    def __len__(self) -> int:
        return 0 if self._map is None else len(self._map)

    def __bool__(self) -> bool:
        return bool(self._map)

    def __iter__(self) -> Iterator[Any]:
        """The stored values."""
        if self._map is None:
            return iter(())
        return iter(list(self._map.values()))

    def types(self) -> list[type]:
        """The types that have a value, in insertion order."""
        return [] if self._map is None else list(self._map)

    def clear(self) -> None:
        """Remove every value."""
        self._map = None

    def extend(self, other: Extensions) -> None:
        """Insert every value of ``other``; on a shared type ``other`` wins."""
        if not isinstance(other, Extensions):
            raise TypeError(f"Extensions.extend: expected Extensions, got {type(other).__name__}")
        if other._map:
            if self._map is None:
                self._map = {}
            self._map.update(other._map)

    def copy(self) -> Extensions:
        """A shallow copy: a new map holding the same values."""
        result = Extensions()
        if self._map:
            result._map = dict(self._map)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Extensions):
            return NotImplemented
        return (self._map or {}) == (other._map or {})

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        if result is NotImplemented:
            return NotImplemented
        return not result

    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        values = ", ".join(repr(v) for v in (self._map or {}).values())
        return f"Extensions([{values}])"
