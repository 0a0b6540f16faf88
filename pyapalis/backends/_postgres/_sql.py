"""Every SQL statement of PostgresStorage, and how values travel to and from them.

Parameters travel as text with no declared type and each statement casts
them (``$2::float8``), so one statement serves the trio driver and psycopg's
``RawCursor`` on a caller's connection alike. Batches travel as arrays
(``unnest``): a push of 10,000 tasks, a claim of 100 and the settlement of 100
outcomes are one statement each.

Times are UNIX seconds sent by the client (``$now``), not the server's
``now()``: workers compare leases and due times on one clock per run (the
trio run's wall clock, see :mod:`pyapalis.backends._kit._clock`), which keeps
tests in virtual time exact. Machines sharing a database must keep their
clocks in sync (NTP) to well within a lease.

Wake-ups: a statement that makes tasks due (a push, a retry, a hand-back, a
recovery) sends **one** NOTIFY for its queue, never one per row (a
transaction that notifies takes a global lock at commit; per-row notifies
would serialise every push). The NOTIFY lives in a CTE whose count is part
of the statement's output: PostgreSQL skips a CTE (or removes a joined
subquery) whose result nobody reads, and the notification with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

__all__ = [
    "TASK_COLUMNS",
    "Statements",
    "bytea",
    "bytea_array",
    "number",
    "number_array",
    "text",
    "text_array",
    "unbytea",
]

Param = bytes | None


def text(value: str | None) -> Param:
    return None if value is None else value.encode()


def number(value: float | None) -> Param:
    # repr keeps every digit of a float (Python floats and float8 are both IEEE doubles).
    return None if value is None else repr(value).encode()


def bytea(value: bytes | None) -> Param:
    return None if value is None else b"\\x" + value.hex().encode()


def _element(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_array(values: Iterable[str | None]) -> bytes:
    """A text[] literal (every element quoted, so any text is safe)."""
    return ("{" + ",".join("NULL" if v is None else _element(v) for v in values) + "}").encode()


def number_array(values: Iterable[float | None]) -> bytes:
    return ("{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}").encode()


def bytea_array(values: Iterable[bytes | None]) -> bytes:
    return (
        "{" + ",".join("NULL" if v is None else '"\\\\x' + v.hex() + '"' for v in values) + "}"
    ).encode()


def unbytea(value: bytes) -> bytes:
    """The bytes of a bytea column's text (hex output, ``\\x...``)."""
    return bytes.fromhex(value[2:].decode())


TASK_COLUMNS = "id, args, attempts, run_at, max_attempts, timeout, priority, meta, status, seq"
"""The columns a task is rebuilt from, in this order (see ``_rows.task_of``)."""

_FINAL = "('Done', 'Failed', 'Killed')"


class Statements:
    """The statements for one schema (its name is checked before it gets here)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    @cached_property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema; payloads are queue names."""
        return f"{self.schema}.wake"

    def _t(self, sql: str) -> bytes:
        return (
            sql.replace("{tasks}", f'"{self.schema}".tasks')
            .replace("{workers}", f'"{self.schema}".workers')
            .replace("{vacuumed}", f'"{self.schema}".vacuumed')
            .encode()
        )

    # -- producers ---------------------------------------------------------------
    @cached_property
    def push(self) -> bytes:
        """Insert tasks from arrays in order; the ids stored (an id or live uniqueness
        key already there stores nothing). One NOTIFY when anything was stored.

        $1 queue, $2 now, $3 ids, $4 args, $5 run_at, $6 priority, $7 attempts,
        $8 max_attempts, $9 timeout, $10 meta, $11 unique keys, $12 channel,
        $13 task names (``_kit._names.task_name_of``).
        """
        return self._t(
            """
            WITH stored AS (
                INSERT INTO {tasks} (queue, id, args, run_at, priority, attempts,
                                     max_attempts, timeout, meta, unique_key, task_name,
                                     created_at)
                SELECT $1::text, a.id, a.args, a.run_at, a.priority, a.attempts,
                       a.max_attempts, a.timeout, a.meta, a.unique_key, a.task_name, $2::float8
                FROM unnest($3::text[], $4::bytea[], $5::float8[], $6::bigint[], $7::int[],
                            $8::int[], $9::float8[], $10::bytea[], $11::text[], $13::text[])
                     WITH ORDINALITY
                     AS a(id, args, run_at, priority, attempts, max_attempts, timeout, meta,
                          unique_key, task_name, n)
                WHERE NOT EXISTS (
                    SELECT 1 FROM {vacuumed} v WHERE v.queue = $1::text AND v.id = a.id)
                ORDER BY a.n
                ON CONFLICT DO NOTHING
                RETURNING id
            ), woken AS (
                SELECT pg_notify($12::text, $1::text) FROM (SELECT 1 FROM stored LIMIT 1) one
            )
            SELECT stored.id, w.n FROM stored CROSS JOIN (SELECT count(*) AS n FROM woken) w
            """
        )

    @cached_property
    def existing(self) -> bytes:
        """For ids not stored by a push: the id already there, or the live task holding
        the uniqueness key. $1 queue, $2 ids, $3 unique keys (same length)."""
        return self._t(
            """
            SELECT a.id, coalesce(
                (SELECT t.id FROM {tasks} t WHERE t.queue = $1::text AND t.id = a.id),
                (SELECT v.id FROM {vacuumed} v WHERE v.queue = $1::text AND v.id = a.id),
                (SELECT t.id FROM {tasks} t WHERE t.queue = $1::text
                   AND t.unique_key = a.unique_key AND t.status IN ('Pending', 'Running')
                 LIMIT 1))
            FROM unnest($2::text[], $3::text[]) AS a(id, unique_key)
            """
        )

    # -- the lease model ------------------------------------------------------------
    @cached_property
    def exchange(self) -> bytes:
        """The exchange of every task (see :meth:`_exchange`)."""
        return self._exchange("")

    @cached_property
    def exchange_named(self) -> bytes:
        """The exchange of a pool: it claims only tasks whose ``task_name`` is in
        $14 (text[]), and the next due time is theirs (``tasks_ready_named``)."""
        return self._exchange(" AND task_name = ANY($14::text[])")

    def _exchange(self, only: str) -> bytes:
        """Apply a batch of outcomes, each fenced by owner and attempt, then claim up
        to $12 due tasks for the owner with a lease until $13 (one statement).

        $1 queue, $2 now, $3 owner, $4 ids, $5 attempts (the execution's),
        $6 new statuses, $7 run_at (NULL keeps it), $8 attempt delta (-1 for
        a hand-back), $9 results, $10 errors, $11 channel. One NOTIFY if any
        task went back to Pending. Rows: the claimed tasks (``TASK_COLUMNS``),
        then one summary row whose ``run_at`` is when the next scheduled task
        of the queue comes due, computed only when the claim found fewer than
        it asked for. (A task settled back to Pending here is not claimed by
        this same statement: both parts see the same snapshot.)
        """
        returning = ", ".join("t." + c.strip() for c in TASK_COLUMNS.split(","))
        return self._t(
            f"""
            WITH settled AS (
                UPDATE {{tasks}} t
                SET status = a.status,
                    attempts = t.attempts + a.delta,
                    run_at = coalesce(a.run_at, t.run_at),
                    result = a.result,
                    error = a.error,
                    owner = NULL,
                    lease_until = NULL,
                    finished_at = CASE WHEN a.status IN {_FINAL} THEN $2::float8 END
                FROM unnest($4::text[], $5::int[], $6::text[], $7::float8[], $8::int[],
                            $9::bytea[], $10::text[])
                     AS a(id, attempt, status, run_at, delta, result, error)
                WHERE t.queue = $1::text AND t.id = a.id AND t.status = 'Running'
                  AND t.owner = $3::text AND t.attempts = a.attempt
                RETURNING t.status
            ), woken AS (
                SELECT pg_notify($11::text, $1::text)
                FROM (SELECT 1 FROM settled WHERE status = 'Pending' LIMIT 1) one
            ), picked AS (
                SELECT id FROM {{tasks}}
                WHERE queue = $1::text AND status = 'Pending' AND run_at <= $2::float8{only}
                ORDER BY priority DESC, run_at, seq
                LIMIT $12::int
                FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE {{tasks}} t
                SET status = 'Running', owner = $3::text, attempts = t.attempts + 1,
                    lease_until = $13::float8, claimed_at = $2::float8
                FROM picked
                WHERE t.queue = $1::text AND t.id = picked.id
                RETURNING {returning}
            )
            SELECT * FROM claimed
            UNION ALL
            SELECT NULL, NULL,
                   (SELECT count(*) FROM woken)::int + (SELECT count(*) FROM settled)::int,
                   CASE WHEN (SELECT count(*) FROM claimed) < $12::int THEN
                       (SELECT min(run_at) FROM {{tasks}}
                        WHERE queue = $1::text AND status = 'Pending' AND run_at > $2::float8{only})
                   END,
                   NULL, NULL, NULL, NULL, NULL, NULL
            """
        )

    @cached_property
    def release_in_doubt(self) -> bytes:
        """Hand back the tasks of claims whose answer was lost (the session never got them).

        $1 queue, $2 owner, $3 the times of those claims (each claim marks its
        rows with its own ``claimed_at``, which heartbeats leave alone), $4
        channel. The claims are undone: Pending again, attempt - 1. Rows:
        (handed back, notified).
        """
        return self._t(
            """
            WITH released AS (
                UPDATE {tasks}
                SET status = 'Pending', owner = NULL, lease_until = NULL,
                    attempts = attempts - 1
                WHERE queue = $1::text AND status = 'Running' AND owner = $2::text
                  AND claimed_at = ANY($3::float8[])
                RETURNING 1
            ), woken AS (
                SELECT pg_notify($4::text, $1::text) FROM (SELECT 1 FROM released LIMIT 1) one
            )
            SELECT count(*), (SELECT count(*) FROM woken) FROM released
            """
        )

    @cached_property
    def retire(self) -> bytes:
        """Forget worker run $1."""
        return self._t("DELETE FROM {workers} WHERE id = $1::text")

    @cached_property
    def heartbeat(self) -> bytes:
        """Record worker $1 as alive at $2 and extend every lease it holds to $3.

        $4 queue, $5 name, $6 host, $7 pid, $8 started_at. The number of leases extended.
        """
        return self._t(
            """
            WITH seen AS (
                INSERT INTO {workers} (id, queue, name, host, pid, started_at, last_seen)
                VALUES ($1::text, $4::text, $5::text, $6::text, $7::int, $8::float8, $2::float8)
                ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen
                RETURNING 1
            ), extended AS (
                UPDATE {tasks} SET lease_until = $3::float8
                WHERE queue = $4::text AND status = 'Running' AND owner = $1::text
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM extended) FROM seen
            """
        )

    @cached_property
    def lock_owner(self) -> bytes:
        """Hold the session lock that proves owner $1 alive (on the listening session)."""
        return b"SELECT pg_advisory_lock(hashtextextended($1::text, 0))"

    @cached_property
    def unlock_owner(self) -> bytes:
        return b"SELECT pg_advisory_unlock(hashtextextended($1::text, 0))"

    def owner_key(self, owner: str) -> str:
        """The text an owner's liveness lock is keyed by."""
        return f"pyapalis.owner:{self.schema}:{owner}"

    @cached_property
    def recover(self) -> bytes:
        """Re-queue up to $3 Running tasks of queue $1 whose lease ended before $2, or
        whose owner is provably gone ($4 true: its liveness lock is free); Failed
        when no attempts are left. Leaderless: SKIP LOCKED lets workers share it.

        $5 channel, $6 lock key prefix. Rows: (re-queued, failed).
        """
        return self._t(
            """
            WITH lost AS (
                SELECT id FROM {tasks}
                WHERE queue = $1::text AND status = 'Running'
                  AND (lease_until < $2::float8
                       OR ($4::bool AND pg_try_advisory_xact_lock(
                               hashtextextended($6::text || owner, 0))))
                ORDER BY lease_until
                LIMIT $3::int
                FOR UPDATE SKIP LOCKED
            ), recovered AS (
                UPDATE {tasks} t
                SET status = CASE WHEN t.max_attempts IS NOT NULL
                                   AND t.attempts >= t.max_attempts
                             THEN 'Failed' ELSE 'Pending' END,
                    error = CASE WHEN t.max_attempts IS NOT NULL
                                  AND t.attempts >= t.max_attempts
                            THEN 'StorageError: the worker running it was lost and no attempts '
                                 || 'are left' ELSE t.error END,
                    finished_at = CASE WHEN t.max_attempts IS NOT NULL
                                        AND t.attempts >= t.max_attempts
                                  THEN $2::float8 END,
                    owner = NULL, lease_until = NULL
                FROM lost WHERE t.queue = $1::text AND t.id = lost.id
                RETURNING t.status
            ), woken AS (
                SELECT pg_notify($5::text, $1::text)
                FROM (SELECT 1 FROM recovered WHERE status = 'Pending' LIMIT 1) one
            )
            SELECT count(*) FILTER (WHERE status = 'Pending'),
                   count(*) FILTER (WHERE status = 'Failed'),
                   (SELECT count(*) FROM woken)
            FROM recovered
            """
        )

    # -- capabilities ----------------------------------------------------------------
    @cached_property
    def fetch(self) -> bytes:
        """The task $2 of queue $1, any status."""
        return self._t(
            f"SELECT {TASK_COLUMNS} FROM {{tasks}} WHERE queue = $1::text AND id = $2::text"
        )

    @cached_property
    def status_of(self) -> bytes:
        """id, status, result, error of the tasks $2 (array) of queue $1."""
        return self._t(
            "SELECT id, status, result, error FROM {tasks}"
            " WHERE queue = $1::text AND id = ANY($2::text[])"
        )

    @cached_property
    def update(self) -> bytes:
        """Replace the parts of task $2 unless it is Running; the id if updated.

        $3 status, $4 attempts, $5 run_at, $6 max_attempts, $7 timeout,
        $8 priority, $9 meta, $10 now, $11 channel.
        """
        return self._t(
            f"""
            WITH changed AS (
                UPDATE {{tasks}}
                SET status = $3::text, attempts = $4::int, run_at = $5::float8,
                    max_attempts = $6::int, timeout = $7::float8, priority = $8::bigint,
                    meta = $9::bytea,
                    finished_at = CASE WHEN $3::text IN {_FINAL} THEN $10::float8 END,
                    result = CASE WHEN $3::text = 'Done' THEN result END,
                    error = CASE WHEN $3::text IN ('Failed', 'Killed') THEN error END
                WHERE queue = $1::text AND id = $2::text AND status <> 'Running'
                RETURNING id, status
            ), woken AS (
                SELECT pg_notify($11::text, $1::text)
                FROM (SELECT 1 FROM changed WHERE status = 'Pending') one
            )
            SELECT changed.id, w.n FROM changed CROSS JOIN (SELECT count(*) AS n FROM woken) w
            """
        )

    @cached_property
    def resume(self) -> bytes:
        """Make task $2 Pending again if it is Failed or Killed, due at $3; the id if so."""
        return self._t(
            """
            WITH resumed AS (
                UPDATE {tasks}
                SET status = 'Pending', run_at = $3::float8, result = NULL, error = NULL,
                    finished_at = NULL
                WHERE queue = $1::text AND id = $2::text AND status IN ('Failed', 'Killed')
                RETURNING id
            ), woken AS (
                SELECT pg_notify($4::text, $1::text) FROM resumed
            )
            SELECT resumed.id, w.n FROM resumed CROSS JOIN (SELECT count(*) AS n FROM woken) w
            """
        )

    @cached_property
    def vacuum(self) -> bytes:
        """Delete the finished tasks of queue $1, remembering their ids; how many."""
        return self._t(
            f"""
            WITH gone AS (
                DELETE FROM {{tasks}} WHERE queue = $1::text AND status IN {_FINAL}
                RETURNING queue, id
            ), kept AS (
                INSERT INTO {{vacuumed}} (queue, id) SELECT queue, id FROM gone
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT count(*), (SELECT count(*) FROM kept) FROM gone
            """
        )

    @cached_property
    def delete(self) -> bytes:
        """Delete task $2 of queue $1 (any status) and forget its id; the id if it was there."""
        return self._t(
            """
            WITH task AS (
                DELETE FROM {tasks} WHERE queue = $1::text AND id = $2::text RETURNING id
            ), memory AS (
                DELETE FROM {vacuumed} WHERE queue = $1::text AND id = $2::text RETURNING id
            )
            SELECT id FROM task UNION ALL SELECT id FROM memory
            """
        )

    @cached_property
    def list_tasks(self) -> bytes:
        """A page of queue $1's tasks in push order: $2 status or NULL, $3 limit, $4 offset."""
        return self._t(
            f"SELECT {TASK_COLUMNS} FROM {{tasks}} WHERE queue = $1::text"
            " AND ($2::text IS NULL OR status = $2::text)"
            " ORDER BY seq LIMIT $3::bigint OFFSET $4::bigint"
        )

    @cached_property
    def list_workers(self) -> bytes:
        """The workers of queue $1 seen since $2, most recently seen first."""
        return self._t(
            "SELECT name, pid, started_at, last_seen, id, host FROM {workers}"
            " WHERE queue = $1::text AND last_seen >= $2::float8 ORDER BY last_seen DESC"
        )

    @cached_property
    def kill(self) -> bytes:
        """Make task $2 Killed with error $3 if it is Pending or Running; the id if so."""
        return self._t(
            """
            UPDATE {tasks}
            SET status = 'Killed', error = $3::text, result = NULL, owner = NULL,
                lease_until = NULL, finished_at = $4::float8
            WHERE queue = $1::text AND id = $2::text AND status IN ('Pending', 'Running')
            RETURNING id
            """
        )

    @cached_property
    def count_by_status(self) -> bytes:
        """(status, count) of queue $1's tasks."""
        return self._t("SELECT status, count(*) FROM {tasks} WHERE queue = $1::text GROUP BY 1")

    @cached_property
    def queues(self) -> bytes:
        """The queues that hold tasks."""
        return self._t("SELECT DISTINCT queue FROM {tasks}")

    @cached_property
    def count(self) -> bytes:
        """How many tasks of queue $1 are not final."""
        return self._t(
            f"SELECT count(*) FROM {{tasks}} WHERE queue = $1::text AND status NOT IN {_FINAL}"
        )
