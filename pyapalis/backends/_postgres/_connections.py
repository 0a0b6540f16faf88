"""The connections of one PostgresStorage: a small pool for statements, a shared listener.

The pool opens sessions lazily up to ``size`` and drops a session that broke
(the next statement opens a fresh one, so a restarted server is picked up
without ceremony). An idle session is checked before reuse, without a round
trip (:meth:`~._driver.Connection.usable`): one the server ended while it idled
is replaced, so the first statements after a server restart do not fail on the
sessions that idled through it. Each new session is set up once
(``synchronous_commit`` off for the relaxed ones, see
:meth:`Connections.connection`, ``statement_timeout``, ``application_name``).

The listening session is not the storage's own: every storage of this trio
run on the same server (DSN and schema) shares one (see :mod:`._listener`),
joined on first need and left by :meth:`Connections.close`. It turns
notifications into wake-ups of this storage's queues (:meth:`Connections.wake`)
and holds the liveness locks of the worker runs of this storage
(:meth:`Connections.hold_owner`), which are released when the storage closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ..._errors import StorageError
from ._listener import Listener, ListenerStatistics
from ._sql import Statements

if TYPE_CHECKING:
    from types import ModuleType

    from ._driver import Connection

__all__ = ["Connections", "SessionSettings"]


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
        self._owners: set[str] = set()  # the liveness locks this storage holds
        self._holding = trio.Lock()
        self._listener: Listener | None = None
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
            conn = None
            while idle:
                conn = idle.pop()
                if conn.usable():
                    break
                conn.close()  # ended by the server while idle (e.g. it restarted)
                conn = None
            if conn is None:
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

    # -- the shared listener ----------------------------------------------------------

    def start_listener(self) -> Listener | None:
        """Join this run's listener for the server (once; until :meth:`close`).

        None once closed. A listener of another trio run (one that ended, or
        one this storage was used in before) is left for this run's: the
        liveness locks held there end there.
        """
        if self._closed:
            return None
        listener = self._listener
        if listener is not None and not listener.closed and not listener.of_this_run():
            # Used from another trio run now: its wake-ups must come from this one.
            listener.leave(self, self._owners)
            listener = None
        if listener is None or listener.closed:
            self._owners.clear()
            listener = self._listener = Listener.join(
                self, self.dsn, self.statements, self.settings.connect_timeout
            )
        return listener

    def listener_statistics(self) -> ListenerStatistics | None:
        """The shared listener's statistics, or None while this storage has none."""
        listener = self._listener
        return None if listener is None or listener.closed else listener.statistics()

    async def listening(self, patience: float) -> None:
        """Join the listener and wait (at most ``patience`` seconds) until it listens.

        A storage that is open hears the pushes made from then on; if the
        listener cannot connect in time, polling stands in until it does.
        """
        listener = self.start_listener()
        if listener is not None:
            with trio.move_on_after(patience):
                await listener.wait_listening()

    async def hold_owner(self, owner: str) -> None:
        """Take the liveness lock of worker run ``owner`` on the listening session (once)."""
        if owner in self._owners:
            return  # without the lock: a held owner never waits for another's hold
        async with self._holding:  # one hold per owner, however many ask at once
            if owner in self._owners:
                return
            listener = self.start_listener()
            if listener is None:
                raise StorageError("PostgresStorage is closed")
            await listener.hold(owner)
            if self._listener is listener and not listener.closed:
                self._owners.add(owner)
            else:  # closed meanwhile: the lock went with the listener's session
                raise StorageError("PostgresStorage: the listening session is down")

    async def drop_owner(self, owner: str) -> None:
        """Release the liveness lock of ``owner`` (its run ended cleanly)."""
        if owner not in self._owners:
            return
        self._owners.discard(owner)
        listener = self._listener
        if listener is not None and not listener.closed:
            await listener.drop(owner)

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Close every session (idempotent, never blocks); waiters are woken."""
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.leave(self, self._owners)
        self._owners.clear()
        for conn in (*self._idle, *self._idle_relaxed):
            conn.close()
        self._idle.clear()
        self._idle_relaxed.clear()
        self.wake_all()

    @property
    def closed(self) -> bool:
        return self._closed
