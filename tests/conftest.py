"""Shared fixtures for the pyapalis test suite."""

from __future__ import annotations

import importlib
import os
import time
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

# Declares trio's MockClock (autojump_clock) a virtual clock: backends then keep
# blocking work (fsync, SQLite) on the trio thread in virtual-time tests.
import pyapalis.testing  # noqa: F401

if TYPE_CHECKING:
    from trio.testing import MockClock

    from pyapalis.testing import WallClock

NO_EXTENSIONS = os.environ.get("PYAPALIS_NO_EXTENSIONS", "").strip().lower() in {
    "1",
    "true",
    "yes",
    "on",
}
"""True when the run is pure Python on purpose (``PYAPALIS_NO_EXTENSIONS=1``)."""

_CORE_MODULES = {"cython": "pyapalis._core", "python": "pyapalis._twin"}


@pytest.fixture(
    params=[
        pytest.param(
            "cython",
            marks=pytest.mark.skipif(
                NO_EXTENSIONS,
                reason="PYAPALIS_NO_EXTENSIONS=1: the compiled core is disabled",
            ),
        ),
        "python",
    ]
)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """The task core module, once compiled (``pyapalis._core``), once pure Python.

    Every core test runs on both implementations through this fixture: use
    ``core.Task``, ``core.TaskBuilder``, ``core.TaskId``... The compiled module
    is imported here, not at collection, and a failed import is an error, never
    a skip: only ``PYAPALIS_NO_EXTENSIONS=1`` skips the ``cython`` variant.
    """
    return importlib.import_module(_CORE_MODULES[request.param])


@pytest.fixture
def both_cores() -> tuple[ModuleType, ModuleType]:
    """``(compiled, pure_python)`` core modules, for tests comparing the two."""
    if NO_EXTENSIONS:
        pytest.skip("PYAPALIS_NO_EXTENSIONS=1: the compiled core is disabled")
    return (
        importlib.import_module("pyapalis._core"),
        importlib.import_module("pyapalis._twin"),
    )


# -- worker-runtime fixtures (tests/test_memory_storage.py, tests/test_worker*.py) --


class EventLog:
    """An ``on_event`` listener that records ``(virtual time, event)`` pairs."""

    def __init__(self) -> None:
        self.records: list[tuple[float, object]] = []

    def __call__(self, ctx: object, event: object) -> None:
        import trio

        self.records.append((trio.current_time(), event))

    @property
    def events(self) -> list[object]:
        return [event for _, event in self.records]

    @property
    def kinds(self) -> list[str]:
        return [event.kind.value for _, event in self.records]

    def of(self, kind: str) -> list[object]:
        return [event for _, event in self.records if event.kind.value == kind]


@pytest.fixture
def event_log() -> EventLog:
    """A fresh :class:`EventLog` to pass to ``WorkerBuilder.on_event``."""
    return EventLog()


@pytest.fixture
def storage() -> object:
    """A fresh unbounded ``MemoryStorage``."""
    from pyapalis import MemoryStorage

    return MemoryStorage()


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch, autojump_clock: MockClock) -> WallClock:
    """``time.time()`` follows the test's virtual clock, ``autojump_clock`` (a ``WallClock``).

    A test in virtual time that schedules tasks by wall-clock ``run_at`` builds
    them with ``TaskBuilder(...).run_at_timestamp(wall_clock.after(seconds))``:
    they come due exactly ``seconds`` of virtual time later, however long the
    machine took between building and queueing them.
    """
    from pyapalis.testing import WallClock

    clock = WallClock(clock=autojump_clock)
    monkeypatch.setattr(time, "time", clock)
    return clock
