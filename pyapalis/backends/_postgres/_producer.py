"""Pushing tasks: the rows of a push, and producers that are not trio.

:class:`PushRows` turns arguments or prepared tasks into the arrays of the
push statement (encoded once, whoever sends it). The same statement runs

* on the storage's own trio sessions (``push``, ``push_bulk``, ``push_task``);
* on a **caller's psycopg connection**, inside the caller's transaction
  (:func:`push_on`, :func:`push_on_async`): the task exists if and only if
  the caller commits, and its NOTIFY is delivered at that commit;
* on a blocking psycopg session of the storage (:class:`SyncProducer`,
  ``storage.push_sync``) for threads, Django/Flask views and scripts.

psycopg's ``RawCursor`` takes the statement's ``$n`` placeholders as they are;
every parameter is sent as text and cast by the statement.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..._errors import CodecError, StorageError
from ..._implementation import Task, TaskId
from .._codec import Codec
from .._kit._args import check_task
from .._kit._names import task_name_of, typed_unique_key
from ._sql import Statements, bytea_array, number, number_array, text, text_array
from ._store import describe

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "PushRows",
    "SyncProducer",
    "encode",
    "push_on",
    "push_on_async",
    "push_statement_params",
]


def encode(codec: Codec, value: Any, what: str) -> bytes:
    """``value`` encoded by ``codec`` for storing as the task's ``what``.

    Every encoding of a task's arguments or metadata (pushes on any session,
    ``update``) goes through here, so a value that cannot be stored fails the
    same way wherever it is pushed: :class:`CodecError` naming ``what`` and the
    cause (``Type: message``, or the type alone for an empty message, as
    :func:`describe` writes stored errors).
    """
    try:
        return codec.encode(value)
    except CodecError as error:
        raise CodecError(f"PostgresStorage: cannot store the task's {what}: {error}") from error
    except Exception as error:
        raise CodecError(
            f"PostgresStorage: cannot store the task's {what}: {describe(error)}"
        ) from error


def _unique_key(ctx: Any) -> str | None:
    """The uniqueness key of a typed task (``TASK_NAME`` and ``uniq()``), if it has one."""
    return typed_unique_key(ctx, "\x1f")


@dataclass(slots=True)
class PushRows:
    """The columns of tasks about to be pushed, encoded."""

    ids: list[str]
    args: list[bytes]
    run_at: list[float]
    priority: list[float | None]
    attempts: list[float | None]
    max_attempts: list[float | None]
    timeout: list[float | None]
    meta: list[bytes | None]
    unique_keys: list[str | None]
    task_names: list[str | None]

    @classmethod
    def of_args(cls, codec: Codec, items: Sequence[Any], run_at: float) -> PushRows:
        """New tasks of ``items``, due at ``run_at``, with fresh ids."""
        count = len(items)
        nothing: list[Any] = [None] * count
        return cls(
            ids=[str(TaskId.generate()) for _ in range(count)],
            args=[encode(codec, item, "arguments") for item in items],
            run_at=[run_at] * count,
            priority=[0] * count,
            attempts=[0] * count,
            max_attempts=nothing,
            timeout=nothing,
            meta=nothing,
            unique_keys=nothing,
            task_names=[task_name_of(item) for item in items],
        )

    @classmethod
    def of_tasks(cls, codec: Codec, tasks: Sequence[Task]) -> PushRows:
        """Prepared tasks; one without an id gets one (set on the task)."""
        rows = cls([], [], [], [], [], [], [], [], [], [])
        for task in tasks:
            parts = check_task(task, "push_task: task").parts
            if parts.task_id is None:
                parts.task_id = TaskId.generate()
            rows.ids.append(str(parts.task_id))
            rows.args.append(encode(codec, task.args, "arguments"))
            rows.run_at.append(parts.run_at)
            rows.priority.append(parts.priority)
            rows.attempts.append(parts.attempt.current())
            rows.max_attempts.append(parts.max_attempts)
            rows.timeout.append(parts.timeout)
            rows.meta.append(encode(codec, parts.ctx, "metadata") if parts.ctx else None)
            rows.unique_keys.append(_unique_key(parts.ctx))
            rows.task_names.append(task_name_of(task.args))
        return rows


def trio_thread() -> bool:
    """True on a thread running trio (where a blocking call would stall every task)."""
    import trio

    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def push_statement_params(
    statements: Statements, queue: str, rows: PushRows, now: float
) -> tuple[bytes, list[bytes | None]]:
    """The push statement and its parameters for ``rows``."""
    return statements.push, [
        text(queue),
        number(now),
        text_array(rows.ids),
        bytea_array(rows.args),
        number_array(rows.run_at),
        number_array(rows.priority),
        number_array(rows.attempts),
        number_array(rows.max_attempts),
        number_array(rows.timeout),
        bytea_array(rows.meta),
        text_array(rows.unique_keys),
        text(statements.channel),
        text_array(rows.task_names),
    ]


def _as_text(params: list[bytes | None]) -> list[str | None]:
    # psycopg would send bytes as bytea; the statement casts text.
    return [None if value is None else value.decode() for value in params]


def _report(rows: PushRows, stored: list[Any], existing: list[Any]) -> list[TaskId]:
    done = {row[0] for row in stored}
    holders = {row[0]: row[1] for row in existing if row[1] is not None}
    return [
        TaskId(task_id if task_id in done else holders.get(task_id, task_id))
        for task_id in rows.ids
    ]


def _sql_text(sql: bytes) -> str:
    return sql.decode()


def push_on(
    connection: psycopg.Connection[Any], statements: Statements, queue: str, rows: PushRows
) -> list[TaskId]:
    """Push ``rows`` on the caller's psycopg connection, inside its transaction."""
    import psycopg

    sql, params = push_statement_params(statements, queue, rows, time.time())
    with psycopg.RawCursor(connection) as cursor:
        cursor.execute(_sql_text(sql), _as_text(params))
        stored = cursor.fetchall()
        existing: list[Any] = []
        if len(stored) < len(rows.ids):
            cursor.execute(_sql_text(statements.existing), _existing_params(queue, rows))
            existing = cursor.fetchall()
    return _report(rows, stored, existing)


async def push_on_async(
    connection: psycopg.AsyncConnection[Any], statements: Statements, queue: str, rows: PushRows
) -> list[TaskId]:
    """Push ``rows`` on the caller's async psycopg connection (asyncio), inside its transaction."""
    import psycopg

    sql, params = push_statement_params(statements, queue, rows, time.time())
    async with psycopg.AsyncRawCursor(connection) as cursor:
        await cursor.execute(_sql_text(sql), _as_text(params))
        stored = await cursor.fetchall()
        existing: list[Any] = []
        if len(stored) < len(rows.ids):
            await cursor.execute(_sql_text(statements.existing), _existing_params(queue, rows))
            existing = await cursor.fetchall()
    return _report(rows, stored, existing)


def _existing_params(queue: str, rows: PushRows) -> list[str | None]:
    return _as_text([text(queue), text_array(rows.ids), text_array(rows.unique_keys)])


class SyncProducer:
    """A blocking psycopg session of one storage, for pushes from plain threads.

    One per storage's connections, opened on first use (the schema is
    migrated then if needed), autocommit, serialised by a lock.
    """

    _instances: ClassVar[weakref.WeakKeyDictionary[Any, SyncProducer]] = weakref.WeakKeyDictionary()
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, dsn: str, statements: Statements) -> None:
        self._dsn = dsn
        self._statements = statements
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None

    @classmethod
    def of(cls, owner: object, dsn: str, statements: Statements) -> SyncProducer:
        """The producer of ``owner`` (a storage's connections), created on first use."""
        with cls._instances_lock:
            producer = cls._instances.get(owner)
            if producer is None:
                producer = cls._instances[owner] = cls(dsn, statements)
            return producer

    @classmethod
    def close_of(cls, owner: object) -> None:
        """Close the producer of ``owner``, if it has one."""
        with cls._instances_lock:
            producer = cls._instances.pop(owner, None)
        if producer is not None:
            producer.close()

    def push(self, queue: str, rows: PushRows) -> list[TaskId]:
        """Push ``rows`` to ``queue`` and commit (blocking; refused on a trio thread)."""
        import psycopg

        if trio_thread():
            raise RuntimeError(
                "PostgresStorage.push_sync blocks: on a trio thread, await push() instead "
                "(or call it through trio.to_thread.run_sync)"
            )

        with self._lock:
            for attempt in range(2):
                connection = self._connect()
                try:
                    return push_on(connection, self._statements, queue, rows)
                except psycopg.OperationalError as error:
                    # A session the server dropped: one fresh session, then give up.
                    connection.close()
                    self._connection = None
                    if attempt:
                        raise StorageError(f"PostgresStorage.push_sync: {error}") from error
                except psycopg.Error as error:
                    raise StorageError(f"PostgresStorage.push_sync: {error}") from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg
        import trio

        from ._connections import driver
        from ._schema import migrate

        if self._connection is not None and not self._connection.closed:
            return self._connection

        async def bring_up_to_date() -> None:
            conn = await driver().connect(self._dsn)
            try:
                await migrate(conn, self._statements.schema)
            finally:
                conn.close()

        trio.run(bring_up_to_date)
        try:
            self._connection = psycopg.connect(self._dsn, autocommit=True)
        except psycopg.Error as error:
            raise StorageError(f"PostgresStorage.push_sync: cannot connect: {error}") from error
        return self._connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
