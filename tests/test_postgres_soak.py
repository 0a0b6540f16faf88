"""Crash soak: SIGKILL, over and over, two worker processes and a producer on PostgreSQL.

Each round kills one of the three processes at a random instant and starts
it again. At the end the producer stops, the workers drain the queue (the
killed workers' tasks come back when their 1 s leases expire), and:

* every task the producer saw acknowledged (its push returned) is Done: 0 lost;
* every execution beyond the first of a task (a duplicate) is bounded by
  what the killed workers held: concurrency + prefetch (8) per killed worker.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._postgres import DSN, needs_postgres
from tests._postgres import pg_schema as pg_schema

pytestmark = [needs_postgres, pytest.mark.slow]

ROUNDS = int(__import__("os").environ.get("SOAK_ROUNDS", "100"))
IN_FLIGHT = 8  # a worker's concurrency (4) + prefetch (4)
_ROOT = Path(__file__).resolve().parent.parent


def _lines(path: Path) -> list[int]:
    if not path.exists():
        return []
    # A process killed mid-write may leave a torn last line: it was never acknowledged.
    return [int(line) for line in path.read_text().splitlines() if line.strip().isdigit()]


def test_sigkill_rounds_lose_nothing(pg_schema: str, tmp_path: Path) -> None:
    from pyapalis import PostgresStorage

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    executed = tmp_path / "executed.log"
    pushed = tmp_path / "pushed.log"
    child = [sys.executable, "-m", "tests._postgres_soak_child"]

    def start(role: str) -> subprocess.Popen[bytes]:
        args = [*child, role, DSN, pg_schema]
        if role == "worker":
            args.append(str(executed))
        else:
            # Each producer run numbers its tasks from a range of its own.
            producer_runs.append(len(producer_runs))
            args += [str(pushed), str(1_000_000 * len(producer_runs))]
        return subprocess.Popen(args, cwd=_ROOT)

    # The schema exists before anyone races to create it (they may, safely; this is faster).
    storage = PostgresStorage(DSN, schema=pg_schema)
    storage.push_bulk_sync([0])
    storage.close()
    producer_runs: list[int] = []
    processes = {"worker-a": start("worker"), "worker-b": start("worker"), "producer": None}
    processes["producer"] = start("producer")
    killed_workers = 0
    try:
        for _ in range(ROUNDS):
            # Long enough for a fresh process to start (~0.4 s) and work a while.
            time.sleep(rng.uniform(0.3, 1.0))
            name = rng.choice(sorted(processes))
            process = processes[name]
            assert process is not None
            assert process.poll() is None, f"{name} exited by itself (seed {seed})"
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed_workers += name.startswith("worker")
            processes[name] = start("producer" if name == "producer" else "worker")
        producer = processes["producer"]
        assert producer is not None
        producer.send_signal(signal.SIGKILL)
        producer.wait()
        processes["producer"] = None
        acknowledged = set(_lines(pushed))
        assert len(acknowledged) > ROUNDS, "the producer barely pushed"

        def unfinished() -> int:
            import psycopg

            with psycopg.connect(DSN) as conn:
                row = conn.execute(
                    f'SELECT count(*) FROM "{pg_schema}".tasks'
                    " WHERE status IN ('Pending', 'Running')"
                ).fetchone()
                return int(row[0]) if row else 0

        deadline = time.monotonic() + 120
        while unfinished():
            assert time.monotonic() < deadline, f"not drained (seed {seed})"
            time.sleep(0.1)
    finally:
        for process in processes.values():
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
    import psycopg

    with psycopg.connect(DSN) as conn:
        done = {
            int(row[0])
            for row in conn.execute(
                f"SELECT convert_from(args, 'UTF8') FROM \"{pg_schema}\".tasks"
                " WHERE status = 'Done'"
            )
        }
    lost = acknowledged - done
    assert not lost, f"{len(lost)} acknowledged tasks lost, e.g. {sorted(lost)[:5]} (seed {seed})"
    runs = collections.Counter(_lines(executed))
    assert acknowledged <= set(runs), f"acknowledged tasks never ran (seed {seed})"
    duplicates = sum(count - 1 for count in runs.values())
    assert duplicates <= IN_FLIGHT * killed_workers, (
        f"{duplicates} duplicate executions for {killed_workers} killed workers (seed {seed})"
    )
