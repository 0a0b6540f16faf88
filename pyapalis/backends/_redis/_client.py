"""The coredis client of one trio run, with Redis failures turned into StorageError.

coredis runs on trio through anyio, but its client owns a task group: it is
entered and left in one task of one trio run (``async with RedisClient(...)``).
A :class:`RedisStorage` opens one for the run that opens it; the synchronous
producer opens its own in its own thread's run.

Faults: every failure of the server or the connection (refused, reset, a
restart, a timeout, an error reply) is raised as
:class:`~pyapalis.StorageError` naming the operation and the server, so the
session machinery backs off and tries again; coredis reconnects on the next
command. Scripts are called by SHA; a server that answers NOSCRIPT (it was
restarted, or someone ran ``SCRIPT FLUSH``) gets the script sent again once,
transparently.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ..._errors import StorageError
from ._scripts import Script

__all__ = ["RedisClient", "redacted"]

T = TypeVar("T")

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redacted(url: str) -> str:
    """``url`` without its password, for messages and reprs."""
    return _PASSWORD.sub(r"\1***@", url)


def _coredis() -> Any:
    """coredis, imported lazily (the ``redis`` extra)."""
    try:
        import coredis
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("RedisStorage needs coredis: pip install 'pyapalis[redis]'") from error
    return coredis


class RedisClient:
    """One coredis client, entered and left in one task of one trio run."""

    __slots__ = ("_client", "_errors", "_no_script", "_options", "_url", "_where")

    def __init__(self, url: str, **options: Any) -> None:
        coredis = _coredis()
        import anyio  # coredis's own dependency: there whenever coredis is

        self._url = url
        self._where = redacted(url)
        self._options = options
        self._client: Any = None
        exceptions = coredis.exceptions
        self._no_script: type[BaseException] = exceptions.NoScriptError
        self._errors: tuple[type[BaseException], ...] = (
            exceptions.RedisError,
            OSError,  # refused, reset, timeouts (TimeoutError is an OSError)
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
        )

    async def __aenter__(self) -> RedisClient:
        coredis = _coredis()
        try:
            client = coredis.Redis.from_url(self._url, decode_responses=False, **self._options)
        except ValueError as error:
            raise ValueError(f"RedisStorage: bad url {self._where!r}: {error}") from error
        await client.__aenter__()
        self._client = client
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(exc_type, exc, tb)

    @property
    def raw(self) -> Any:
        """The coredis client (raises StorageError once closed)."""
        if self._client is None:
            raise StorageError(f"RedisStorage({self._where}) is not open")
        return self._client

    async def call(self, what: str, operation: Callable[[Any], Awaitable[T]]) -> T:
        """``await operation(client)``, a Redis failure raised as StorageError naming ``what``."""
        client = self.raw
        try:
            return await operation(client)
        except self._errors as error:
            raise StorageError(
                f"RedisStorage({self._where}): {what} failed: {type(error).__name__}: {error}"
            ) from error

    async def run(self, script: Script, key: str, args: Sequence[Any]) -> Any:
        """Run ``script`` by SHA with ``KEYS = [key]``; sent again once on NOSCRIPT."""

        async def evalsha(client: Any) -> Any:
            try:
                return await client.evalsha(script.sha, keys=[key], args=args)
            except self._no_script:
                await client.script_load(script.source)
                return await client.evalsha(script.sha, keys=[key], args=args)

        return await self.call(f"script {script.name}", evalsha)
