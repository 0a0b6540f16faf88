"""Twin of ``csrc/_ulid.pxi``: ``TaskId`` and its ULIDs."""

from __future__ import annotations

import os
import threading
import time
from typing import final

__all__ = ["TaskId"]

# -- TaskId and ULIDs ---------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {char: index for index, char in enumerate(_CROCKFORD)}
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS


class _UlidGenerator:
    """Time-ordered ids, strictly increasing within a process.

    Within one millisecond (or if the wall clock steps back) the 80-bit random
    part is incremented instead of redrawn, so ids sort in creation order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._random = 0

    def reseed(self) -> None:
        # After fork() a child must not continue its parent's sequence.
        self._lock = threading.Lock()
        self._last_ms = 0

    def next(self) -> int:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms = ms
                self._random = int.from_bytes(os.urandom(10), "big")
            else:
                self._random += 1
                if self._random >= _RANDOM_LIMIT:
                    self._last_ms += 1
                    self._random = int.from_bytes(os.urandom(10), "big") >> 1
            return (self._last_ms << _RANDOM_BITS) | self._random


_generator = _UlidGenerator()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_generator.reseed)


# Every pair of characters, indexed by 10 bits: 13 lookups encode an id.
_PAIRS = [first + second for first in _CROCKFORD for second in _CROCKFORD]


def _encode_ulid(value: int) -> str:
    # 26 characters hold 130 bits; the top two are always zero.
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -10, -10)])


def _parse_ulid(text: str) -> int | None:
    """The 128-bit value of a canonical (upper-case, 26-char) ULID, else None."""
    if len(text) != 26:
        return None
    value = 0
    for index, char in enumerate(text):
        digit = _DECODE.get(char)
        if digit is None or (index == 0 and digit > 7):
            return None
        value = (value << 5) | digit
    return value


@final
class TaskId:
    """The identity of a task.

    ``TaskId("task-123")`` wraps any non-empty string; ``TaskId.generate()``
    mints a ULID (time-ordered, monotonic within a millisecond, unique across
    threads and forked processes). Equality, hashing and ordering follow the
    string value; ``str(task_id)`` gives it.
    """

    __slots__ = ("_text", "_ulid")

    _text: str
    _ulid: int | None

    def __init__(self, value: str | TaskId) -> None:
        if isinstance(value, TaskId):
            self._text = value._text
            self._ulid = value._ulid
            return
        if not isinstance(value, str):
            raise TypeError(f"TaskId: expected str, got {type(value).__name__} {value!r}")
        if not value:
            raise ValueError("TaskId: value must be a non-empty string")
        if type(value) is not str:
            # A str subclass (a StrEnum member...) is kept as its plain text.
            value = str.__str__(value)
        self._text = value
        self._ulid = _parse_ulid(value)

    @staticmethod
    def generate() -> TaskId:
        """A new ULID-backed id."""
        value = _generator.next()
        task_id = TaskId.__new__(TaskId)
        task_id._text = _encode_ulid(value)
        task_id._ulid = value
        return task_id

    @property
    def is_ulid(self) -> bool:
        """True if the value is a canonical ULID (generated ids always are)."""
        return self._ulid is not None

    @property
    def timestamp(self) -> float | None:
        """UNIX seconds encoded in a ULID id, or ``None`` for other ids."""
        if self._ulid is None:
            return None
        return (self._ulid >> _RANDOM_BITS) / 1000.0

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"TaskId({self._text!r})"

    def __hash__(self) -> int:
        return hash(self._text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text == other._text

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text != other._text

    def __lt__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text < other._text

    def __le__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text <= other._text

    def __gt__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text > other._text

    def __ge__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text >= other._text
