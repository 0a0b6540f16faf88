"""The PostgreSQL server itself restarts while two worker processes drain and producers push.

On a private server (see :mod:`tests._postgres_server`: restarting the shared
one would break other tests), twice: wait until the workers and the producers
(one with ``push_sync``, one with ``await push``) are busy, restart the server
(``pg_ctl restart -m fast``: every session is ended; the second time stopped,
left down longer than a lease, and started), then wait until both workers and
both producers — the same processes, never restarted — work again, and until
no task is Running with an expired lease. At the end the producers stop, the
workers drain the queue, and:

* every task acknowledged to a producer (the backlog, and each push that
  returned) is Done: 0 lost, nothing Failed;
* nothing is left Running;
* executions beyond the first of a task (duplicates) stay within what the
  workers held when the server went away: concurrency + prefetch (8) per
  worker per restart;
* each worker process listens again (one listening session each);
* a storage of the test's own, idle through each restart, answers at once when
  the server is up (its pooled session, ended by the restart, is replaced
  before use).

It prints what it saw (run with ``-s``): counts, and how soon work went on.
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


def _expired_leases(server: PrivateServer) -> int:
    """Running tasks whose lease has run out (live workers' heartbeats keep theirs ahead)."""
    rows = _query(
        server,
        f"SELECT count(*) FROM {SCHEMA}.tasks WHERE status = 'Running'"
        " AND lease_until < extract(epoch FROM clock_timestamp())",
    )
    return int(str(rows[0][0]))


def test_server_restarts_lose_nothing_and_workers_reconnect(
    server: PrivateServer, tmp_path: Path
) -> None:
    from pyapalis import PostgresStorage

    executed = tmp_path / "executed.log"
    pushed = {"producer": tmp_path / "pushed.log", "trio-producer": tmp_path / "pushed-trio.log"}
    child = [sys.executable, "-m", "tests._postgres_restart_child"]

    storage = PostgresStorage(server.dsn, schema=SCHEMA)
    backlog = set(range(1, BACKLOG + 1))
    storage.push_bulk_sync(sorted(backlog))
    storage.close()
    idle = PostgresStorage(server.dsn, schema=SCHEMA)

    def start(name: str, role: str, log: Path, extra: str) -> None:
        # Each process's stderr goes to a file of its own (what it logged, for a failure).
        with open(tmp_path / f"{name}.err", "wb") as errors:
            processes[name] = subprocess.Popen(
                [*child, role, server.dsn, SCHEMA, str(log), extra], cwd=_ROOT, stderr=errors
            )

    processes: dict[str, subprocess.Popen[bytes]] = {}
    start("worker-a", "worker", executed, str(LEASE))
    start("worker-b", "worker", executed, str(LEASE))
    start("producer", "producer", pushed["producer"], "1000000")
    start("trio-producer", "trio-producer", pushed["trio-producer"], "2000000")
    worker_pids = {str(processes[name].pid) for name in ("worker-a", "worker-b")}

    def progress() -> tuple[collections.Counter[str], dict[str, int]]:
        """Executions so far by worker pid, and pushes acknowledged so far by producer."""
        runs = collections.Counter(line.split()[0] for line in _lines(executed))
        return runs, {name: len(_lines(log)) for name, log in pushed.items()}

    def moved_on(since: tuple[collections.Counter[str], dict[str, int]]) -> Callable[[], bool]:
        """Whether each worker ran 100 tasks and each producer pushed 20 since ``since``."""

        def check() -> bool:
            runs, pushes = progress()
            return all(runs[pid] - since[0][pid] >= 100 for pid in worker_pids) and all(
                pushes[name] - since[1][name] >= 20 for name in pushed
            )

        return check

    observed: list[str] = []
    try:
        for restart, downtime in enumerate(DOWNTIMES):
            _until(moved_on(progress()), "busy before the restart", processes)
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
            up = time.monotonic()
            expired = _expired_leases(server)  # ran out while the server was down
            # The same processes go on by themselves: each worker runs tasks again and
            # each producer's pushes are acknowledged again.
            _until(moved_on(progress()), f"work going on after restart {restart + 1}", processes)
            again = time.monotonic() - up
            # No task stays Running past its lease: the leases that ran out while
            # the server was down are re-queued (or extended) by the live workers.
            _until(lambda: _expired_leases(server) == 0, "expired leases re-queued", processes)
            observed.append(
                f"restart {restart + 1} (down {downtime} s more): work again {again:.2f} s "
                f"after the server was up, {expired} leases expired then, none at "
                f"{time.monotonic() - up:.2f} s"
            )
        for name in pushed:
            producer = processes.pop(name)
            producer.send_signal(signal.SIGKILL)
            producer.wait()
        acknowledged = backlog | {int(line) for log in pushed.values() for line in _lines(log)}

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
