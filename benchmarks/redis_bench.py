"""RedisStorage against the Python Redis queues, side by side on one server, in one run.

``python -m benchmarks.redis_bench [--n N] [--peer-n N] [--workers 1,2]
[--concurrency C] [--latency-samples M] [--only KEYS] [--json PATH]``

What is measured (the same for every contender):

* **throughput**: ``N`` no-op tasks are queued up front through the
  framework's own producer API (bulk where it has one); then ``W`` worker
  processes (1 and 2), each at concurrency ``C``, drain them. Every worker
  process counts the tasks its handler ran and a thread of its own reports
  the count, the time of its first task and of its latest one to Redis every
  5 ms (one ``HSET``, the same for every contender, never per task). Tasks/s
  is ``N / (last task - first task)`` over all processes: start-up and
  imports are not timed. Slow peers run ``--peer-n`` tasks.
* **pickup latency** (pyapalis): one idle worker process; the parent pushes
  one task at a time carrying ``time.time()``; the handler records how long
  it took to get there. ``M`` samples, p50 and p99.

Everything runs against one private ``redis-server`` started for the run on a
free port (nothing on disk, FLUSHALL between contenders), so the shared
server of the tests is left alone. Contenders: pyapalis ``RedisStorage``,
arq, SAQ, taskiq-redis (``ListQueueBroker``) and streaQ (``pip install -e
'.[bench]'``); a peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

REPORT_KEY = "bench:report"
LATENCY_KEY = "bench:latency"
NAMESPACE = "bench"

# -- a minimal RESP client (stdlib only, for the reporter and the parent) ----------------


class Resp:
    """Just enough RESP to send commands and read simple replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def call(self, *args: Any) -> Any:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b":"):
            return int(rest) if kind == b":" else rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)[:-2]
            return data
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")


# -- what every worker process does -----------------------------------------------------

DONE = [0, 0.0, 0.0]  # tasks run, time of the first, time of the latest
LATENCIES: list[float] = []


def mark() -> None:
    """Called by every contender's no-op handler."""
    now = time.time()
    if DONE[0] == 0:
        DONE[1] = now
    DONE[0] += 1
    DONE[2] = now


def start_reporter(port: int) -> None:
    """A thread that writes this process's count (and latency samples) every 5 ms."""

    def report() -> None:
        client = Resp(port)
        pid = os.getpid()
        sent = 0
        while True:
            count, first, last = DONE
            client.call("HSET", REPORT_KEY, pid, f"{count} {first!r} {last!r}")
            while sent < len(LATENCIES):
                client.call("RPUSH", LATENCY_KEY, repr(LATENCIES[sent]))
                sent += 1
            time.sleep(0.005)

    threading.Thread(target=report, daemon=True).start()


# -- the contenders -----------------------------------------------------------------------


def pyapalis_produce(url: str, n: int) -> None:
    import trio

    from pyapalis import RedisStorage

    async def main() -> None:
        async with RedisStorage(url, namespace=NAMESPACE) as storage:
            for start in range(0, n, 1000):
                await storage.push_bulk([0] * min(1000, n - start))

    trio.run(main)


def pyapalis_work(url: str, concurrency: int) -> None:
    import trio

    from pyapalis import RedisStorage, WorkerBuilder

    async def noop(item: float) -> None:
        if item:
            LATENCIES.append(time.time() - item)
        mark()

    async def main() -> None:
        storage = RedisStorage(url, namespace=NAMESPACE, prefetch=concurrency, batch=200)
        worker = WorkerBuilder("bench").backend(storage).concurrency(concurrency).build(noop)
        await worker.run()

    trio.run(main)


def arq_produce(url: str, n: int) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    async def main() -> None:
        pool = await create_pool(RedisSettings.from_dsn(url))
        for start in range(0, n, 200):
            await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(min(200, n - start))))
        await pool.aclose()

    asyncio.run(main())


def arq_work(url: str, concurrency: int) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    async def noop(ctx: Any) -> None:
        mark()

    async def main() -> None:
        worker = Worker(
            functions=[func(noop, name="noop")],
            redis_settings=RedisSettings.from_dsn(url),
            max_jobs=concurrency,
            handle_signals=False,
        )
        await worker.async_run()

    asyncio.run(main())


def saq_produce(url: str, n: int) -> None:
    from saq import Queue

    async def main() -> None:
        queue = Queue.from_url(url)
        await queue.connect()
        for start in range(0, n, 200):
            await asyncio.gather(*(queue.enqueue("noop") for _ in range(min(200, n - start))))
        await queue.disconnect()

    asyncio.run(main())


def saq_work(url: str, concurrency: int) -> None:
    from saq import Queue, Worker

    async def noop(ctx: Any) -> None:
        mark()

    async def main() -> None:
        queue = Queue.from_url(url)
        worker = Worker(queue, functions=[("noop", noop)], concurrency=concurrency)
        await worker.start()

    asyncio.run(main())


def _taskiq_broker(url: str) -> Any:
    from taskiq_redis import ListQueueBroker

    broker = ListQueueBroker(url)

    @broker.task(task_name="noop")
    async def noop() -> None:
        mark()

    return broker, noop


def taskiq_produce(url: str, n: int) -> None:
    async def main() -> None:
        broker, noop = _taskiq_broker(url)
        await broker.startup()
        for start in range(0, n, 200):
            await asyncio.gather(*(noop.kiq() for _ in range(min(200, n - start))))
        await broker.shutdown()

    asyncio.run(main())


def taskiq_work(url: str, concurrency: int) -> None:
    from taskiq.api import run_receiver_task

    async def main() -> None:
        broker, _ = _taskiq_broker(url)
        await broker.startup()
        await run_receiver_task(broker, max_async_tasks=concurrency)

    asyncio.run(main())


def _streaq_worker(url: str, concurrency: int) -> Any:
    from streaq import Worker

    worker = Worker(redis_url=url, concurrency=concurrency, handle_signals=False)

    @worker.task
    async def noop() -> None:
        mark()

    return worker, noop


def streaq_produce(url: str, n: int) -> None:
    async def main() -> None:
        worker, noop = _streaq_worker(url, 1)
        async with worker:
            for start in range(0, n, 1000):
                await worker.enqueue_many([noop.enqueue() for _ in range(min(1000, n - start))])

    asyncio.run(main())


def streaq_work(url: str, concurrency: int) -> None:
    worker, _ = _streaq_worker(url, concurrency)
    worker.run_sync()


CONTENDERS: dict[str, tuple[str, Callable[[str, int], None], Callable[[str, int], None]]] = {
    # key: (module that must be importable, producer, worker)
    "pyapalis": ("coredis", pyapalis_produce, pyapalis_work),
    "arq": ("arq", arq_produce, arq_work),
    "saq": ("saq", saq_produce, saq_work),
    "taskiq-redis": ("taskiq_redis", taskiq_produce, taskiq_work),
    "streaq": ("streaq", streaq_produce, streaq_work),
}


# -- the parent ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            if Resp(port).call("PING") == b"PONG":
                return process, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("redis-server did not start")
        time.sleep(0.02)


def _child(key: str, role: str, port: int, value: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.redis_bench",
            "--child",
            key,
            role,
            str(port),
            str(value),
        ],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    for process in processes:
        process.wait()


def _reports(client: Resp) -> list[tuple[int, float, float]]:
    raw = client.call("HGETALL", REPORT_KEY) or []
    out = []
    for value in raw[1::2]:
        count, first, last = value.decode().split()
        out.append((int(count), float(first), float(last)))
    return out


def throughput(key: str, port: int, n: int, workers: int, concurrency: int) -> float | None:
    client = Resp(port)
    client.call("FLUSHALL")
    producer = _child(key, "produce", port, n)
    if producer.wait() != 0:
        print(f"  {key}: the producer failed", flush=True)
        return None
    children = [_child(key, "work", port, concurrency) for _ in range(workers)]
    try:
        deadline = time.monotonic() + max(120.0, n / 200)
        while True:
            reports = _reports(client)
            done = sum(count for count, _, _ in reports)
            if done >= n:
                break
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                print(f"  {key}: only {done} of {n} tasks ran", flush=True)
                return None
            time.sleep(0.02)
        started = min(first for count, first, _ in reports if count)
        ended = max(last for count, _, last in reports if count)
        return n / (ended - started)
    finally:
        _stop(children)


def latency(port: int, samples: int) -> tuple[float, float]:
    import trio

    from pyapalis import RedisStorage

    client = Resp(port)
    client.call("FLUSHALL")
    child = _child("pyapalis", "work", port, 1)

    async def main() -> None:
        async with RedisStorage(f"redis://127.0.0.1:{port}/0", namespace=NAMESPACE) as storage:
            await storage.push(0.0)  # the worker is up once this one ran
            while not _reports(client) or _reports(client)[0][0] < 1:
                await trio.sleep(0.02)
            for index in range(samples):
                await trio.sleep(0.02)  # the worker is idle again, blocked on its wake list
                await storage.push(time.time())
                while client.call("LLEN", LATENCY_KEY) < index + 1:
                    await trio.sleep(0.001)

    try:
        trio.run(main)
    finally:
        _stop([child])
    values = sorted(float(v) * 1000 for v in client.call("LRANGE", LATENCY_KEY, 0, -1))
    return statistics.median(values), values[int(len(values) * 0.99) - 1]


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="tasks for pyapalis")
    parser.add_argument("--peer-n", type=int, default=5000, help="tasks for the peers")
    parser.add_argument("--workers", default="1,2", help="worker processes, comma-separated")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        key, role, port, value = args.child
        _, produce, work = CONTENDERS[key]
        url = f"redis://127.0.0.1:{port}/0"
        if role == "produce":
            produce(url, int(value))
        else:
            start_reporter(int(port))
            work(url, int(value))
        return

    server, port = start_server()
    figures: dict[str, Any] = {"throughput": {}, "latency_ms": {}}
    try:
        workers = [int(w) for w in args.workers.split(",")]
        for key in args.only.split(","):
            module = CONTENDERS[key][0]
            if not _installed(module):
                print(f"{key}: not installed (pip install -e '.[bench]'), skipped", flush=True)
                continue
            n = args.n if key == "pyapalis" else args.peer_n
            for count in workers:
                rate = throughput(key, port, n, count, args.concurrency)
                figures["throughput"][f"{key} x{count}"] = rate
                shown = "failed" if rate is None else f"{rate:10.0f} tasks/s"
                print(f"{key:14s} {count} worker process(es), {n} tasks: {shown}", flush=True)
        if "pyapalis" in args.only.split(",") and args.latency_samples:
            p50, p99 = latency(port, args.latency_samples)
            figures["latency_ms"]["pyapalis"] = {"p50": p50, "p99": p99}
            print(
                f"pyapalis pickup latency, idle worker in another process: "
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                flush=True,
            )
        rates = figures["throughput"]
        for count in workers:
            ours = rates.get(f"pyapalis x{count}")
            peers = [
                v
                for k, v in rates.items()
                if k.endswith(f"x{count}") and v and not k.startswith("pyapalis")
            ]
            if ours and peers:
                print(
                    f"{count} worker process(es): pyapalis / fastest peer = "
                    f"{ours / max(peers):.1f}x",
                    flush=True,
                )
    finally:
        server.kill()
        server.wait()
    if args.json:
        with open(args.json, "w") as file:
            json.dump(figures, file, indent=2)


if __name__ == "__main__":
    main()
