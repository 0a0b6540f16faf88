"""The listening session shared by every PostgresStorage of one trio run on one server.

A ``LISTEN`` session is one server connection that mostly idles, and a
process often holds several storages on the same database (one per queue
built separately, a ``WorkerPool`` of several, a web app's storage beside its
workers'). So storages on the same server — the same DSN and schema, hence
the same channel and the same liveness-lock keys — share one
:class:`Listener`, refcounted: the first storage that needs it opens it, the
last one to close closes it.

**One listener per trio run**, keyed by the run's :class:`trio.lowlevel.TrioToken`
(with the DSN and schema). The listener's session is driven by trio waiting on
its socket, and a storage's wake-ups are :class:`trio.Event` objects: both
belong to one run. A process normally has one run, hence one listener per
server. Storages in other trio runs (threads, e.g. ``start_in_thread``) get a
listener of their own run: one more session per run, and no wake-up ever
crosses threads. The alternative — one process-wide listener thread waking
each run through its token — would save those sessions at the cost of a thread
per process and a cross-thread hop on every notification; runs per process
are few, so the simpler rule wins. The registry itself is guarded by a lock,
and a storage closed from another thread leaves its listener through the
run's token (:meth:`Listener.leave`).

The listener is a trio system task: it connects, ``LISTEN``s on the schema's
channel, and turns each notification (payload: a queue name) into a wake-up of
that queue in every subscribed storage. It reconnects with backoff (0.1 s
doubling to 5 s) when its session is lost; after each connect it wakes every
queue of every subscriber (a notification may have been missed meanwhile), and
polling backs it up throughout, so a lost notification only delays. It also
holds the **liveness locks** of this run's worker runs (a session-level
advisory lock per worker id, counted, so two storages holding the same id take
it once): another process proves a worker gone once its lock is free, which
happens when the session that held it died with its process. After a
reconnect the locks are taken again; a storage that leaves releases the locks
it still held. The listener ends when its last subscriber leaves, or with its
trio run (a later run starts another).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from ..._errors import StorageError
from ._sql import Statements, text

if TYPE_CHECKING:
    from ._driver import Connection, Notification

__all__ = ["Listener", "ListenerStatistics", "Subscriber"]

logger = logging.getLogger("pyapalis.postgres")

_BACKOFF_FIRST = 0.1
_BACKOFF_MOST = 5.0

_Key = tuple[trio.lowlevel.TrioToken, str, str]  # (run, DSN, schema)
_registry: dict[_Key, Listener] = {}
_registry_lock = threading.Lock()  # runs on other threads join and leave too


class Subscriber(Protocol):
    """What a listener wakes: the connections of one storage."""

    def wake(self, queue: str) -> None:
        """Wake this storage's waiters of ``queue``."""

    def wake_all(self) -> None:
        """Wake every waiter of this storage (a notification may have been missed)."""


@dataclass(frozen=True, slots=True)
class ListenerStatistics:
    """A snapshot of a :class:`Listener`.

    ``subscribers``: storages sharing it; ``owners``: liveness locks held;
    ``connects``: sessions opened so far (1 + reconnects); ``notifications``:
    notifications received; ``listening``: whether a session listens now;
    ``backend_pid``: the server process of that session (None while down).
    """

    subscribers: int
    owners: int
    connects: int
    notifications: int
    listening: bool
    backend_pid: int | None


class Listener:
    """The listening session of one (trio run, DSN, schema); see the module docstring."""

    def __init__(self, key: _Key, dsn: str, statements: Statements, connect_timeout: float) -> None:
        self._key = key
        self._dsn = dsn
        self._statements = statements
        self._connect_timeout = connect_timeout
        self._subscribers: dict[Subscriber, None] = {}  # insertion-ordered set
        self._owners: collections.Counter[str] = collections.Counter()
        self._conn: Connection | None = None
        self._ready = trio.Event()
        self._holding = trio.Lock()
        self._scope = trio.CancelScope()
        self._closed = False
        self._connects = 0
        self._notifications = 0

    # -- joining and leaving -----------------------------------------------------------

    @classmethod
    def join(
        cls, subscriber: Subscriber, dsn: str, statements: Statements, connect_timeout: float
    ) -> Listener:
        """The listener of this trio run for ``dsn`` and the schema, ``subscriber`` added.

        Opens it (starts its task) when this run has none yet.
        """
        token = trio.lowlevel.current_trio_token()
        key = (token, dsn, statements.schema)
        with _registry_lock:
            listener = _registry.get(key)
            fresh = listener is None or listener._closed
            if fresh:
                listener = _registry[key] = cls(key, dsn, statements, connect_timeout)
        assert listener is not None
        listener._subscribers[subscriber] = None
        if fresh:
            trio.lowlevel.spawn_system_task(
                listener._run, name=f"pyapalis.postgres.listener:{statements.schema}"
            )
        return listener

    def leave(self, subscriber: Subscriber, owners: Iterable[str]) -> None:
        """``subscriber`` leaves (never blocks; from any thread), releasing ``owners``' locks.

        The last subscriber to leave closes the listener. From another
        thread, the leaving happens on the listener's run (through its token);
        if that run has ended, so has the listener.
        """
        owners = list(owners)
        try:
            here = trio.lowlevel.current_trio_token()
        except RuntimeError:
            here = None
        if here is self._key[0]:
            self._leave(subscriber, owners)
            return
        with contextlib.suppress(trio.RunFinishedError):  # the listener ended with its run
            self._key[0].run_sync_soon(self._leave, subscriber, owners)

    def _leave(self, subscriber: Subscriber, owners: list[str]) -> None:
        if subscriber not in self._subscribers:
            return  # no longer one (the listener ended, or it left already)
        del self._subscribers[subscriber]
        if not self._subscribers:
            self._close()
            return
        released = [owner for owner in owners if self._forget(owner)]
        if released and self._conn is not None:
            trio.lowlevel.spawn_system_task(
                self._unlock_all, released, name="pyapalis.postgres.listener.unlock"
            )

    def of_this_run(self) -> bool:
        """Whether the calling thread runs this listener's trio run."""
        try:
            return trio.lowlevel.current_trio_token() is self._key[0]
        except RuntimeError:
            return False

    @property
    def closed(self) -> bool:
        """True once the listener ended (its last subscriber left, or its run ended)."""
        return self._closed

    def statistics(self) -> ListenerStatistics:
        conn = self._conn
        return ListenerStatistics(
            subscribers=len(self._subscribers),
            owners=len(self._owners),
            connects=self._connects,
            notifications=self._notifications,
            listening=conn is not None and not conn.closed,
            backend_pid=None if conn is None or conn.closed else conn.backend_pid,
        )

    # -- listening and liveness locks ---------------------------------------------------

    async def wait_listening(self) -> None:
        """Until a session listens (returns at once if one does)."""
        while not self._closed and (self._conn is None or self._conn.closed):
            await self._ready.wait()

    async def hold(self, owner: str) -> None:
        """Take the liveness lock of worker run ``owner`` (counted: taken once per id).

        Waits until the listener has a session. Raises :class:`StorageError`
        when the session is lost meanwhile (the caller retries with backoff).
        """
        if self._owners[owner]:
            self._owners[owner] += 1
            return
        async with self._holding:  # a second hold of an id waits for the first
            if self._owners[owner]:
                self._owners[owner] += 1
                return
            await self.wait_listening()
            conn = self._conn
            if self._closed or conn is None or conn.closed:
                raise StorageError("PostgresStorage: the listening session is down")
            await conn.execute(self._statements.lock_owner, [self._owner_key(owner)])
            # Counted only once taken: a session lost meanwhile never held it, and
            # a reconnect takes again exactly the counted ones.
            self._owners[owner] += 1

    async def drop(self, owner: str) -> None:
        """Release one hold of ``owner``'s liveness lock (its run ended cleanly)."""
        if self._forget(owner):
            await self._unlock(owner)

    def _forget(self, owner: str) -> bool:
        """Count one hold of ``owner`` less; True when that was its last."""
        if not self._owners[owner]:
            self._owners.pop(owner, None)
            return False
        self._owners[owner] -= 1
        if self._owners[owner]:
            return False
        del self._owners[owner]
        return True

    async def _unlock(self, owner: str) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            await conn.execute(self._statements.unlock_owner, [self._owner_key(owner)])

    async def _unlock_all(self, owners: list[str]) -> None:
        try:
            for owner in owners:
                await self._unlock(owner)
        except StorageError:
            return  # the session is gone, and its locks with it

    def _owner_key(self, owner: str) -> bytes | None:
        return text(self._statements.owner_key(owner))

    def _notified(self, notification: Notification) -> None:
        self._notifications += 1
        queue = notification[1]
        for subscriber in list(self._subscribers):
            subscriber.wake(queue)

    def _wake_everyone(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.wake_all()

    # -- the task -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            with self._scope:
                await self._listen_until_closed()
        finally:
            # Ends with the last subscriber, or with the trio run: a later run starts another.
            self._close()

    async def _listen_until_closed(self) -> None:
        from ._connections import driver

        delay = 0.0
        schema = self._statements.schema
        while not self._closed:
            try:
                conn: Connection = await driver().connect(
                    self._dsn, on_notify=self._notified, timeout=self._connect_timeout
                )
            except StorageError as error:
                delay = min(max(delay * 2, _BACKOFF_FIRST), _BACKOFF_MOST)
                logger.warning(
                    "PostgresStorage: listener cannot connect (%s); again in %s s", error, delay
                )
                await trio.sleep(delay)
                continue
            try:
                await conn.execute(
                    f"SET application_name = 'pyapalis-listener:{schema}';"
                    f' LISTEN "{self._statements.channel}"'.encode()
                )
                for owner in list(self._owners):
                    await conn.execute(self._statements.lock_owner, [self._owner_key(owner)])
                self._conn = conn
                self._connects += 1
                self._ready.set()
                delay = 0.0
                # Something may have been pushed while nobody listened.
                self._wake_everyone()
                while True:
                    await conn.wait_for_input()
            except StorageError as error:
                if self._closed:
                    return
                logger.warning(
                    "PostgresStorage: listener lost its session (%s); reconnecting", error
                )
            finally:
                self._conn = None
                self._ready = trio.Event()
                conn.close()
            delay = min(max(delay * 2, _BACKOFF_FIRST), _BACKOFF_MOST)
            await trio.sleep(delay)

    def _close(self) -> None:
        """End the listener (idempotent, never blocks); its locks end with its session."""
        if self._closed:
            return
        self._closed = True
        with _registry_lock:
            if _registry.get(self._key) is self:
                del _registry[self._key]
        self._scope.cancel()
        if self._conn is not None:
            self._conn.close()
        self._owners.clear()
        self._ready.set()  # waiters see it closed
        subscribers, self._subscribers = self._subscribers, {}
        for subscriber in subscribers:
            subscriber.wake_all()
