"""The coredis client of one trio run, with Redis failures turned into StorageError.

coredis runs on trio through anyio, but its client owns a task group, which
must be entered and left in one task of one trio run. So each trio run gets
one client per server URL (:func:`acquire`), held open by a trio *system*
task of that run: any task may acquire and release it (a storage opened in
a fixture and closed in a test, a worker's session), every handle of a run
shares its connections, and the client closes when the last holder releases
it or the run ends. The synchronous producer's thread is a run of its own,
with its own client.

Faults: every failure of the server or the connection (refused, reset, a
restart, a timeout, an error reply) is raised as
:class:`~pyapalis.StorageError` naming the operation and the server, so the
session machinery backs off and tries again; coredis reconnects on the next
command. Scripts are called by SHA; a server that answers NOSCRIPT (it was
restarted, or someone ran ``SCRIPT FLUSH``) gets the script sent again once,
transparently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import trio

from ..._errors import StorageError
from .._kit._clock import run_clock
from ._scripts import Script

__all__ = ["RedisClient", "acquire", "redacted", "release"]

logger = logging.getLogger("pyapalis.redis")

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

    __slots__ = (
        "_busy",
        "_client",
        "_errors",
        "_in_flight",
        "_no_script",
        "_options",
        "_url",
        "_where",
        "virtual",
    )

    def __init__(self, url: str, *, virtual: bool = False, **options: Any) -> None:
        coredis = _coredis()
        import anyio  # coredis's own dependency: there whenever coredis is

        self._url = url
        self.virtual = virtual
        """Under a virtual clock, round trips keep the run busy (see :meth:`keep_busy`)."""
        self._in_flight = 0
        self._busy = trio.Event()
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
    def where(self) -> str:
        """The server's URL, password hidden."""
        return self._where

    @property
    def raw(self) -> Any:
        """The coredis client (raises StorageError once closed)."""
        if self._client is None:
            raise StorageError(f"RedisStorage({self._where}) is not open")
        return self._client

    async def call(
        self, what: str, operation: Callable[[Any], Awaitable[T]], *, idle: bool = False
    ) -> T:
        """``await operation(client)``, a Redis failure raised as StorageError naming ``what``.

        ``idle``: the operation is a wait the clock may skip (a blocking pop),
        not a round trip.
        """
        client = self.raw
        busy = self.virtual and not idle
        if busy:
            self._in_flight += 1
            self._busy.set()
        try:
            return await operation(client)
        except self._errors as error:
            raise StorageError(
                f"RedisStorage({self._where}): {what} failed: {type(error).__name__}: {error}"
            ) from error
        finally:
            if busy:
                self._in_flight -= 1

    async def keep_busy(self) -> None:
        """Under a virtual clock: keep the run runnable while a round trip is in flight.

        trio's autojump clock takes a wait for I/O for idleness and would leap
        to the next deadline (a lease, a timeout) during every round trip,
        turning a reply that takes a millisecond into one that took minutes.
        While a round trip is in flight this task checkpoints in a loop, so the
        clock moves only when the run is idle for real. Tests only.
        """
        while True:
            if self._in_flight:
                await trio.lowlevel.checkpoint()
            else:
                self._busy = trio.Event()
                await self._busy.wait()

    async def run(self, script: Script, key: str, args: Sequence[Any]) -> Any:
        """Run ``script`` by SHA with ``KEYS = [key]``; sent again once on NOSCRIPT."""

        async def evalsha(client: Any) -> Any:
            try:
                return await client.evalsha(script.sha, keys=[key], args=args)
            except self._no_script:
                await client.script_load(script.source)
                return await client.evalsha(script.sha, keys=[key], args=args)

        return await self.call(f"script {script.name}", evalsha)


@dataclass(slots=True)
class _Held:
    """A run's client for one URL and who holds it."""

    client: RedisClient
    users: int = 0
    ready: trio.Event = field(default_factory=trio.Event)
    stop: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    failure: BaseException | None = None


_CLIENTS: trio.lowlevel.RunVar[dict[tuple[str, tuple[tuple[str, Any], ...]], _Held]] = (
    trio.lowlevel.RunVar("pyapalis_redis_clients")
)


def _clients() -> dict[tuple[str, tuple[tuple[str, Any], ...]], _Held]:
    try:
        return _CLIENTS.get()
    except LookupError:
        clients: dict[tuple[str, tuple[tuple[str, Any], ...]], _Held] = {}
        _CLIENTS.set(clients)
        return clients


async def _hold(held: _Held) -> None:
    """The system task that keeps a run's client open until asked to stop (or the run ends)."""
    try:
        async with held.client, trio.open_nursery() as nursery:
            if held.client.virtual:
                nursery.start_soon(held.client.keep_busy)
            held.ready.set()
            await held.stop.wait()
            nursery.cancel_scope.cancel()
    except trio.Cancelled:
        raise
    except BaseException as error:  # a system task must not raise: report it to acquirers
        held.failure = error
        logger.debug("redis client for %s ended: %r", held.client.where, error)
    finally:
        held.ready.set()
        held.done.set()


async def acquire(url: str, **options: Any) -> RedisClient:
    """The current run's client for ``url`` (opened on first use); pair with :func:`release`."""
    clients = _clients()
    key = (url, tuple(sorted(options.items())))
    held = clients.get(key)
    if held is None or held.stop.is_set():
        held = clients[key] = _Held(RedisClient(url, virtual=run_clock().virtual, **options))
        trio.lowlevel.spawn_system_task(_hold, held, name=f"pyapalis redis client {redacted(url)}")
    held.users += 1
    await held.ready.wait()
    if held.failure is not None or held.done.is_set():
        held.users -= 1
        if clients.get(key) is held:
            del clients[key]
        raise StorageError(
            f"RedisStorage({redacted(url)}): cannot open a client: {held.failure!r}"
        ) from held.failure
    return held.client


async def release(url: str, **options: Any) -> None:
    """Give back a client :func:`acquire` returned; the last holder closes it."""
    clients = _clients()
    key = (url, tuple(sorted(options.items())))
    held = clients.get(key)
    if held is None:
        return
    held.users -= 1
    if held.users <= 0:
        del clients[key]
        held.stop.set()
        with trio.CancelScope(shield=True):
            await held.done.wait()
