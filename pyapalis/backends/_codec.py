"""How persistent backends turn task arguments and results into bytes.

No pickle anywhere: a task store must not be a code-execution channel, so the
default codec is JSON (orjson), which can only ever produce plain data.

JSON has no NaN or Infinity, and orjson writes them as ``null``: a stored
``{"price": nan}`` would come back ``{"price": None}``. The codec refuses them
instead (:func:`non_finite`), and stays fast for values without them: a NaN
can only appear in orjson's output as ``null``, so the value is searched only
when the output holds one.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import sys
import uuid
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import orjson

from .._errors import CodecError

__all__ = ["Codec", "JsonCodec", "dumps_finite", "non_finite", "non_finite_message"]


@runtime_checkable
class Codec(Protocol):
    """Turns a value into bytes and back; both directions raise :class:`CodecError`."""

    def encode(self, value: Any) -> bytes:
        """The bytes that represent ``value``."""

    def decode(self, data: bytes) -> Any:
        """The value ``data`` represents."""


class JsonCodec:
    """JSON through orjson: dataclasses, datetimes, UUIDs, enums and numpy-free plain data.

    ``default`` (optional) converts objects orjson cannot, as ``orjson.dumps``'s
    ``default`` does. Decoding yields plain JSON types (dict, list, str, ...).
    NaN and ±Infinity (also in numpy arrays, or returned by ``default``) raise
    :class:`CodecError` naming where they are (``$["prices"][2]``): JSON cannot
    hold them, and orjson would store ``null`` in their place.
    """

    __slots__ = ("_default", "_option")

    def __init__(self, default: Any = None, *, sort_keys: bool = False) -> None:
        self._default = default
        self._option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_SORT_KEYS if sort_keys else 0)

    def encode(self, value: Any) -> bytes:
        try:
            data = orjson.dumps(value, default=self._default, option=self._option)
        except TypeError as error:  # orjson.JSONEncodeError is a TypeError
            raise CodecError(
                f"JsonCodec cannot encode {type(value).__name__} value {_short(value)}: {error}"
            ) from error
        if b"null" in data:
            found = non_finite(value, default=self._default)
            if found is not None:
                raise CodecError(
                    f"JsonCodec cannot encode {type(value).__name__} value {_short(value)}: "
                    f"{non_finite_message(found)}"
                )
        return data

    def decode(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise CodecError(f"JsonCodec cannot decode {_short(data)}: {error}") from error

    def __repr__(self) -> str:
        return "JsonCodec()"


def dumps_finite(value: Any, *, option: int = 0, root: str = "$") -> bytes:
    """``orjson.dumps(value, option=option)``, refusing NaN and ±Infinity.

    Raises ``TypeError`` (orjson's) for a value orjson cannot encode, and
    :class:`CodecError` naming the path of a non-finite float (under ``root``).
    """
    data = orjson.dumps(value, option=option)
    if b"null" in data:
        found = non_finite(value, root=root)
        if found is not None:
            raise CodecError(non_finite_message(found))
    return data


def non_finite(
    value: Any, *, default: Callable[[Any], Any] | None = None, root: str = "$"
) -> tuple[str, float] | None:
    """The path and value of the first NaN or ±Infinity orjson would write as ``null``.

    None if there is none. Walks ``value`` as orjson serializes it: dicts and
    their subclasses, lists and their subclasses, tuples, enums (their value),
    dataclasses (the attributes orjson writes), numpy floats and arrays, and
    what ``default`` returns for anything else. Paths read like JSONPath:
    ``$["items"][0].price``.
    """
    numpy = sys.modules.get("numpy")
    return _walk(value, root, default, numpy)


def non_finite_message(found: tuple[str, float]) -> str:
    """``nan at $["price"] is not a finite number ...``: what :func:`non_finite` found."""
    path, number = found
    return f"{number!r} at {path} is not a finite number (JSON has no NaN or Infinity)"


_PLAIN = (str, int, datetime.date, datetime.time, uuid.UUID, orjson.Fragment)


def _walk(
    value: Any, path: str, default: Callable[[Any], Any] | None, numpy: Any
) -> tuple[str, float] | None:
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else (path, value)
    if value is None or kind is str or kind is int or kind is bool:
        return None
    if kind is dict or isinstance(value, dict):
        for key, item in value.items():
            found = _walk(item, f"{path}[{_key(key)}]", default, numpy)
            if found is not None:
                return found
        return None
    if kind is list or kind is tuple or isinstance(value, list):
        for index, item in enumerate(value):
            found = _walk(item, f"{path}[{index}]", default, numpy)
            if found is not None:
                return found
        return None
    if isinstance(value, enum.Enum):
        return _walk(value.value, path, default, numpy)
    if isinstance(value, _PLAIN):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for name, item in _dataclass_items(value):
            found = _walk(item, f"{path}.{name}", default, numpy)
            if found is not None:
                return found
        return None
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return _numpy(value, path, numpy)
    if default is not None:
        try:
            converted = default(value)
        except Exception:
            return None  # orjson got a value from it: nothing more to learn here
        return _walk(converted, path, default, numpy)
    return None


def _dataclass_items(value: Any) -> list[tuple[str, Any]]:
    """The attributes orjson writes for a dataclass instance, by name."""
    attributes = getattr(value, "__dict__", None)
    if attributes is not None:
        return [(name, item) for name, item in attributes.items() if not name.startswith("_")]
    missing = object()
    items = []
    for field in dataclasses.fields(value):
        if field.name.startswith("_"):
            continue
        item = getattr(value, field.name, missing)
        if item is not missing:
            items.append((field.name, item))
    return items


def _numpy(value: Any, path: str, numpy: Any) -> tuple[str, float] | None:
    if isinstance(value, numpy.ndarray):
        if value.dtype.kind != "f" or value.size == 0:
            return None
        bad = numpy.argwhere(~numpy.isfinite(value))
        if not len(bad):
            return None
        index = "".join(f"[{int(i)}]" for i in bad[0])
        return (f"{path}{index}", float(value[tuple(bad[0])]))
    if isinstance(value, numpy.floating):
        number = float(value)
        return None if math.isfinite(number) else (path, number)
    return None


def _key(key: Any) -> str:
    if isinstance(key, str):
        return orjson.dumps(key).decode()
    return repr(key)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
