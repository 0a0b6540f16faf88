"""The connections of one PostgresStorage: a small pool for statements, one listener.

The pool opens sessions lazily up to ``size`` and drops a session that broke
(the next statement opens a fresh one, so a restarted server is picked up
without ceremony). Each new session is set up once (``synchronous_commit`` off
for the relaxed ones, see :meth:`Connections.connection`,
``statement_timeout``, ``application_name``).

The listener is one more session per storage, kept open by a trio system task
that reconnects with backoff. It ``LISTEN``s on the schema's channel and
turns each notification (payload: a queue name) into a wake-up of that
queue's waiters; it is also where the liveness locks of this process's
worker runs are held (a session-level advisory lock per worker id), so
another process can prove a worker gone once its locks are free: the session
that held them died with its process. After a reconnect, the locks are taken
again and every queue is woken (a notification may have been missed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ..._errors import StorageError
from ._sql import Statements, text

if TYPE_CHECKING:
    from types import ModuleType

    from ._driver import Connection, Notification

__all__ = ["Connections", "SessionSettings"]

logger = logging.getLogger("pyapalis.postgres")

_BACKOFF_FIRST = 0.1
_BACKOFF_MOST = 5.0


def driver() -> ModuleType:
    """The driver module, imported on first use: psycopg is the optional ``postgres`` extra."""
    try:
        from . import _driver
    except ImportError as error:
        raise ImportError(
            "PostgresStorage needs psycopg 3: pip install 'pyapalis[postgres]'"
        ) from error
    return _driver


class SessionSettings:
    """What every session of a storage is set up with."""

    __slots__ = ("connect_timeout", "statement_timeout", "synchronous_commit")

    def __init__(
        self, *, synchronous_commit: bool, statement_timeout: float | None, connect_timeout: float
    ) -> None:
        self.synchronous_commit = synchronous_commit
        self.statement_timeout = statement_timeout
        self.connect_timeout = connect_timeout

    def setup_sql(self, schema: str, *, relaxed: bool = False) -> bytes:
        """How a new session is set up; ``relaxed``: commits never wait for the WAL flush.

        Sessions are named ``pyapalis:<schema>`` in ``pg_stat_activity`` (the
        listener ``pyapalis-listener:<schema>``).
        """
        parts = [f"SET application_name = 'pyapalis:{schema}'"]
        if relaxed:
            parts.append("SET synchronous_commit = off")
        if self.statement_timeout is not None:
            parts.append(f"SET statement_timeout = {max(1, round(self.statement_timeout * 1000))}")
        return ";".join(parts).encode()


class Connections:
    """The pool and the listener of one storage (shared by its queue handles)."""

    def __init__(
        self, dsn: str, statements: Statements, settings: SessionSettings, size: int
    ) -> None:
        self.dsn = dsn
        self.statements = statements
        self.settings = settings
        self._size = size
        self._idle: list[Connection] = []
        self._idle_relaxed: list[Connection] = []  # synchronous_commit off (see connection())
        self._slots = trio.Semaphore(size)
        self._wakes: dict[str, trio.Event] = {}
        self._owners: set[str] = set()
        self._listener: Connection | None = None
        self._listener_ready = trio.Event()
        self._listener_scope: trio.CancelScope | None = None
        self._closed = False

    # -- statements ---------------------------------------------------------------

    @asynccontextmanager
    async def connection(self, *, relaxed: bool = False) -> AsyncIterator[Connection]:
        """A session of the pool for a few statements; a broken one is dropped.

        ``relaxed``: a session whose commits do not wait for the WAL flush,
        for statements whose loss in a *server* crash only makes a task run
        again: a claim (the task goes back to Pending with its claim; the
        worker's later fenced acknowledgement then changes nothing), and the
        workers' acknowledgements when the storage was made with
        ``synchronous_commit=False``. Pushes always use durable sessions. Any
        durable commit flushes the relaxed ones before it: WAL is written in
        order.
        """
        if self._closed:
            raise StorageError("PostgresStorage is closed")
        idle = self._idle_relaxed if relaxed else self._idle
        async with self._slots:
            conn = idle.pop() if idle else None
            if conn is None or conn.closed:
                conn = await self._open(relaxed=relaxed)
            try:
                yield conn
            finally:
                if conn.closed or self._closed:
                    conn.close()
                else:
                    idle.append(conn)

    async def execute(
        self, sql: bytes, params: list[bytes | None], *, relaxed: bool = False
    ) -> list[list[bytes | None]]:
        """One statement on a pooled session (see :meth:`connection` for ``relaxed``)."""
        async with self.connection(relaxed=relaxed) as conn:
            return await conn.execute(sql, params)

    async def _open(self, *, relaxed: bool = False) -> Connection:
        conn: Connection = await driver().connect(self.dsn, timeout=self.settings.connect_timeout)
        try:
            await conn.execute(self.settings.setup_sql(self.statements.schema, relaxed=relaxed))
        except BaseException:
            conn.close()
            raise
        return conn

    # -- wake-ups ---------------------------------------------------------------------

    def wake(self, queue: str) -> None:
        """Wake the waiters of ``queue`` in this process (the trio thread)."""
        event = self._wakes.pop(queue, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        wakes, self._wakes = self._wakes, {}
        for event in wakes.values():
            event.set()

    async def wait_wake(self, queue: str, timeout: float) -> None:
        """Until ``queue`` is woken (here or by a NOTIFY), or ``timeout`` seconds."""
        self.start_listener()
        event = self._wakes.get(queue)
        if event is None:
            event = self._wakes[queue] = trio.Event()
        with trio.move_on_after(timeout):
            await event.wait()

    # -- the listener -----------------------------------------------------------------

    def start_listener(self) -> None:
        """Start the listening session's task (once; it lives until :meth:`close`)."""
        if self._listener_scope is None and not self._closed:
            self._listener_scope = trio.CancelScope()
            trio.lowlevel.spawn_system_task(
                self._listen, self._listener_scope, name="pyapalis.postgres.listener"
            )

    async def listening(self, patience: float) -> None:
        """Start the listener and wait (at most ``patience`` seconds) until it listens.

        A storage that is open hears the pushes made from then on; if the
        listener cannot connect in time, polling stands in until it does.
        """
        self.start_listener()
        with trio.move_on_after(patience):
            await self._listener_ready.wait()

    async def hold_owner(self, owner: str) -> None:
        """Take the liveness lock of worker run ``owner`` on the listening session (once)."""
        if owner in self._owners:
            return
        self.start_listener()
        await self._listener_ready.wait()
        listener = self._listener
        if listener is None or listener.closed:
            raise StorageError("PostgresStorage: the listening session is down")
        await listener.execute(self.statements.lock_owner, [text(self.statements.owner_key(owner))])
        self._owners.add(owner)

    async def drop_owner(self, owner: str) -> None:
        """Release the liveness lock of ``owner`` (its run ended cleanly)."""
        self._owners.discard(owner)
        listener = self._listener
        if listener is not None and not listener.closed:
            await listener.execute(
                self.statements.unlock_owner, [text(self.statements.owner_key(owner))]
            )

    def _notified(self, notification: Notification) -> None:
        self.wake(notification[1])

    async def _listen(self, scope: trio.CancelScope) -> None:
        try:
            await self._listen_until_closed(scope)
        finally:
            # The task ends with its trio run: a later run of this storage starts another.
            if self._listener_scope is scope:
                self._listener_scope = None
                self._owners.clear()  # their locks ended with the session

    async def _listen_until_closed(self, scope: trio.CancelScope) -> None:
        delay = 0.0
        with scope:
            while not self._closed:
                try:
                    conn: Connection = await driver().connect(
                        self.dsn, on_notify=self._notified, timeout=self.settings.connect_timeout
                    )
                except StorageError as error:
                    delay = min(max(delay * 2, _BACKOFF_FIRST), _BACKOFF_MOST)
                    logger.warning(
                        "PostgresStorage: listener cannot connect (%s); again in %s s", error, delay
                    )
                    await trio.sleep(delay)
                    continue
                try:
                    channel = self.statements.channel
                    await conn.execute(
                        f"SET application_name = 'pyapalis-listener:{self.statements.schema}';"
                        f' LISTEN "{channel}"'.encode()
                    )
                    for owner in list(self._owners):
                        await conn.execute(
                            self.statements.lock_owner, [text(self.statements.owner_key(owner))]
                        )
                    self._listener = conn
                    self._listener_ready.set()
                    delay = 0.0
                    # Something may have been pushed while nobody listened.
                    self.wake_all()
                    while True:
                        await conn.wait_for_input()
                except StorageError as error:
                    if self._closed:
                        return
                    logger.warning(
                        "PostgresStorage: listener lost its session (%s); reconnecting", error
                    )
                finally:
                    self._listener = None
                    self._listener_ready = trio.Event()
                    conn.close()
                delay = min(max(delay * 2, _BACKOFF_FIRST), _BACKOFF_MOST)
                await trio.sleep(delay)

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Close every session (idempotent, never blocks); waiters are woken."""
        self._closed = True
        if self._listener_scope is not None:
            self._listener_scope.cancel()
        if self._listener is not None:
            self._listener.close()
        for conn in (*self._idle, *self._idle_relaxed):
            conn.close()
        self._idle.clear()
        self._idle_relaxed.clear()
        self.wake_all()

    @property
    def closed(self) -> bool:
        return self._closed
