"""The embedding runtime's ``spin`` option and the core's ``spin_until_readable``.

Behaviour only (speed is measured in ``benchmarks/runtime_latency.py``): the
option is validated, off by default, spins after wake-ups when on, and every
task pushed or submitted still runs. Waits are bounded (``WAIT``), never slack.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from pyapalis import MemoryStorage, WorkerBuilder
from pyapalis.embed._runtime import BackgroundRuntime, start_in_thread

WAIT = 30.0
"""Upper bound of any wait here (seconds): reached only by a bug."""


@pytest.fixture
def eventfd() -> Iterator[int]:
    if not hasattr(os, "eventfd"):  # pragma: no cover - not Linux
        pytest.skip("os.eventfd is Linux-only")
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    yield fd
    os.close(fd)


# -- spin_until_readable, on both cores ------------------------------------------


def test_spin_returns_true_at_once_for_a_readable_descriptor(
    core: ModuleType, eventfd: int
) -> None:
    os.eventfd_write(eventfd, 1)
    # A day-long budget: only an early return lets this test finish.
    assert core.spin_until_readable([eventfd], 86_400.0) is True


def test_spin_returns_false_when_its_time_is_up(core: ModuleType, eventfd: int) -> None:
    assert core.spin_until_readable((eventfd,), 0.0) is False
    assert core.spin_until_readable([], 0.0) is False


def test_spin_sees_a_write_from_another_thread(core: ModuleType, eventfd: int) -> None:
    writer = threading.Thread(target=os.eventfd_write, args=(eventfd, 1))
    writer.start()
    try:
        assert core.spin_until_readable([eventfd], 86_400.0) is True
    finally:
        writer.join()


@pytest.mark.parametrize("seconds", [-1.0, math.nan])
def test_spin_rejects_bad_seconds(core: ModuleType, eventfd: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        core.spin_until_readable([eventfd], seconds)


def test_spin_rejects_more_than_64_descriptors(core: ModuleType, eventfd: int) -> None:
    with pytest.raises(ValueError, match="at most 64"):
        core.spin_until_readable([eventfd] * 65, 0.0)


# -- the runtime option -------------------------------------------------------------


def echo(item: Any) -> Any:
    return item


def test_spin_is_off_by_default() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("spin-off").backend(storage).build(echo)
    with start_in_thread(worker) as runtime:
        assert runtime.submit(storage, 1).result(WAIT) == 1
        assert runtime.spin == 0.0
        assert runtime.spin_counts == (0, 0)


@pytest.mark.parametrize(
    ("spin", "error", "message"),
    [
        (-1e-6, ValueError, "spin: must be finite seconds >= 0"),
        (math.nan, ValueError, "spin: must be finite seconds >= 0"),
        (math.inf, ValueError, "spin: must be finite seconds >= 0"),
        ("100us", TypeError, "spin: expected seconds as int or float, got str"),
        (True, TypeError, "spin: expected seconds as int or float, got bool"),
    ],
)
def test_bad_spin_is_refused_before_any_thread_starts(
    spin: Any, error: type[Exception], message: str
) -> None:
    worker = WorkerBuilder("spin-bad").backend(MemoryStorage()).build(echo)
    with pytest.raises(error, match=message):
        BackgroundRuntime(worker, spin=spin)
    with pytest.raises(error, match=message):
        start_in_thread(worker, spin=spin)
    assert not any(thread.name == "pyapalis-spin-bad" for thread in threading.enumerate())


def _wait_for_a_spin(runtime: BackgroundRuntime) -> None:
    """Wait until the runtime's thread has spun: it does when it next parks after
    a wake-up, which an idle run always comes to (polled, bounded by ``WAIT``)."""
    deadline = time.monotonic() + WAIT
    while runtime.spin_counts[0] == 0:
        assert time.monotonic() < deadline, "the runtime never spun"
        time.sleep(0.001)


def test_pushes_from_another_thread_all_run_while_spinning() -> None:
    storage = MemoryStorage()
    seen: list[int] = []
    handled = threading.Event()

    def handler(item: int) -> None:
        seen.append(item)
        handled.set()

    worker = WorkerBuilder("spin-push").backend(storage).build(handler)
    with start_in_thread(worker, spin=0.01) as runtime:
        assert runtime.spin == 0.01
        for item in range(50):
            handled.clear()
            runtime.push(storage, item)
            assert handled.wait(WAIT), f"push {item} was not handled"
        _wait_for_a_spin(runtime)
        spins, caught = runtime.spin_counts
        assert spins >= 1
        assert 0 <= caught <= spins
    assert seen == list(range(50))


def test_a_storage_used_only_through_submit_is_spun_on_too() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("spin-submit").backend(storage).build(echo)
    with start_in_thread(worker, spin=0.01) as runtime:
        for item in range(20):
            assert runtime.submit(storage, item).result(WAIT) == item
        assert runtime.submit_batch(storage, range(5)).result(WAIT) == [0, 1, 2, 3, 4]
        _wait_for_a_spin(runtime)
        assert runtime.spin_counts[0] >= 1


def test_push_still_refuses_a_storage_without_push_nowait_after_a_good_one() -> None:
    storage = MemoryStorage()
    worker = WorkerBuilder("spin-type").backend(storage).build(echo)
    with start_in_thread(worker, spin=0.001) as runtime:
        runtime.push(storage, 1)
        runtime.push(storage, 2)  # checked once: the second push takes the fast path
        with pytest.raises(TypeError, match="push: storage must have push_nowait"):
            runtime.push(object(), 3)
