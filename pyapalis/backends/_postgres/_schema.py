"""The tables of PostgresStorage, created and migrated on open.

Migrations are numbered and applied in order inside one transaction that
first takes a transaction-level advisory lock keyed by the schema name, so
any number of processes may open the storage at once: the first one migrates,
the others wait for it and then find nothing left to do. Opening is
idempotent. ``pyapalis migrate URL`` runs the same :func:`migrate`.

What the schema holds (``{schema}`` is the storage's ``schema`` argument):

* ``tasks``: one row per task, keyed by (queue, id): the encoded arguments
  and metadata, status, priority, due time (``run_at``, UNIX seconds), the
  attempt count and limits, the owner (worker run id), its claim's time and the lease deadline
  while Running, the uniqueness key, and the result or error once final.
  ``seq`` keeps push order. Two partial indexes serve the hot path: the claim
  (Pending rows in claim order) and the Running rows by lease deadline (the
  recovery scan, and a worker's heartbeat, which reads the few Running rows
  of its queue). Every index costs an insertion at each status change, so
  there are no more (``vacuum`` and listings scan). A partial unique index
  makes a uniqueness key block a second task only while the first is Pending
  or Running. ``task_name`` (a typed task's, from its envelope) has a partial
  index in claim order for the claims of a pool (``FiltersTaskNames``); plain
  tasks are not in it. ``fillfactor`` 70
  leaves room for the status updates to stay on their page (HOT updates).
* ``vacuumed``: the ids ``vacuum`` removed, so that a task pushed again
  under one of them (a periodic tick another process already ran) is still
  refused; ``delete`` forgets an id for good.
* ``workers``: one row per worker run (id, queue, name, host, pid, start,
  last heartbeat).
* ``schema_version``: the migrations applied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import trio

from ..._errors import StorageError

if TYPE_CHECKING:
    from ._driver import Connection

__all__ = ["LATEST", "MIGRATIONS", "check_schema_name", "migrate"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

MIGRATIONS: tuple[str, ...] = (
    # 1: tasks, workers.
    """
    CREATE TABLE {schema}.tasks (
        queue        text NOT NULL,
        id           text NOT NULL,
        seq          bigint GENERATED ALWAYS AS IDENTITY,
        args         bytea NOT NULL,
        status       text NOT NULL DEFAULT 'Pending'
                     CHECK (status IN ('Pending', 'Running', 'Done', 'Failed', 'Killed')),
        priority     bigint NOT NULL DEFAULT 0,
        run_at       double precision NOT NULL,
        attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        max_attempts integer CHECK (max_attempts >= 1),
        timeout      double precision CHECK (timeout > 0),
        meta         bytea,
        owner        text,
        lease_until  double precision,
        claimed_at   double precision,
        unique_key   text,
        result       bytea,
        error        text,
        created_at   double precision NOT NULL,
        finished_at  double precision,
        PRIMARY KEY (queue, id)
    ) WITH (fillfactor = 70);
    CREATE INDEX tasks_ready ON {schema}.tasks (queue, priority DESC, run_at, seq)
        WHERE status = 'Pending';
    CREATE INDEX tasks_leased ON {schema}.tasks (queue, lease_until)
        WHERE status = 'Running';
    CREATE UNIQUE INDEX tasks_unique ON {schema}.tasks (queue, unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('Pending', 'Running');
    CREATE TABLE {schema}.vacuumed (
        queue       text NOT NULL,
        id          text NOT NULL,
        PRIMARY KEY (queue, id)
    );
    CREATE TABLE {schema}.workers (
        id          text PRIMARY KEY,
        queue       text NOT NULL,
        name        text NOT NULL,
        host        text NOT NULL,
        pid         integer NOT NULL,
        started_at  double precision NOT NULL,
        last_seen   double precision NOT NULL
    );
    """,
    # 2: a typed task's name (``_kit._names.task_name_of`` of its envelope), so
    # that a pool claims only the names it registered; tasks stored by version
    # 1 stay unnamed (claimed by plain workers only).
    """
    ALTER TABLE {schema}.tasks ADD COLUMN task_name text;
    CREATE INDEX tasks_ready_named ON {schema}.tasks (queue, task_name, priority DESC, run_at, seq)
        WHERE status = 'Pending' AND task_name IS NOT NULL;
    """,
)
"""Each migration's SQL; migration n is ``MIGRATIONS[n - 1]``. Never edit one
that has shipped: append a new one."""

LATEST = len(MIGRATIONS)


def check_schema_name(schema: object) -> str:
    """``schema`` if it is a plain lower-case SQL identifier; ValueError otherwise."""
    if not isinstance(schema, str) or _NAME.fullmatch(schema) is None:
        raise ValueError(
            "PostgresStorage: schema must be a lower-case identifier "
            f"(letters, digits, _; at most 48 characters), got {schema!r}"
        )
    return schema


async def migrate(connection: Connection, schema: str) -> int:
    """Bring ``schema`` to the latest version; the number of migrations applied.

    Safe to call from many processes at once (see the module docstring).
    """
    check_schema_name(schema)
    quoted = f'"{schema}"'
    await connection.execute(b"BEGIN")
    try:
        await connection.execute(
            b"SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))",
            [f"pyapalis.migrate:{schema}".encode()],
        )
        await connection.execute(
            f"CREATE SCHEMA IF NOT EXISTS {quoted};"
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_version ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())".encode()
        )
        rows = await connection.execute(
            f"SELECT coalesce(max(version), 0) FROM {quoted}.schema_version".encode()
        )
        current = int(_text(rows[0][0]))
        if current > LATEST:
            raise StorageError(
                f"PostgresStorage: schema {schema} is at version {current}, newer than this "
                f"pyapalis knows ({LATEST}): upgrade pyapalis"
            )
        for version in range(current + 1, LATEST + 1):
            sql = MIGRATIONS[version - 1].format(schema=quoted)
            await connection.execute(
                f"{sql};INSERT INTO {quoted}.schema_version (version) VALUES ({version})".encode()
            )
        await connection.execute(b"COMMIT")
    except BaseException:
        if not connection.closed:
            await _rollback(connection)
        raise
    return LATEST - current


async def _rollback(connection: Connection) -> None:
    with trio.CancelScope(shield=True):
        try:
            await connection.execute(b"ROLLBACK")
        except StorageError:
            connection.close()


def _text(value: bytes | None) -> str:
    if value is None:
        raise StorageError("PostgresStorage: the server returned NULL where a value was expected")
    return value.decode()
