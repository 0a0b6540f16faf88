"""The board's counts: ``count_tasks()`` against listing every task (its fallback).

Run ``python -m benchmarks.board_counts [--n 20000] [--repeats 5]``. In one
run, on one store of ``n`` Pending tasks per backend (SqliteStorage and
JsonStorage, on a temporary directory), it times the two ways
:func:`pyapalis._ops._actions.count_tasks` can count by status: the
``CountTasks`` capability (one ``GROUP BY`` on SQLite, a scan of the
in-memory index on JsonStorage) and listing every task status by status (what
a backend without ``CountTasks`` costs: each task read and decoded). The
board does this every few seconds, so the ratio is what matters; figures are
medians of ``repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

__all__ = ["main", "measure"]


async def _median(repeats: int, work: Any) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def measure(n: int, repeats: int) -> list[dict[str, Any]]:
    """One row per backend: milliseconds by capability and by listing, and their ratio."""
    from pyapalis import JsonStorage, SqliteStorage, Status
    from pyapalis._ops import _actions as actions

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, storage in (
            ("SqliteStorage", SqliteStorage(Path(directory) / "tasks.db")),
            ("JsonStorage", JsonStorage(Path(directory) / "tasks.jsonl")),
        ):
            async with storage:
                await storage.push_bulk(range(n))

                async def by_capability(storage: Any = storage) -> None:
                    assert (await actions.count_tasks(storage))["Pending"] == n

                async def by_listing(storage: Any = storage) -> None:
                    total = 0
                    for status in Status:
                        total += len(await actions.task_ids(storage, status))
                    assert total == n

                counted = await _median(repeats, by_capability)
                listed = await _median(repeats, by_listing)
                rows.append(
                    {
                        "backend": name,
                        "tasks": n,
                        "count_tasks_ms": counted * 1000,
                        "listing_ms": listed * 1000,
                        "ratio": listed / counted if counted else float("inf"),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.board_counts")
    parser.add_argument("--n", type=int, default=20_000, help="tasks in each store")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be >= 1")
    rows = trio.run(measure, args.n, args.repeats)
    print(f"{'backend':<15} {'tasks':>7} {'count_tasks':>12} {'listing':>10} {'ratio':>7}")
    for row in rows:
        print(
            f"{row['backend']:<15} {row['tasks']:>7} {row['count_tasks_ms']:>9.2f} ms "
            f"{row['listing_ms']:>7.1f} ms {row['ratio']:>6.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
