"""A trio-native PostgreSQL connection over psycopg's documented libpq layer.

psycopg's async API runs on asyncio only, and its sync API through
``trio.to_thread`` costs a thread hop per statement (~1.1k round trips/s
measured). This module drives ``psycopg.pq`` directly instead: libpq in
non-blocking mode, ``send_query_params`` / ``flush`` / ``consume_input`` /
``is_busy``, and trio waiting on the connection's socket
(``trio.lowlevel.wait_readable`` / ``wait_writable``). The trio thread never
blocks on the network, and LISTEN needs no thread at all.

Cancellation is passed on to the server: a statement whose wait is cancelled
is cancelled there too (libpq's cancel request, sent from a thread because it
opens its own connection), and its result is drained so the connection can be
used again; if that fails, the connection is closed. No query is left
running on the server behind a cancelled trio task.

Under a virtual clock (``trio.testing.MockClock``, the test suite's
``autojump_clock``), a wait for a statement's answer is a blocking ``select``
in the trio thread instead: otherwise the clock would take that wait for
idleness and leap ahead while the server works (leases would expire, polls
would spin). The listener's wait for notifications stays a trio wait: it *is*
idle.

Every failure — a lost connection, a server error, a statement timeout —
raises :class:`~pyapalis.StorageError` (:class:`PostgresError` for an error the
server reported, with its SQLSTATE), so callers handle one exception type.

Parameters travel as text (``bytes`` already encoded, or ``None`` for NULL)
with no declared type: each statement casts them (``$1::bigint``), so the same
SQL also runs through psycopg's ``RawCursor`` on a caller's connection (see
:mod:`._producer`). Results come back as text, one ``bytes | None`` per column.
"""

from __future__ import annotations

import contextlib
import math
import select
from collections.abc import Callable, Sequence

import psycopg
import trio
from psycopg import pq

from ..._errors import StorageError
from .._kit._clock import run_clock

__all__ = ["Connection", "Notification", "PostgresError", "Row", "connect"]

Row = list[bytes | None]
"""A result row: each column's text, or None for NULL."""

Notification = tuple[str, str]
"""A NOTIFY received: (channel, payload)."""

# How long the clean-up after a cancelled statement may take before the
# connection is given up (the cancel request is a fresh connection to the server).
_CANCEL_GRACE = 5.0
_SQLSTATE = pq.DiagnosticField.SQLSTATE


class PostgresError(StorageError):
    """An error the PostgreSQL server reported for a statement; ``sqlstate`` is its code."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class Connection:
    """One PostgreSQL session driven from trio; one statement at a time.

    Concurrent callers are serialised by a lock (a libpq connection runs one
    statement at a time). ``on_notify`` receives every notification the
    session gets (LISTEN), whenever input is read.
    """

    __slots__ = (
        "_closed",
        "_idle_wait",
        "_inline",
        "_lock",
        "_on_notify",
        "_pgconn",
        "_wanted",
        "dsn",
    )

    def __init__(
        self,
        pgconn: pq.abc.PGconn,
        dsn: str,
        on_notify: Callable[[Notification], None] | None = None,
    ) -> None:
        self._pgconn = pgconn
        self._lock = trio.Lock()
        self._closed = False
        self._on_notify = on_notify
        self._idle_wait: trio.CancelScope | None = None
        self._wanted = 0  # statements waiting for the session (a listener's wait gives way)
        self._inline = run_clock().virtual  # see the module docstring
        self.dsn = dsn

    @property
    def closed(self) -> bool:
        """True once closed, or once the connection was found broken."""
        return self._closed or self._pgconn.status != pq.ConnStatus.OK

    @property
    def backend_pid(self) -> int:
        """The server process serving this session (``pg_terminate_backend`` takes it)."""
        return self._pgconn.backend_pid

    def close(self) -> None:
        """Close the session (idempotent, never blocks)."""
        if not self._closed:
            self._closed = True
            pgconn = self._pgconn
            # Waiters on the socket get ClosedResourceError, not a stale fd
            # (nothing to do outside a trio run, or once libpq has no socket).
            with contextlib.suppress(RuntimeError, psycopg.Error):
                trio.lowlevel.notify_closing(pgconn.socket)
            pgconn.finish()

    def usable(self) -> bool:
        """Whether this idle session can take a statement: False once it is known broken.

        Reads, without waiting, whatever the server sent while the session
        idled: a session the server ended (a restart, ``pg_terminate_backend``,
        an idle timeout) has its farewell and end of stream waiting on the
        socket, and is closed here instead of failing the next statement. Only
        for a session with no statement running.
        """
        # libpq reads what arrived, but notices the end of the stream only on a
        # later read: read while the socket stays readable (a live idle session's
        # does not, once read), a few times at most.
        for _ in range(4):
            if self.closed:
                self.close()
                return False
            try:
                readable, _, _ = select.select([self._pgconn.socket], [], [], 0)
            except (OSError, ValueError, psycopg.Error):
                self.close()
                return False
            if not readable:
                return True
            try:
                self._consume()
            except StorageError:
                return False
        return not self.closed

    async def execute(self, sql: bytes, params: Sequence[bytes | None] = ()) -> list[Row]:
        """Run one statement; its rows (empty for a statement without rows).

        ``sql`` may hold several statements only when ``params`` is empty.
        Raises :class:`PostgresError` for a server error and
        :class:`StorageError` when the connection is lost.
        """
        self._wanted += 1
        try:
            if self._idle_wait is not None:
                self._idle_wait.cancel()  # a listener's wait gives the session up to us
            await self._lock.acquire()
        finally:
            self._wanted -= 1
        try:
            self._check()
            pgconn = self._pgconn
            try:
                if params:
                    pgconn.send_query_params(sql, params)
                else:
                    pgconn.send_query(sql)
            except psycopg.Error as error:
                raise self._lost("cannot send the statement", error) from error
            try:
                await self._flush()
                return await self._results()
            except trio.Cancelled:
                await self._cancel_running()
                raise
            except trio.ClosedResourceError as error:
                raise self._lost("the session was closed", error) from error
        finally:
            self._lock.release()

    async def wait_for_input(self) -> None:
        """Wait until the server sends something (a notification), and read it.

        For a listening session between statements; notifications go to
        ``on_notify``. A statement sent meanwhile (:meth:`execute`) ends the
        wait early: it reads what arrives itself.
        """
        async with self._lock:
            self._check()
            if self._wanted:
                return  # a statement is waiting: let it have the session
            with trio.CancelScope() as scope:
                self._idle_wait = scope
                try:
                    await trio.lowlevel.wait_readable(self._pgconn.socket)
                except trio.ClosedResourceError as error:
                    raise self._lost("the session was closed", error) from error
                finally:
                    self._idle_wait = None
            self._consume()

    # -- internals --------------------------------------------------------------------

    def _check(self) -> None:
        if self.closed:
            self.close()
            raise StorageError("PostgreSQL connection is closed")

    def _lost(self, what: str, error: BaseException | None = None) -> StorageError:
        message = self._pgconn.get_error_message() if not self._closed else ""
        self.close()
        detail = message.strip() or (str(error) if error is not None else "connection lost")
        return StorageError(f"PostgreSQL: {what}: {detail}")

    async def _flush(self) -> None:
        pgconn = self._pgconn
        while True:
            try:
                pending = pgconn.flush()
            except psycopg.Error as error:
                raise self._lost("cannot send the statement", error) from error
            if not pending:
                return
            await self._wait(pgconn.socket, writable=True)

    async def _wait(self, fd: int, *, writable: bool = False) -> None:
        await _wait_socket(fd, writable=writable, inline=self._inline)

    def _consume(self) -> None:
        pgconn = self._pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error as error:
            raise self._lost("connection lost", error) from error
        on_notify = self._on_notify
        while (notify := pgconn.notifies()) is not None:
            if on_notify is not None:
                on_notify((notify.relname.decode(), notify.extra.decode()))

    async def _results(self) -> list[Row]:
        """Read every result of the statement sent; the rows of the last one with rows."""
        pgconn = self._pgconn
        rows: list[Row] = []
        error: PostgresError | None = None
        while True:
            # Read what has arrived before waiting: a short answer is often already there.
            self._consume()
            while pgconn.is_busy():
                await self._wait(pgconn.socket)
                self._consume()
            result = pgconn.get_result()
            if result is None:
                break
            status = result.status
            if status == pq.ExecStatus.TUPLES_OK:
                ntuples, nfields = result.ntuples, result.nfields
                get = result.get_value
                rows = [[get(i, j) for j in range(nfields)] for i in range(ntuples)]
            elif status == pq.ExecStatus.FATAL_ERROR:
                if error is None:
                    state = result.error_field(_SQLSTATE)
                    message = result.get_error_message().strip()
                    error = PostgresError(
                        f"PostgreSQL: {message}", state.decode() if state else None
                    )
            elif status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY):
                if status == pq.ExecStatus.BAD_RESPONSE or self.closed:
                    raise self._lost("connection lost")
                error = error or PostgresError(
                    f"PostgreSQL: unexpected result status {pq.ExecStatus(status).name}", None
                )
        if self.closed:
            raise self._lost("connection lost")
        if error is not None:
            raise error
        return rows

    async def _cancel_running(self) -> None:
        """After a cancelled wait: cancel the statement on the server, drain its result.

        Shielded and bounded: if the connection cannot be brought back to
        idle, it is closed (the server then ends the statement with the session).
        """
        pgconn = self._pgconn
        if self._closed:
            return
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = _deadline_after(_CANCEL_GRACE)
            try:
                cancel = pgconn.get_cancel()
                if self._inline:
                    cancel.cancel()
                else:
                    await trio.to_thread.run_sync(cancel.cancel, abandon_on_cancel=True)
                await self._flush()
                while True:
                    self._consume()
                    while pgconn.is_busy():
                        await self._wait(pgconn.socket)
                        self._consume()
                    if pgconn.get_result() is None:
                        break
            except (StorageError, psycopg.Error, OSError):
                self.close()
        if scope.cancelled_caught:
            self.close()


async def connect(
    dsn: str,
    *,
    on_notify: Callable[[Notification], None] | None = None,
    timeout: float = 10.0,
) -> Connection:
    """Open a session to ``dsn`` (a libpq URL or key=value string) without blocking trio.

    Raises :class:`StorageError` naming the server's answer when it cannot.
    ``timeout`` bounds the whole handshake.
    """
    try:
        pgconn = pq.PGconn.connect_start(dsn.encode())
    except psycopg.Error as error:  # an unparseable DSN
        raise StorageError(f"PostgreSQL: cannot connect to {_safe(dsn)}: {error}") from error
    if pgconn.status == pq.ConnStatus.BAD:
        message = pgconn.get_error_message().strip()
        pgconn.finish()
        raise StorageError(f"PostgreSQL: cannot connect to {_safe(dsn)}: {message}")
    inline = run_clock().virtual  # see the module docstring
    try:
        with trio.fail_at(_deadline_after(timeout)):
            while True:
                state = pgconn.connect_poll()
                if state == pq.PollingStatus.OK:
                    break
                if state == pq.PollingStatus.READING:
                    await _wait_socket(pgconn.socket, writable=False, inline=inline)
                elif state == pq.PollingStatus.WRITING:
                    await _wait_socket(pgconn.socket, writable=True, inline=inline)
                else:
                    message = pgconn.get_error_message().strip()
                    raise StorageError(f"PostgreSQL: cannot connect to {_safe(dsn)}: {message}")
    except trio.TooSlowError:
        pgconn.finish()
        raise StorageError(
            f"PostgreSQL: cannot connect to {_safe(dsn)}: no answer within {timeout} s"
        ) from None
    except BaseException:
        pgconn.finish()
        raise
    pgconn.nonblocking = 1
    return Connection(pgconn, dsn, on_notify)


async def _wait_socket(fd: int, *, writable: bool, inline: bool) -> None:
    """Wait for the socket during a statement or handshake (blocking when ``inline``)."""
    if inline:
        if writable:
            select.select([], [fd], [])
        else:
            select.select([fd], [], [])
        await trio.lowlevel.checkpoint()
    elif writable:
        await trio.lowlevel.wait_writable(fd)
    else:
        await trio.lowlevel.wait_readable(fd)


def _deadline_after(seconds: float) -> float:
    """A deadline for a wait on the network; none under a virtual clock.

    ``autojump_clock`` takes a wait on a socket for idleness and leaps to the
    next deadline, so a network timeout would fire at once in virtual time.
    """
    if run_clock().virtual or not math.isfinite(seconds):
        return math.inf
    return trio.current_time() + seconds


def _safe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        info = pq.Conninfo.parse(dsn.encode())
    except psycopg.Error:
        return "the given DSN"
    shown = [
        f"{item.keyword.decode()}={item.val.decode()}"
        for item in info
        if item.val is not None and item.keyword in (b"host", b"port", b"dbname", b"user")
    ]
    return " ".join(shown) or "the default server"
