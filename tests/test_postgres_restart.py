"""The PostgreSQL server itself restarts while two worker processes drain and a producer pushes.

On a private server (see :mod:`tests._postgres_server`: restarting the shared
one would break other tests), twice: wait until the workers and the producer
are busy, restart the server (``pg_ctl restart -m fast``: every session is
ended; the second time stopped, left down longer than a lease, and started),
then wait until both workers — the same processes, never
restarted — have executed tasks again and the producer has pushed again. At the
end the producer stops, the workers drain the queue, and:

* every task acknowledged to a producer (the backlog, and each push that
  returned) is Done: 0 lost, nothing Failed;
* nothing is left Running (no lease outlives the drain);
* executions beyond the first of a task (duplicates) stay within what the
  workers held when the server went away: concurrency + prefetch (8) per
  worker per restart;
* each worker process listens again (one listening session each);
* a storage of the test's own, idle through each restart, answers at once once
  the server is up (its pooled session, ended by the restart, is replaced
  before use).
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from tests._optional import IN_CI, installed
from tests._postgres_server import PrivateServer, binaries, private_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not IN_CI and (binaries() is None or not installed("psycopg")),
        reason="needs PostgreSQL's binaries (initdb, pg_ctl) and psycopg",
    ),
]

BACKLOG = 20_000
IN_FLIGHT = 8  # a worker's concurrency (4) + prefetch (4)
LEASE = 2.0
# A restart (``pg_ctl restart -m fast``), then a stop, an outage longer than the
# lease, and a start.
DOWNTIMES = (0.0, LEASE * 1.25)
RESTARTS = len(DOWNTIMES)
BOUND = 120.0  # the generous limit of every wait below
SCHEMA = "restart"
_ROOT = Path(__file__).resolve().parent.parent


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    # The last line may be half written: only whole lines count.
    return [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def _until(
    check: Callable[[], bool], what: str, processes: dict[str, subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited by itself ({process.returncode})"
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    with private_server() as started:
        yield started


def _query(server: PrivateServer, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(server.dsn) as conn:
        return list(conn.execute(sql))


def test_server_restarts_lose_nothing_and_workers_reconnect(
    server: PrivateServer, tmp_path: Path
) -> None:
    from pyapalis import PostgresStorage

    executed = tmp_path / "executed.log"
    pushed = tmp_path / "pushed.log"
    child = [sys.executable, "-m", "tests._postgres_restart_child"]

    storage = PostgresStorage(server.dsn, schema=SCHEMA)
    backlog = set(range(1, BACKLOG + 1))
    storage.push_bulk_sync(sorted(backlog))
    storage.close()
    idle = PostgresStorage(server.dsn, schema=SCHEMA)

    def start(role: str, log: Path, extra: str) -> subprocess.Popen[bytes]:
        # Each process's stderr goes to a file of its own (what it logged, for a failure).
        with open(tmp_path / f"{role}-{len(processes)}.err", "wb") as errors:
            return subprocess.Popen(
                [*child, role, server.dsn, SCHEMA, str(log), extra], cwd=_ROOT, stderr=errors
            )

    processes: dict[str, subprocess.Popen[bytes]] = {}
    processes["worker-a"] = start("worker", executed, str(LEASE))
    processes["worker-b"] = start("worker", executed, str(LEASE))
    processes["producer"] = start("producer", pushed, "1000000")
    worker_pids = {str(processes[name].pid) for name in ("worker-a", "worker-b")}
    observed: list[str] = []
    try:
        for restart, downtime in enumerate(DOWNTIMES):
            done_before = len(_lines(executed))
            pushed_before = len(_lines(pushed))

            def busy(done_before: int = done_before, pushed_before: int = pushed_before) -> bool:
                return (
                    len(_lines(executed)) >= done_before + 1000
                    and len(_lines(pushed)) >= pushed_before + 50
                )

            _until(busy, "busy before the restart", processes)
            trio.run(idle.count)  # its session then idles through the restart
            before = server.started_at()
            if downtime:
                # Down for longer than a lease: every lease expires meanwhile.
                server.stop_fast()
                time.sleep(downtime)
                server.start()
            else:
                server.restart()
            assert server.started_at() != before, "the server did not restart"
            # The server is up: a storage that idled through the restart works at once.
            trio.run(idle.count)
            after = len(_lines(executed))
            pushed_after = len(_lines(pushed))

            def both_went_on(after: int = after, pushed_after: int = pushed_after) -> bool:
                since = collections.Counter(line.split()[0] for line in _lines(executed)[after:])
                return (
                    all(since[pid] >= 100 for pid in worker_pids)
                    and len(_lines(pushed)) >= pushed_after + 50
                )

            started = time.monotonic()
            _until(both_went_on, f"work going on after restart {restart + 1}", processes)
            observed.append(
                f"restart {restart + 1} (down {downtime} s more): "
                f"{after - done_before} executed before it, "
                f"work again {time.monotonic() - started:.2f} s after it"
            )
        producer = processes.pop("producer")
        producer.send_signal(signal.SIGKILL)
        producer.wait()
        acknowledged = backlog | {int(line) for line in _lines(pushed)}

        def drained() -> bool:
            rows = _query(
                server,
                f"SELECT count(*) FROM {SCHEMA}.tasks WHERE status IN ('Pending', 'Running')",
            )
            return rows[0][0] == 0

        _until(drained, "the queue drained", processes)
        listeners = _query(
            server,
            "SELECT count(*) FROM pg_stat_activity"
            f" WHERE application_name = 'pyapalis-listener:{SCHEMA}'",
        )
        assert listeners[0][0] == 2, "each worker process listens again"
    finally:
        idle.close()
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
    statuses = {
        str(row[0]): row[1]
        for row in _query(server, f"SELECT status, count(*) FROM {SCHEMA}.tasks GROUP BY status")
    }
    done = {
        int(str(row[0]))
        for row in _query(
            server, f"SELECT convert_from(args, 'UTF8') FROM {SCHEMA}.tasks WHERE status = 'Done'"
        )
    }
    lost = acknowledged - done
    assert not lost, f"{len(lost)} acknowledged tasks lost, e.g. {sorted(lost)[:5]}"
    assert set(statuses) == {"Done"}, statuses
    runs = collections.Counter(int(line.split()[1]) for line in _lines(executed))
    assert acknowledged <= set(runs)
    duplicates = sum(count - 1 for count in runs.values())
    summary = (
        f"{len(acknowledged)} acknowledged ({len(acknowledged) - BACKLOG} pushed one by one), "
        f"{sum(runs.values())} executions, {duplicates} duplicates; " + "; ".join(observed)
    )
    print(summary)
    assert duplicates <= IN_FLIGHT * 2 * RESTARTS, summary
