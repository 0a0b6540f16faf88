r"""One SQLite connection used from trio without blocking it, and the wake-ups around it.

:class:`Database` owns a ``sqlite3`` connection in WAL mode and runs every
call on a worker thread, one at a time (a ``CapacityLimiter(1)``), or inline
under a virtual clock (so ``autojump_clock`` does not take the thread's wait
for idleness). Every ``sqlite3`` error leaves it as a :class:`StorageError`
that names the file and the problem (not a database, locked past the busy
timeout, disk full).

Wake-ups: each Database has two :class:`Hub`\ s, ``work`` (a task may have
become due: a push, a retry, a hand-back, a recovery) for idle workers and
``results`` (a task finished) for ``wait_for``. A commit pokes the matching
hubs of every Database on the same file in this process at once
(:func:`notify`), across trio runs and threads, so an idle worker is not
woken by every ack of a busy one; other processes are noticed through
``PRAGMA data_version``, which changes when another connection commits
(polled every :data:`DATA_VERSION_POLL` seconds while someone waits).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

import trio

from ..._errors import StorageError
from .._kit._clock import run_clock
from ._schema import migrate

__all__ = ["DATA_VERSION_POLL", "SYNCHRONOUS", "Database", "Hub", "notify", "storage_error"]

T = TypeVar("T")

DATA_VERSION_POLL = 0.01
"""Seconds between two reads of ``PRAGMA data_version`` while a worker or a waiter is idle."""

SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")


def storage_error(path: str, action: str, error: BaseException) -> StorageError:
    """A StorageError naming the file, what was being done, and the problem in words."""
    text = str(error)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        problem = f"the file is not a SQLite database, or it is corrupt ({text})"
    elif "locked" in lowered or "busy" in lowered:
        problem = f"the database stayed locked by another connection past the busy timeout ({text})"
    elif "full" in lowered:
        problem = f"the disk is full ({text})"
    else:
        problem = f"{type(error).__name__}: {text}"
    return StorageError(f"SqliteStorage {path}: {action}: {problem}")


class Hub:
    """Wake-ups for one Database: a generation counter and an event, on one trio run."""

    __slots__ = ("__weakref__", "event", "generation", "token")

    def __init__(self) -> None:
        self.generation = 0
        self.event = trio.Event()
        self.token: trio.lowlevel.TrioToken | None = None

    def poke(self) -> None:
        """Something changed: wake every waiter (on the hub's trio thread)."""
        self.generation += 1
        event, self.event = self.event, trio.Event()
        event.set()


_DATABASES: dict[str, weakref.WeakSet[Database]] = {}
_DATABASES_LOCK = threading.Lock()


def _register(database: Database) -> None:
    with _DATABASES_LOCK:
        _DATABASES.setdefault(database.key, weakref.WeakSet()).add(database)


def notify(key: str, *, work: bool = False, results: bool = False) -> None:
    """Poke the ``work`` and/or ``results`` hubs of every Database on the file ``key``.

    Callable from any thread; a hub waiting in another trio run is poked there.
    """
    with _DATABASES_LOCK:
        databases = list(_DATABASES.get(key, ()))
    hubs = [database.work for database in databases] if work else []
    if results:
        hubs += [database.results for database in databases]
    try:
        current: trio.lowlevel.TrioToken | None = trio.lowlevel.current_trio_token()
    except RuntimeError:
        current = None
    for hub in hubs:
        token = hub.token
        if token is None:
            continue
        if token is current:
            hub.poke()
        else:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(hub.poke)


class Database:
    """A SQLite file opened once (WAL, the schema migrated), used by one or more handles."""

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.key = os.path.realpath(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.work = Hub()
        self.results = Hub()
        self.data_version = 0
        self._connection: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._opening = trio.Lock()
        self._users = 0
        self._closed = False
        self._local = threading.local()  # push_sync's connection per thread
        self._sync_connections: list[sqlite3.Connection] = []
        self._sync_lock = threading.Lock()

    # -- life --------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    def acquire(self) -> None:
        """One more handle uses this Database (``queue()`` handles)."""
        self._users += 1

    def release(self) -> bool:
        """A handle is done; True (and the file closed) when it was the last."""
        self._users -= 1
        if self._users <= 0:
            self.close()
            return True
        return False

    async def open(self) -> None:
        """Open the file (created 0600), WAL, ``synchronous``, schema (idempotent)."""
        if self._closed:
            raise StorageError(f"SqliteStorage {self.path}: the storage is closed")
        async with self._opening:
            if self._connection is not None:
                return
            token = trio.lowlevel.current_trio_token()
            for hub in (self.work, self.results):
                if hub.token is None:
                    hub.token = token
            connection = await self._off_thread(self._connect, self.path)
            self._connection = connection
            _register(self)

    def _connect(self, path: str) -> sqlite3.Connection:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as error:
            raise storage_error(path, "opening the file", error) from error
        return self.connect(path, migrate_schema=True)

    def connect(self, path: str, *, migrate_schema: bool = False) -> sqlite3.Connection:
        """A new configured connection to the file (blocking)."""
        try:
            connection = sqlite3.connect(
                path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise storage_error(path, "opening the file", error) from error
        try:
            self._enter_wal(connection)
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            if migrate_schema:
                migrate(connection, path)
        except sqlite3.Error as error:
            connection.close()
            raise storage_error(path, "opening the file", error) from error
        except BaseException:
            connection.close()
            raise
        return connection

    def _enter_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL, waiting up to the busy timeout for another opener.

        Changing the journal mode needs the file to itself, and SQLite answers
        "database is locked" at once, without its busy handler, while another
        connection is creating or migrating a fresh file in the same instant
        (two processes or threads opening one new file). Retried here until
        ``busy_timeout``, as every other statement waits.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                busy = error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(0.002)

    def close(self) -> None:
        """Close the connections (idempotent; a thread still running finishes first)."""
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        with self._sync_lock:
            for sync in self._sync_connections:
                sync.close()
            self._sync_connections.clear()

    # -- calls -------------------------------------------------------------------

    async def run(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` off the trio thread, one call at a time; errors as StorageError."""
        if self._connection is None:
            await self.open()
        return await self._off_thread(self._call, action, fn)

    def _call(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        if connection is None:
            raise StorageError(f"SqliteStorage {self.path}: the storage is closed")
        try:
            return fn(connection)
        except sqlite3.Error as error:
            _rollback(connection)
            raise storage_error(self.path, action, error) from error

    async def _off_thread(self, fn: Callable[..., T], *args: object) -> T:
        if run_clock().virtual:
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def run_sync(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on this thread's own connection (for producers outside trio)."""
        if self._closed:
            raise StorageError(f"SqliteStorage {self.path}: the storage is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self._connect_file_only()
            connection = self.connect(self.path, migrate_schema=True)
            self._local.connection = connection
            with self._sync_lock:
                self._sync_connections.append(connection)
        try:
            return fn(connection)
        except sqlite3.Error as error:
            _rollback(connection)
            raise storage_error(self.path, action, error) from error

    def _connect_file_only(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as error:
            raise storage_error(self.path, "opening the file", error) from error

    # -- wake-ups ------------------------------------------------------------------

    async def changed_since(
        self, hub: Hub, generation: int, data_version: int, timeout: float
    ) -> None:
        """Return once ``hub`` moved past ``generation`` or another connection committed
        (``data_version`` differs), or after ``timeout`` seconds."""
        token = trio.lowlevel.current_trio_token()
        if hub.token is not token:  # used from a new trio run: wake-ups go there now
            hub.token = token
            hub.event = trio.Event()
        # Under a virtual clock another process cannot be timed anyway, and
        # polling every 10 virtual ms would make a long idle test crawl: the
        # hub (this process's commits) and the timeout stay.
        step = timeout if run_clock().virtual else DATA_VERSION_POLL
        with trio.move_on_after(timeout):
            while hub.generation == generation:
                with trio.move_on_after(step):
                    await hub.event.wait()
                    return
                if await self.read_data_version() != data_version:
                    return

    async def read_data_version(self) -> int:
        version: int = await self.run(
            "reading data_version",
            lambda connection: connection.execute("PRAGMA data_version").fetchone()[0],
        )
        return version


def _rollback(connection: sqlite3.Connection) -> None:
    """Undo a transaction a failed call left open (a rollback that fails changes nothing)."""
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
