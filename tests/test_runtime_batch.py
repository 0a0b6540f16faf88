"""BackgroundRuntime.submit_batch: many tasks, one future of all their outcomes.

Real threads and real time, as in ``test_runtime.py``: the tests wait on
events and futures (bounded by ``WAIT``), never on sleeps.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio

from pyapalis import MemoryStorage, RetryPolicy, WorkerBuilder
from pyapalis.embed._runtime import BackgroundRuntime, RuntimeStoppedError, start_in_thread

WAIT = 30.0
"""Upper bound of any wait in these tests (seconds): reached only by a bug."""


def wait(event: threading.Event) -> None:
    assert event.wait(WAIT), "timed out waiting for an event"


def test_results_come_in_the_order_of_the_items() -> None:
    storage = MemoryStorage()

    async def square(item: int) -> int:
        for _ in range(item % 5):  # later items often finish first
            await trio.lowlevel.checkpoint()
        return item * item

    worker = WorkerBuilder("squares").backend(storage).concurrency(8).build(square)
    with start_in_thread(worker) as runtime:
        future = runtime.submit_batch(storage, (i for i in range(1_000)))
        assert future.result(WAIT) == [i * i for i in range(1_000)]
    assert runtime._pending == {}


def test_an_empty_batch_is_resolved_at_once() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("empty").backend(storage).build(lambda item: item)
    with start_in_thread(worker) as runtime:
        future = runtime.submit_batch(storage, [])
        assert future.done() and future.result() == []
        assert len(storage) == 0


def test_a_failure_fails_the_batch_at_once_and_the_rest_still_run() -> None:
    storage = MemoryStorage()
    ran: list[int] = []
    failed = threading.Event()
    go_on = threading.Event()
    boom = LookupError("no 1")

    def handler(item: int) -> int:
        ran.append(item)
        if item == 1:
            raise boom
        if item == 2:
            failed.set()
            wait(go_on)  # the batch must have failed before this task ends
        return item

    worker = WorkerBuilder("gather").backend(storage).build(handler)
    with start_in_thread(worker) as runtime:
        future = runtime.submit_batch(storage, [0, 1, 2, 3])
        wait(failed)
        assert future.exception(WAIT) is boom
        go_on.set()
        tail = runtime.submit_batch(storage, ["after"])
        assert tail.result(WAIT) == ["after"]
    assert ran == [0, 1, 2, 3, "after"]


def test_return_exceptions_puts_each_failure_in_its_place() -> None:
    storage = MemoryStorage()
    errors = {i: ValueError(f"odd {i}") for i in range(1, 10, 2)}

    def handler(item: int) -> int:
        if item in errors:
            raise errors[item]
        return -item

    worker = WorkerBuilder("gather").backend(storage).build(handler)
    with start_in_thread(worker) as runtime:
        results = runtime.submit_batch(storage, range(10), return_exceptions=True).result(WAIT)
    assert results == [errors.get(i, -i) for i in range(10)]
    assert all(results[i] is errors[i] for i in errors)  # the exceptions themselves


def test_only_final_outcomes_count_with_retries() -> None:
    storage = MemoryStorage()
    attempts: dict[int, int] = {}

    def flaky(item: int) -> str:
        attempts[item] = attempts.get(item, 0) + 1
        if attempts[item] < 3:
            raise ValueError("not yet")
        return f"{item} after {attempts[item]}"

    worker = WorkerBuilder("flaky").backend(storage).retry(RetryPolicy.retries(5)).build(flaky)
    with start_in_thread(worker) as runtime:
        assert runtime.submit_batch(storage, [1, 2]).result(WAIT) == ["1 after 3", "2 after 3"]


@pytest.mark.parametrize("size", [3, 10_000])
def test_stopping_before_the_batch_finishes_fails_its_future_once(size: int) -> None:
    storage = MemoryStorage()
    started = threading.Event()
    release = trio.Event()

    async def handler(item: int) -> int:
        started.set()
        await release.wait()
        return item

    worker = WorkerBuilder("stopping").backend(storage).build(handler)
    runtime = start_in_thread(worker)
    future = runtime.submit_batch(storage, range(size))
    wait(started)
    failures: list[BaseException | None] = []
    future.add_done_callback(lambda done: failures.append(done.exception()))
    runtime.stop(timeout=WAIT, wait=False)
    # Queued after the stop request: runs once the worker has stopped pulling.
    trio.from_thread.run_sync(release.set, trio_token=runtime.token)
    runtime.stop()
    [error] = failures
    assert isinstance(error, RuntimeStoppedError)
    assert "the task is still in its storage" in str(error)
    assert [task.args for task in storage._queued_tasks()] == list(range(1, size))
    assert runtime._pending == {}


def test_a_storage_that_fills_part_way_says_how_many_were_queued() -> None:
    storage = MemoryStorage(maxsize=2)
    started = threading.Event()
    go_on = threading.Event()
    ran: list[str] = []

    def handler(item: str) -> str:
        ran.append(item)
        if item == "block":
            started.set()
            wait(go_on)
        return item

    worker = WorkerBuilder("bounded").backend(storage).build(handler)
    with start_in_thread(worker) as runtime:
        blocking = runtime.submit(storage, "block")
        wait(started)
        with pytest.raises(
            trio.WouldBlock, match=r"maxsize=2\) after queueing 2 of 3 tasks \(those run"
        ):
            runtime.submit_batch(storage, ["a", "b", "c"])
        assert list(runtime._pending.values()) == [blocking]  # the batch left nothing
        go_on.set()
        assert blocking.result(WAIT) == "block"
        assert runtime.submit_batch(storage, ["d"]).result(WAIT) == ["d"]
    assert ran == ["block", "a", "b", "d"]


def test_batches_from_four_threads_all_resolve() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("threads").backend(storage).concurrency(4).build(lambda item: item)
    results: dict[int, list[Any]] = {}
    with start_in_thread(worker) as runtime:

        def produce(producer: int) -> None:
            items = [(producer, i) for i in range(2_500)]
            results[producer] = runtime.submit_batch(storage, items).result(WAIT)

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
    assert results == {p: [(p, i) for i in range(2_500)] for p in range(4)}


def test_bad_calls_name_the_problem() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("bad").backend(storage).build(lambda item: item)
    unstarted = BackgroundRuntime(worker)
    with pytest.raises(RuntimeStoppedError, match=r"submit_batch: runtime .* is not started yet"):
        unstarted.submit_batch(storage, [1])
    with start_in_thread(worker) as runtime:
        with pytest.raises(TypeError, match="submit_batch: storage must be a MemoryStorage, got"):
            runtime.submit_batch({}, [1])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"items must be an iterable .* got int"):
            runtime.submit_batch(storage, 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not a string"):
            runtime.submit_batch(storage, "abc")
        assert runtime._pending == {} and len(storage) == 0
    with pytest.raises(RuntimeStoppedError, match=r"submit_batch: runtime .* is stopped"):
        runtime.submit_batch(storage, [1])


def test_a_runtime_stopping_while_the_items_are_read_leaves_nothing_pending() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("racing").backend(storage).build(lambda item: item)
    runtime = start_in_thread(worker)

    def items() -> Any:
        yield 1
        runtime.stop()  # the runtime ends while the batch is being read
        yield from range(2, 6)

    future = runtime.submit_batch(storage, items())
    error = future.exception(WAIT)
    assert isinstance(error, RuntimeStoppedError)
    assert "stopped before task" in str(error)
    assert runtime._pending == {}
    assert len(storage) == 5  # queued, not lost: they are in the storage
