"""The background runtime: a worker on its own thread, fed from plain threads.

These tests use real threads, so they run in real time; they wait on events
and futures, never on sleeps. Each one bounds its waits (``WAIT``) so a bug
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from pyapalis import (
    AbortError,
    MemoryStorage,
    Monitor,
    RetryPolicy,
    TaskFailedError,
    WorkerBuilder,
    WorkerContext,
    WorkerStateError,
)
from pyapalis._errors import PyapalisError
from pyapalis.embed._runtime import BackgroundRuntime, RuntimeStoppedError, start_in_thread

WAIT = 30.0
"""Upper bound of any wait in these tests (seconds): reached only by a bug."""


def wait(event: threading.Event) -> None:
    assert event.wait(WAIT), "timed out waiting for an event"


def echo(item: Any) -> Any:
    return item


# -- basic use from plain threads ----------------------------------------------


def test_submit_resolves_with_the_handler_value() -> None:
    storage = MemoryStorage()

    async def double(item: int) -> int:
        await trio.lowlevel.checkpoint()
        return item * 2

    worker = WorkerBuilder("doubler").backend(storage).build(double)
    with start_in_thread(worker) as runtime:
        assert runtime.is_running
        assert runtime.thread.name == "pyapalis-doubler"
        assert runtime.thread.daemon
        futures = [runtime.submit(storage, i) for i in range(100)]
        assert [future.result(WAIT) for future in futures] == [i * 2 for i in range(100)]
    assert runtime.is_stopped
    assert not runtime.thread.is_alive()


def test_push_from_four_threads_loses_nothing() -> None:
    producers, per_producer = 4, 25_000
    total = producers * per_producer
    storage = MemoryStorage()
    seen: list[tuple[int, int]] = []
    all_seen = threading.Event()

    def record(item: tuple[int, int]) -> None:
        seen.append(item)
        if len(seen) == total:
            all_seen.set()

    worker = WorkerBuilder("sink").backend(storage).build(record)
    with start_in_thread(worker) as runtime:
        gate = threading.Barrier(producers)

        def produce(producer: int) -> None:
            gate.wait()
            push = runtime.push
            for i in range(per_producer):
                push(storage, (producer, i))

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait(all_seen)
    assert len(seen) == total
    assert set(seen) == {(p, i) for p in range(producers) for i in range(per_producer)}
    # Each producer's tasks ran in the order it pushed them (one FIFO queue).
    for producer in range(producers):
        mine = [i for p, i in seen if p == producer]
        assert mine == sorted(mine)
    assert len(storage) == 0


def test_submit_from_four_threads_every_future_resolves() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("echo").backend(storage).concurrency(3).build(echo)
    with start_in_thread(worker) as runtime:

        def produce(producer: int) -> list[Any]:
            futures = [runtime.submit(storage, (producer, i)) for i in range(2_500)]
            return [future.result(WAIT) for future in futures]

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(produce, range(4)))
    assert results == [[(p, i) for i in range(2_500)] for p in range(4)]
    assert runtime._pending == {}


def test_push_and_submit_from_the_trio_thread() -> None:
    storage = MemoryStorage()
    inner: list[concurrent.futures.Future[Any]] = []
    done = threading.Event()

    def handler(item: str) -> str:
        if item == "outer":
            runtime.push(storage, "pushed")
            inner.append(runtime.submit(storage, "submitted"))
        if item == "pushed":
            done.set()
        return item.upper()

    worker = WorkerBuilder("nested").backend(storage).build(handler)
    with start_in_thread(worker) as runtime:
        assert runtime.submit(storage, "outer").result(WAIT) == "OUTER"
        assert inner[0].result(WAIT) == "SUBMITTED"
        wait(done)


# -- outcomes ------------------------------------------------------------------


def test_handler_exception_is_delivered_to_the_future() -> None:
    storage = MemoryStorage()
    raised: dict[int, Exception] = {}

    def fail(item: int) -> None:
        raised[item] = LookupError(f"no {item}")
        raise raised[item]

    worker = WorkerBuilder("failing").backend(storage).build(fail)
    with start_in_thread(worker) as runtime:
        futures = [runtime.submit(storage, i) for i in range(3)]
        for i, future in enumerate(futures):
            error = future.exception(WAIT)
            assert error is raised[i]  # the exception itself, not a copy or wrapper
            with pytest.raises(LookupError, match=f"no {i}"):
                future.result()


def test_abort_false_and_value_outcomes() -> None:
    storage = MemoryStorage()
    abort = AbortError("bad input")

    def handler(item: str) -> Any:
        if item == "abort":
            raise abort
        if item == "false":
            return False
        return None

    worker = WorkerBuilder("outcomes").backend(storage).retry(RetryPolicy.retries(2)).build(handler)
    with start_in_thread(worker) as runtime:
        aborted = runtime.submit(storage, "abort")
        falsy = runtime.submit(storage, "false")
        none = runtime.submit(storage, "none")
        assert aborted.exception(WAIT) is abort  # never retried: Killed at once
        assert isinstance(falsy.exception(WAIT), TaskFailedError)
        assert none.result(WAIT) is None


def test_with_retries_only_the_final_failure_resolves_the_future() -> None:
    storage = MemoryStorage()
    second_started = threading.Event()
    go_on = threading.Event()
    errors: list[Exception] = []

    def flaky(item: int, ctx: WorkerContext) -> None:
        attempt = len(errors) + 1
        if attempt == 2:
            second_started.set()
            wait(go_on)  # blocks the trio thread while the test looks
        errors.append(ValueError(f"attempt {attempt}"))
        raise errors[-1]

    worker = WorkerBuilder("flaky").backend(storage).retry(RetryPolicy.retries(2)).build(flaky)
    with start_in_thread(worker) as runtime:
        future = runtime.submit(storage, 1)
        wait(second_started)
        assert not future.done()  # the first failure was retried, not delivered
        go_on.set()
        assert future.exception(WAIT) is errors[2]
    assert [str(e) for e in errors] == ["attempt 1", "attempt 2", "attempt 3"]


def test_a_retried_task_that_succeeds_resolves_with_its_value() -> None:
    storage = MemoryStorage()
    executions: list[int] = []

    def flaky(item: int) -> str:
        executions.append(item)
        if len(executions) < 3:
            raise ValueError("not yet")
        return "third time lucky"

    worker = WorkerBuilder("flaky").backend(storage).retry(RetryPolicy.retries(5)).build(flaky)
    with start_in_thread(worker) as runtime:
        assert runtime.submit(storage, 7).result(WAIT) == "third time lucky"
    assert executions == [7, 7, 7]


def test_concurrent_retries_deliver_the_last_executions_error() -> None:
    # Immediate retries with several consumer loops: a retried execution may
    # finish before the failure of the execution before it is reported. The
    # future must still get the last execution's error.
    storage = MemoryStorage()
    attempts: dict[int, int] = {}

    async def fail(item: int) -> None:
        attempts[item] = attempts.get(item, 0) + 1
        raise ValueError(item, attempts[item])

    worker = (
        WorkerBuilder("racing")
        .backend(storage)
        .concurrency(4)
        .retry(RetryPolicy.retries(2))
        .build(fail)
    )
    with start_in_thread(worker) as runtime:
        # One task at a time, so that idle loops pick the retries up at once.
        for i in range(200):
            error = runtime.submit(storage, i).exception(WAIT)
            assert isinstance(error, ValueError)
            assert error.args == (i, 3)
        futures = [runtime.submit(storage, i) for i in range(200, 400)]
        for i, future in enumerate(futures, 200):
            assert future.exception(WAIT).args == (i, 3)  # type: ignore[union-attr]
    assert attempts == {i: 3 for i in range(400)}


def test_a_cancelled_future_does_not_disturb_the_runtime() -> None:
    storage = MemoryStorage()
    started = threading.Event()
    go_on = threading.Event()

    def handler(item: str) -> str:
        if item == "slow":
            started.set()
            wait(go_on)
        return item

    worker = WorkerBuilder("cancel").backend(storage).build(handler)
    with start_in_thread(worker) as runtime:
        slow = runtime.submit(storage, "slow")
        wait(started)
        assert slow.cancel()  # the caller stops waiting; the task still runs
        go_on.set()
        assert runtime.submit(storage, "next").result(WAIT) == "next"
    assert slow.cancelled()


# -- stopping ------------------------------------------------------------------


def test_stop_lets_in_flight_tasks_finish_and_keeps_queued_ones() -> None:
    storage = MemoryStorage()
    started = threading.Semaphore(0)
    release = trio.Event()

    async def handler(item: str) -> str:
        started.release()
        await release.wait()
        return item

    worker = WorkerBuilder("graceful").backend(storage).concurrency(2).build(handler)
    runtime = start_in_thread(worker)
    first, second, queued = (runtime.submit(storage, name) for name in ("a", "b", "c"))
    for _ in range(2):
        assert started.acquire(timeout=WAIT)
    runtime.stop(timeout=WAIT, wait=False)
    assert not runtime.is_running
    with pytest.raises(RuntimeStoppedError, match="stopping"):
        runtime.submit(storage, "late")
    # Queued after the stop request: runs once the worker has stopped pulling.
    trio.from_thread.run_sync(release.set, trio_token=runtime.token)
    runtime.stop()
    assert (first.result(0), second.result(0)) == ("a", "b")
    error = queued.exception(0)
    assert isinstance(error, RuntimeStoppedError)
    assert "still in its storage" in str(error)
    assert len(storage) == 1  # "c" was never taken
    assert runtime.is_stopped


def test_stop_cancels_in_flight_tasks_at_the_timeout_and_hands_them_back() -> None:
    storage = MemoryStorage()
    started = threading.Semaphore(0)
    cancelled: list[str] = []

    async def stuck(item: str) -> None:
        started.release()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(item)
            raise

    worker = WorkerBuilder("stuck").backend(storage).concurrency(2).build(stuck)
    runtime = start_in_thread(worker)
    futures = [runtime.submit(storage, name) for name in ("a", "b", "c")]
    for _ in range(2):
        assert started.acquire(timeout=WAIT)
    runtime.stop(timeout=0.05)
    assert sorted(cancelled) == ["a", "b"]
    for future in futures:
        assert isinstance(future.exception(0), RuntimeStoppedError)
    assert len(storage) == 3  # two handed back unfinished, one never taken
    assert storage.statistics().ready == 3


def test_stop_from_a_handler_does_not_wait_for_itself() -> None:
    storage = MemoryStorage()

    def handler(item: str) -> str:
        runtime.stop()  # returns at once on the runtime's own thread
        return item

    worker = WorkerBuilder("self-stopping").backend(storage).build(handler)
    runtime = start_in_thread(worker)
    assert runtime.submit(storage, "x").result(WAIT) == "x"
    assert runtime.join(WAIT)
    assert runtime.is_stopped
    runtime.stop()  # already stopped: nothing to do


def test_a_worker_that_stops_by_itself_ends_the_runtime() -> None:
    storage = MemoryStorage()

    def handler(item: str, ctx: WorkerContext) -> str:
        ctx.stop()
        return item

    worker = WorkerBuilder("one-shot").backend(storage).build(handler)
    runtime = start_in_thread(worker)
    assert runtime.submit(storage, "only").result(WAIT) == "only"
    assert runtime.join(WAIT)
    with pytest.raises(RuntimeStoppedError, match="stopped; it takes no more tasks"):
        runtime.push(storage, "more")
    runtime.stop()


def test_use_after_stop_is_refused() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("refuse").backend(storage).build(echo)
    runtime = start_in_thread(worker)
    runtime.stop()
    assert issubclass(RuntimeStoppedError, PyapalisError)
    with pytest.raises(RuntimeStoppedError, match="push: runtime 'pyapalis-refuse' is stopped"):
        runtime.push(storage, 1)
    with pytest.raises(RuntimeStoppedError, match="submit: runtime 'pyapalis-refuse' is stopped"):
        runtime.submit(storage, 1)
    with pytest.raises(RuntimeStoppedError, match="already started"):
        runtime.start()
    with (
        pytest.raises(RuntimeStoppedError, match="with: runtime 'pyapalis-refuse' is stopped"),
        runtime,
    ):
        pass
    runtime.stop()  # idempotent
    assert len(storage) == 0


def test_not_started_runtime_refuses_tasks_and_stops_quietly() -> None:
    storage = MemoryStorage()
    runtime = BackgroundRuntime(WorkerBuilder("idle").backend(storage).build(echo))
    with pytest.raises(RuntimeStoppedError, match="not started yet"):
        runtime.push(storage, 1)
    with pytest.raises(RuntimeStoppedError, match="not started yet"):
        _ = runtime.token
    runtime.stop()
    assert runtime.is_stopped
    assert not runtime.thread.is_alive()


def test_context_manager_starts_and_stops() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("ctx").backend(storage).build(echo)
    runtime = BackgroundRuntime(worker, name="my-runtime")
    with runtime as entered:
        assert entered is runtime
        assert runtime.thread.name == "my-runtime"
        assert runtime.submit(storage, 3).result(WAIT) == 3
    assert runtime.is_stopped
    assert repr(runtime) == "BackgroundRuntime(name='my-runtime', state=Stopped)"


# -- errors --------------------------------------------------------------------


def test_startup_error_is_raised_by_start() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("used").backend(storage).build(echo)
    worker.context.stop()
    trio.run(worker.run)  # the worker has run once already
    with pytest.raises(WorkerStateError, match="has already run"):
        start_in_thread(worker)


def test_backend_failure_stops_the_runtime_and_is_raised_by_stop() -> None:
    class Failing(MemoryStorage):
        def take_nowait(self) -> Any:  # type: ignore[override]
            task = super().take_nowait()
            if task is not None and task.args == "boom":
                raise OSError("disk on fire")
            return task

    storage = Failing()
    started = threading.Event()
    go_on = threading.Event()

    def handler(item: str) -> str:
        if item == "first":
            started.set()
            wait(go_on)
        return item

    worker = WorkerBuilder("fragile").backend(storage).build(handler)
    runtime = start_in_thread(worker)
    first = runtime.submit(storage, "first")
    wait(started)  # the worker is busy: the next two wait in the queue
    boom = runtime.submit(storage, "boom")
    after = runtime.submit(storage, "after")
    go_on.set()
    assert first.result(WAIT) == "first"
    assert runtime.join(WAIT)
    for future in (boom, after):
        error = future.exception(0)
        assert isinstance(error, RuntimeStoppedError)
        assert isinstance(error.__cause__, OSError)
    with pytest.raises(RuntimeStoppedError) as refused:
        runtime.push(storage, "more")
    assert isinstance(refused.value.__cause__, OSError)
    with pytest.raises(OSError, match="disk on fire"):
        runtime.stop()
    runtime.stop()  # the error is raised once


def test_bad_arguments_are_refused() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("bad").backend(storage).build(echo)
    with pytest.raises(TypeError, match="target must be a Worker or a Monitor"):
        BackgroundRuntime(object())  # type: ignore[arg-type]

    class RunOnly:
        async def run(self) -> None: ...

    with pytest.raises(TypeError, match=r"context.stop\(\) or shutdown\(\)"):
        BackgroundRuntime(RunOnly())
    with pytest.raises(ValueError, match=r"stop_timeout: must be >= 0 seconds.*-1"):
        BackgroundRuntime(worker, stop_timeout=-1)
    with pytest.raises(TypeError, match="stop_timeout: expected seconds"):
        BackgroundRuntime(worker, stop_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        BackgroundRuntime(worker, name="")
    with start_in_thread(worker) as runtime:
        with pytest.raises(TypeError, match="submit: storage must be a MemoryStorage, got dict"):
            runtime.submit({}, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"push: storage must have push_nowait\(\).*list"):
            runtime.push([], 1)
        with pytest.raises(ValueError, match="timeout: must be >= 0 seconds"):
            runtime.stop(float("nan"))
        assert runtime.is_running


def test_a_full_storage_refuses_a_submit_without_leaking_its_future() -> None:
    storage = MemoryStorage(maxsize=1)
    started = threading.Event()
    go_on = threading.Event()

    def handler(item: str) -> str:
        if item == "block":
            started.set()
            wait(go_on)
        return item

    worker = WorkerBuilder("bounded").backend(storage).build(handler)
    with start_in_thread(worker) as runtime:
        blocking = runtime.submit(storage, "block")
        wait(started)
        queued = runtime.submit(storage, "queued")
        with pytest.raises(trio.WouldBlock, match="maxsize=1"):
            runtime.submit(storage, "refused")
        with pytest.raises(trio.WouldBlock):
            runtime.push(storage, "refused")
        assert len(runtime._pending) == 2
        go_on.set()
        assert (blocking.result(WAIT), queued.result(WAIT)) == ("block", "queued")


def test_stopping_restores_the_storage() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("restore").backend(storage).build(echo)
    with start_in_thread(worker) as runtime:
        assert storage.statistics().outcome_listeners == 0  # push-only so far
        runtime.submit(storage, 1).result(WAIT)
        assert storage.statistics().outcome_listeners == 1
        assert storage.statistics().fast_acks  # the listener is called from the recorder
    assert storage.statistics().outcome_listeners == 0
    assert "ack" not in vars(storage)
    assert worker.context.listeners == ()


# -- monitors --------------------------------------------------------------------


def test_a_monitor_runs_several_workers_and_stops_through_shutdown() -> None:
    letters, numbers = MemoryStorage(), MemoryStorage()
    monitor = (
        Monitor()
        .register(WorkerBuilder("letters").backend(letters).build(str.upper))
        .register(WorkerBuilder("numbers").backend(numbers).concurrency(2).build(lambda n: -n))
    )
    with start_in_thread(monitor, name="monitor") as runtime:
        assert runtime.thread.name == "monitor"
        upper = [runtime.submit(letters, c) for c in "abc"]
        negated = [runtime.submit(numbers, n) for n in range(3)]
        assert [f.result(WAIT) for f in upper] == ["A", "B", "C"]
        assert [f.result(WAIT) for f in negated] == [0, -1, -2]
    assert monitor.is_shutting_down
    assert all(worker.context.is_stopped for worker in monitor.workers)
    assert "ack" not in vars(letters) and "ack" not in vars(numbers)


def test_under_a_monitor_handler_errors_reach_the_future_and_stop_ends_use() -> None:
    storage = MemoryStorage()

    async def checked(item: int) -> int:
        await trio.lowlevel.checkpoint()
        if item < 0:
            raise ValueError(f"negative: {item}")
        return item

    monitor = Monitor().register(WorkerBuilder("checked").backend(storage).build(checked))
    runtime = start_in_thread(monitor)
    good, bad = runtime.submit(storage, 1), runtime.submit(storage, -1)
    assert good.result(WAIT) == 1
    error = bad.exception(WAIT)
    assert isinstance(error, ValueError) and str(error) == "negative: -1"
    runtime.stop(WAIT)
    assert runtime.is_stopped and monitor.workers[0].context.is_stopped
    with pytest.raises(RuntimeStoppedError):
        runtime.submit(storage, 3)


# -- interpreter exit ------------------------------------------------------------


def run_script(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import threading
        import trio
        from pyapalis import MemoryStorage, WorkerBuilder
        from pyapalis.embed._runtime import start_in_thread

        storage = MemoryStorage()
        started = threading.Event()
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_interpreter_exit_lets_the_task_in_flight_finish() -> None:
    proc = run_script(
        """
        async def handler(item):
            started.set()
            await trio.sleep(0.2)  # still running when the main thread ends
            print("finished", item, flush=True)

        worker = WorkerBuilder("exit").backend(storage).build(handler)
        runtime = start_in_thread(worker)
        runtime.push(storage, 1)
        started.wait()
        print("main thread done", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["main thread done", "finished 1"]
    assert proc.stderr == ""


def test_interpreter_exit_cancels_a_stuck_task_at_the_stop_timeout() -> None:
    proc = run_script(
        """
        async def handler(item):
            started.set()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                print("cancelled", item, flush=True)
                raise

        worker = WorkerBuilder("exit").backend(storage).build(handler)
        runtime = start_in_thread(worker, stop_timeout=0.1)
        runtime.push(storage, 1)
        started.wait()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["cancelled 1"]
    assert proc.stderr == ""


def test_without_stop_at_exit_the_interpreter_abandons_the_thread() -> None:
    proc = run_script(
        """
        async def handler(item):
            started.set()
            try:
                await trio.sleep_forever()
            finally:
                print("never printed", flush=True)

        worker = WorkerBuilder("exit").backend(storage).build(handler)
        runtime = start_in_thread(worker, stop_at_exit=False)
        runtime.push(storage, 1)
        started.wait()
        print("main thread done", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["main thread done"]


# -- examples ------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            "embed_sync.py",
            [
                "cat.png -> thumbnail",
                "dog.jpg -> thumbnail",
                "failed: cannot resize party.gif",
                "tree.png -> thumbnail",
                "batch a.png: a.png -> thumbnail",
                "batch b.gif: cannot resize b.gif",
                "stopped",
            ],
        ),
        (
            "embed_asyncio.py",
            [
                "AAPL: 400.0",
                "MSFT: 400.0",
                "GOOG: 400.0",
                "???: LookupError(\"unknown symbol '???'\")",
                "stopped",
            ],
        ),
    ],
)
def test_embedding_examples_run(example: str, expected: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected
    assert proc.stderr == ""
