"""The background runtime from asyncio: submit, then ``await asyncio.wrap_future(...)``.

Each test runs its own event loop with ``asyncio.run`` (these are plain
``def`` tests: pytest-trio leaves them alone). Waits are bounded by
``asyncio.timeout`` so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import trio

from pyapalis import MemoryStorage, RetryPolicy, WorkerBuilder
from pyapalis.embed._runtime import RuntimeStoppedError, start_in_thread

WAIT = 30.0


def test_task_group_enqueues_and_awaits_results() -> None:
    storage = MemoryStorage()
    handled_on: set[str] = set()

    async def square(item: int) -> int:
        handled_on.add(threading.current_thread().name)
        await trio.lowlevel.checkpoint()
        if item == 13:
            raise ValueError("unlucky")
        return item * item

    worker = WorkerBuilder("squares").backend(storage).concurrency(8).build(square)

    async def main() -> tuple[list[int], BaseException]:
        results: dict[int, int] = {}
        with start_in_thread(worker) as runtime:

            async def one(i: int) -> None:
                results[i] = await asyncio.wrap_future(runtime.submit(storage, i))

            async with asyncio.timeout(WAIT):
                async with asyncio.TaskGroup() as group:
                    for i in range(200):
                        if i != 13:
                            group.create_task(one(i))
                with pytest.raises(ValueError, match="unlucky") as unlucky:
                    await asyncio.wrap_future(runtime.submit(storage, 13))
        return [results[i] for i in sorted(results)], unlucky.value

    values, error = asyncio.run(main())
    assert values == [i * i for i in range(200) if i != 13]
    assert isinstance(error, ValueError)
    assert handled_on == {"pyapalis-squares"}  # handlers ran on the runtime's thread


def test_asyncio_server_hands_requests_to_workers() -> None:
    # A line-based TCP service: each request line becomes a task; the reply is
    # the handler's result, or the error, written back by the asyncio side.
    storage = MemoryStorage()

    async def shout(line: str) -> str:
        await trio.lowlevel.checkpoint()
        if not line:
            raise ValueError("empty line")
        return line.upper()

    worker = (
        WorkerBuilder("shouter")
        .backend(storage)
        .concurrency(4)
        .retry(RetryPolicy.retries(1))
        .build(shout)
    )

    async def main() -> list[list[str]]:
        with start_in_thread(worker) as runtime:

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                while line := await reader.readline():
                    future = runtime.submit(storage, line.decode().strip())
                    try:
                        reply = await asyncio.wrap_future(future)
                    except ValueError as error:
                        reply = f"error: {error}"
                    writer.write(f"{reply}\n".encode())
                    await writer.drain()
                writer.close()
                await writer.wait_closed()

            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]

            async def client(n: int) -> list[str]:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                replies = []
                for line in (f"client {n} line {i}" for i in range(20)):
                    writer.write(f"{line}\n".encode())
                    await writer.drain()
                    replies.append((await reader.readline()).decode().strip())
                writer.write(b"\n")
                replies.append((await reader.readline()).decode().strip())
                writer.close()
                await writer.wait_closed()
                return replies

            async with server, asyncio.timeout(WAIT):
                return list(await asyncio.gather(*(client(n) for n in range(5))))

    replies = asyncio.run(main())
    assert replies == [
        [f"CLIENT {n} LINE {i}" for i in range(20)] + ["error: empty line"] for n in range(5)
    ]


def test_stop_without_blocking_the_event_loop() -> None:
    storage = MemoryStorage()
    release = trio.Event()
    started = threading.Event()

    async def slow(item: str) -> str:
        started.set()
        await release.wait()
        return item

    worker = WorkerBuilder("slow").backend(storage).build(slow)

    async def main() -> tuple[Any, BaseException | None]:
        runtime = start_in_thread(worker)
        in_flight = asyncio.wrap_future(runtime.submit(storage, "in flight"))
        queued = asyncio.wrap_future(runtime.submit(storage, "queued"))
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(WAIT):
            # Stop only once the first task runs: stopped earlier, it would stay queued.
            assert await loop.run_in_executor(None, started.wait, WAIT)
            runtime.stop(wait=False)  # returns at once
            # The loop keeps running while the runtime drains.
            await loop.run_in_executor(
                None, lambda: trio.from_thread.run_sync(release.set, trio_token=runtime.token)
            )
            await loop.run_in_executor(None, runtime.stop)
            value = await in_flight
            error = await asyncio.gather(queued, return_exceptions=True)
        return value, error[0]

    value, error = asyncio.run(main())
    assert value == "in flight"
    assert isinstance(error, RuntimeStoppedError)
