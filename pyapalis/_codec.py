"""How persistent backends turn task arguments and results into bytes.

No pickle anywhere: a task store must not be a code-execution channel, so the
default codec is JSON (orjson), which can only ever produce plain data.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import orjson

from ._errors import CodecError

__all__ = ["Codec", "JsonCodec"]


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
    """

    __slots__ = ("_default", "_option")

    def __init__(self, default: Any = None, *, sort_keys: bool = False) -> None:
        self._default = default
        self._option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_SORT_KEYS if sort_keys else 0)

    def encode(self, value: Any) -> bytes:
        try:
            return orjson.dumps(value, default=self._default, option=self._option)
        except TypeError as error:  # orjson.JSONEncodeError is a TypeError
            raise CodecError(
                f"JsonCodec cannot encode {type(value).__name__} value {_short(value)}: {error}"
            ) from error

    def decode(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise CodecError(f"JsonCodec cannot decode {_short(data)}: {error}") from error

    def __repr__(self) -> str:
        return "JsonCodec()"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
