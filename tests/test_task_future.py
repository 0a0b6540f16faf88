"""TaskFuture: the cheap future ``runtime.submit`` returns behaves as a concurrent.futures.Future.

It shares one condition with every other TaskFuture and keeps its lists only
when used, so these tests check what code written for the standard future
relies on: ``result``/``exception`` with and without timeouts, cancelling,
callbacks, ``concurrent.futures.wait``/``as_completed``, ``asyncio.wrap_future``,
and several threads sleeping on different futures at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
from typing import Any

import pytest

from pyapalis import WorkerBuilder, start_in_thread
from pyapalis.backends import MemoryStorage
from pyapalis.embed._future import TaskFuture, settle

WAIT = 30.0  # seconds; only reached if something is broken


def _sleeping(future: TaskFuture[Any]) -> bool:
    return future._sleepers > 0


def _wait_until(predicate: Any) -> None:
    """Spin (yielding the GIL) until ``predicate()``; a broken test times out at WAIT."""
    done = threading.Event()
    deadline = threading.Timer(WAIT, done.set)
    deadline.start()
    try:
        while not predicate():
            if done.wait(0.0005):
                raise AssertionError("condition not reached")
    finally:
        deadline.cancel()


def test_is_a_concurrent_future_settled_once() -> None:
    future: TaskFuture[int] = TaskFuture()
    assert isinstance(future, concurrent.futures.Future)
    assert not future.done() and not future.running() and not future.cancelled()
    assert settle(future, 7, None) is True
    assert future.done() and future.result() == 7 and future.exception() is None
    assert settle(future, 8, None) is False  # settled once: the first outcome stays
    assert future.result() == 7
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(9)
    assert "finished returned int" in repr(future)


def test_a_failed_future_raises_its_error() -> None:
    future: TaskFuture[int] = TaskFuture()
    error = ValueError("bad")
    settle(future, None, error)
    assert future.exception() is error
    with pytest.raises(ValueError, match="bad") as raised:
        future.result()
    assert raised.value is error
    other: TaskFuture[int] = TaskFuture()
    other.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        other.result(0)
    with pytest.raises(TypeError, match="exception must be an exception"):
        TaskFuture().set_exception(None)


def test_timeouts_and_cancelling() -> None:
    future: TaskFuture[int] = TaskFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.001)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.exception(timeout=0)
    assert future.cancel() and future.cancelled()
    assert settle(future, 1, None) is False  # a cancelled future stays cancelled
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()
    with pytest.raises(concurrent.futures.CancelledError):
        future.exception()


def test_done_callbacks_run_once_settled_or_at_once_if_done() -> None:
    future: TaskFuture[str] = TaskFuture()
    seen: list[Any] = []
    future.add_done_callback(lambda f: seen.append(("first", f.result())))
    future.add_done_callback(lambda f: 1 / 0)  # logged, the others still run
    future.add_done_callback(lambda f: seen.append(("second", f.result())))
    assert seen == []
    settle(future, "ok", None)
    assert seen == [("first", "ok"), ("second", "ok")]
    future.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert seen[-1] == ("late", "ok")
    cancelled: TaskFuture[str] = TaskFuture()
    cancelled.add_done_callback(lambda f: seen.append(("cancelled", f.cancelled())))
    cancelled.cancel()
    assert seen[-1] == ("cancelled", True)


def test_a_sleeping_thread_is_woken_by_its_own_future_only() -> None:
    mine: TaskFuture[str] = TaskFuture()
    other: TaskFuture[str] = TaskFuture()
    got: list[Any] = []
    sleeper = threading.Thread(target=lambda: got.append(mine.result(WAIT)))
    other_sleeper = threading.Thread(target=lambda: got.append(other.exception(WAIT)))
    sleeper.start()
    other_sleeper.start()
    _wait_until(lambda: _sleeping(mine) and _sleeping(other))
    settle(other, None, RuntimeError("other"))  # wakes both; mine sleeps again
    other_sleeper.join(WAIT)
    assert not other_sleeper.is_alive()
    assert sleeper.is_alive() and not mine.done()
    settle(mine, "mine", None)
    sleeper.join(WAIT)
    assert got[0].args == ("other",) and got[1] == "mine"


def test_cancelling_wakes_a_sleeper() -> None:
    future: TaskFuture[str] = TaskFuture()
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            future.result(WAIT)
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    _wait_until(lambda: _sleeping(future))
    future.cancel()
    thread.join(WAIT)
    assert isinstance(raised[0], concurrent.futures.CancelledError)


def test_concurrent_futures_wait_and_as_completed() -> None:
    futures: list[TaskFuture[int]] = [TaskFuture() for _ in range(4)]

    def settle_later() -> None:
        _wait_until(lambda: futures[0]._watchers)  # wait() has installed its waiter
        for n, future in enumerate(reversed(futures)):
            if n == 2:
                settle(future, None, ValueError(n))
            else:
                settle(future, n, None)

    thread = threading.Thread(target=settle_later)
    thread.start()
    done, not_done = concurrent.futures.wait(
        futures, timeout=WAIT, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    thread.join(WAIT)
    assert futures[1] in done and isinstance(futures[1].exception(), ValueError)
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    assert not not_done
    order = [f.exception() or f.result() for f in concurrent.futures.as_completed(futures)]
    assert sorted(map(str, order)) == ["0", "1", "2", "3"]


def test_asyncio_awaits_it_through_wrap_future() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("wrapped").backend(storage).build(lambda n: n * 2)

    async def main() -> list[int]:
        with start_in_thread(worker) as runtime:
            futures = [runtime.submit(storage, n) for n in range(5)]
            assert all(isinstance(f, TaskFuture) for f in futures)
            return list(await asyncio.gather(*map(asyncio.wrap_future, futures)))

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]


def test_polling_a_future_does_not_take_the_shared_condition() -> None:
    """done()/cancelled()/running() read one field: a thread polling its futures
    never waits for the condition every TaskFuture shares."""
    future: TaskFuture[int] = TaskFuture()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with TaskFuture._condition:
            holding.set()
            release.wait(WAIT)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(WAIT)
    polled: list[tuple[bool, bool, bool]] = []
    poller = threading.Thread(
        target=lambda: polled.append((future.done(), future.cancelled(), future.running()))
    )
    try:
        poller.start()
        poller.join(WAIT)  # would wait for the holder if polling took the condition
        assert polled == [(False, False, False)]
    finally:
        release.set()
        holder.join(WAIT)
        poller.join(WAIT)
    settle(future, 1, None)
    assert (future.done(), future.cancelled(), future.running()) == (True, False, False)
    cancelled: TaskFuture[int] = TaskFuture()
    cancelled.cancel()
    assert (cancelled.done(), cancelled.cancelled()) == (True, True)


def test_a_pending_future_is_one_object_for_the_collector() -> None:
    future: TaskFuture[int] = TaskFuture()
    # No instance dict, no lists, no condition of its own: it refers to its
    # class and its state, nothing else.
    assert set(map(id, gc.get_referents(future))) == {id(TaskFuture), id(future._state)}
    assert future._watchers is None and future._callbacks is None
