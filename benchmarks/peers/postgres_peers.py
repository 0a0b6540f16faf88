"""The processes of ``benchmarks.postgres_bench``: a worker or a producer of one contender.

``python -m benchmarks.peers.postgres_peers worker CONFIG`` (CONFIG is JSON:
contender, dsn, namespace, concurrency, batch) opens its queue, prints
``ready``, waits for ``go`` on stdin, consumes no-op tasks until stdin closes,
then exits. A task whose payload is ``{"t": seconds}`` also prints
``lat <now - t>`` (pickup latency, push to handler, across processes).

``... producer CONFIG`` (plus ``n``) prints ``ready``, waits for ``go``,
pushes ``n`` tasks one by one (each its own transaction), prints
``pushed <seconds>`` and exits.

Contenders: ``pyapalis`` (durable), ``pyapalis-async-commit``
(``synchronous_commit=off`` for the worker's sessions), ``procrastinate``,
``pgqueuer`` — all on the same server, each in a schema of its own (peers
through ``search_path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

PYAPALIS = ("pyapalis", "pyapalis-async-commit")


def peer_conninfo(dsn: str, namespace: str) -> str:
    """The DSN with ``search_path`` set to the peer's schema."""
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}options=-csearch_path%3D{namespace}"


def pyapalis_storage(config: dict[str, Any]) -> Any:
    from pyapalis import PostgresStorage

    return PostgresStorage(
        config["dsn"],
        schema=config["namespace"],
        synchronous_commit=config["contender"] != "pyapalis-async-commit",
        batch=config.get("batch", 100),
        prefetch=config.get("batch", 100),
    )


def procrastinate_app(config: dict[str, Any]) -> tuple[Any, Any]:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=peer_conninfo(config["dsn"], config["namespace"])
        )
    )

    @app.task(name="noop", queue="bench")
    async def noop(payload: Any = None) -> None:
        if isinstance(payload, dict) and "t" in payload:
            print(f"lat {time.time() - payload['t']}", flush=True)

    return app, noop


async def pgqueuer_queries(config: dict[str, Any]) -> tuple[Any, Any]:
    """pgqueuer's ``Queries`` over a psycopg connection of its own, and that connection."""
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    conn = await psycopg.AsyncConnection.connect(
        peer_conninfo(config["dsn"], config["namespace"]), autocommit=True
    )
    return Queries(PsycopgDriver(conn)), conn


def _stdin_line() -> str:
    return sys.stdin.readline().strip()


# -- workers ---------------------------------------------------------------------------


def run_pyapalis_worker(config: dict[str, Any]) -> None:
    import trio

    from pyapalis import WorkerBuilder

    async def main() -> None:
        async with pyapalis_storage(config) as storage:
            print("ready", flush=True)
            await trio.to_thread.run_sync(_stdin_line)

            async def handler(payload: Any) -> None:
                if isinstance(payload, dict) and "t" in payload:
                    print(f"lat {time.time() - payload['t']}", flush=True)

            worker = (
                WorkerBuilder("bench")
                .backend(storage)
                .concurrency(config.get("concurrency", 16))
                .build(handler)
            )

            async def until_stdin_closes() -> None:
                await trio.to_thread.run_sync(sys.stdin.read)

            await worker.run_until(until_stdin_closes)

    trio.run(main)


async def run_procrastinate_worker(config: dict[str, Any]) -> None:
    app, _ = procrastinate_app(config)
    async with app.open_async():
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _stdin_line)
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=["bench"],
                concurrency=config.get("concurrency", 16),
                install_signal_handlers=False,
            )
        )
        await loop.run_in_executor(None, sys.stdin.read)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def run_pgqueuer_worker(config: dict[str, Any]) -> None:
    from pgqueuer import QueueManager
    from pgqueuer.models import Job

    queries, _ = await pgqueuer_queries(config)
    manager = QueueManager(queries)

    @manager.entrypoint("noop")
    async def noop(job: Job) -> None:
        if job.payload and job.payload.startswith(b"{"):
            payload = json.loads(job.payload)
            print(f"lat {time.time() - payload['t']}", flush=True)

    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _stdin_line)
    runner = asyncio.create_task(manager.run(batch_size=config.get("batch", 100)))
    await loop.run_in_executor(None, sys.stdin.read)
    manager.shutdown.set()
    await runner


# -- producers (one by one) ----------------------------------------------------------


def run_pyapalis_producer(config: dict[str, Any]) -> None:
    storage = pyapalis_storage(config)
    storage.push_sync(-1)  # connected (and migrated) before the clock starts
    print("ready", flush=True)
    _stdin_line()
    start = time.perf_counter()
    for i in range(config["n"]):
        storage.push_sync(i)
    print(f"pushed {time.perf_counter() - start}", flush=True)
    storage.close()


async def run_procrastinate_producer(config: dict[str, Any]) -> None:
    app, noop = procrastinate_app(config)
    async with app.open_async():
        await noop.defer_async(payload=-1)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, _stdin_line)
        start = time.perf_counter()
        for i in range(config["n"]):
            await noop.defer_async(payload=i)
        print(f"pushed {time.perf_counter() - start}", flush=True)


async def run_pgqueuer_producer(config: dict[str, Any]) -> None:
    queries, _ = await pgqueuer_queries(config)
    await queries.enqueue("noop", b"-1")
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, _stdin_line)
    start = time.perf_counter()
    for i in range(config["n"]):
        await queries.enqueue("noop", str(i).encode())
    print(f"pushed {time.perf_counter() - start}", flush=True)


def main(argv: list[str]) -> None:
    role, config = argv[0], json.loads(argv[1])
    contender = config["contender"]
    if role == "worker":
        if contender in PYAPALIS:
            run_pyapalis_worker(config)
        elif contender == "procrastinate":
            asyncio.run(run_procrastinate_worker(config))
        else:
            asyncio.run(run_pgqueuer_worker(config))
    elif role == "producer":
        if contender in PYAPALIS:
            run_pyapalis_producer(config)
        elif contender == "procrastinate":
            asyncio.run(run_procrastinate_producer(config))
        else:
            asyncio.run(run_pgqueuer_producer(config))
    else:
        raise SystemExit(f"unknown role {role!r}: worker or producer")


if __name__ == "__main__":
    main(sys.argv[1:])
