"""The SQLite schema, versioned with ``PRAGMA user_version`` and migrated on open.

Each entry of :data:`MIGRATIONS` brings the file from version ``i`` to ``i + 1``;
:func:`migrate` applies the missing ones inside one ``BEGIN IMMEDIATE``
transaction, so several processes opening a new file at once create it once
(the others wait on the write lock, then see the version and do nothing). A
file written by a newer pyapalis (a higher version) is refused.

Times are integer milliseconds since the epoch (``run_at``, ``lease_until``,
``done_at``): seconds would run scheduled tasks early (apalis-sqlite's bug).
Payloads (arguments, metadata, results) are the codec's bytes, as BLOBs.

Indexes are few on purpose: every status change of a claim or an ack
rewrites each index the row is in. ``tasks_ready`` (Pending rows, in claim
order) serves claims; ``tasks_ready_named`` (Pending typed tasks by name, in
claim order) serves a pool's claims of the names it knows (plain tasks are
not in it, so they pay nothing for it); ``tasks_running`` (Running rows by owner) serves
heartbeats and, scanned whole (it holds only what workers hold), recovery.
Listing tasks by status and vacuum scan the table: management calls.
"""

from __future__ import annotations

import sqlite3

from ..._errors import StorageError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        args BLOB NOT NULL,
        meta BLOB,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER,
        timeout REAL,
        priority INTEGER NOT NULL DEFAULT 0,
        run_at INTEGER NOT NULL,
        owner TEXT,
        lease_until INTEGER,
        unique_key TEXT,
        result BLOB,
        error TEXT,
        done_at INTEGER
    );
    CREATE INDEX tasks_ready ON tasks (queue, priority DESC, run_at)
        WHERE status = 'Pending';
    CREATE INDEX tasks_running ON tasks (owner) WHERE status = 'Running';
    CREATE UNIQUE INDEX tasks_unique ON tasks (queue, unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('Pending', 'Running');
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        name TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        last_seen REAL NOT NULL,
        concurrency INTEGER NOT NULL
    );
    """,
    # 1 -> 2: the ids of tasks vacuum removed, so that a push_task of one stores
    # nothing (a periodic tick is never reopened); the most recent are kept.
    """
    CREATE TABLE vacuumed (
        id TEXT PRIMARY KEY,
        at INTEGER NOT NULL
    );
    """,
    # 2 -> 3: a typed task's name (``_kit._names.task_name_of`` of its
    # envelope), so that a pool claims only the names it registered; filled in
    # for the unfinished tasks of earlier versions stored as JSON (the default
    # codec), by the same rule: an object whose "task_name" is a non-empty text.
    """
    ALTER TABLE tasks ADD COLUMN task_name TEXT;
    UPDATE tasks SET task_name = json_extract(CAST(args AS TEXT), '$.task_name')
        WHERE status IN ('Pending', 'Running')
        AND json_valid(CAST(args AS TEXT))
        AND json_type(CAST(args AS TEXT)) = 'object'
        AND json_type(CAST(args AS TEXT), '$.task_name') = 'text'
        AND json_extract(CAST(args AS TEXT), '$.task_name') <> '';
    CREATE INDEX tasks_ready_named ON tasks (queue, task_name, priority DESC, run_at)
        WHERE status = 'Pending' AND task_name IS NOT NULL;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: sqlite3.Connection, path: str) -> int:
    """Bring the file to :data:`SCHEMA_VERSION` (idempotent); returns the version found.

    Raises :class:`StorageError` for a file of a newer version.
    """
    found: int = connection.execute("PRAGMA user_version").fetchone()[0]
    if found == SCHEMA_VERSION:
        return found  # the common case: no write lock taken
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = connection.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StorageError(
                f"SqliteStorage {path}: the file has schema version {found}, newer than "
                f"this pyapalis understands ({SCHEMA_VERSION}); upgrade pyapalis"
            )
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return found
