"""LongRunningLayer: tasks that start tracked sub-work with a Runner and wait for it.

A handler asks for a ``runner: Runner`` parameter (resolved like the others,
through :meth:`Runner.from_request`), starts sub-work with
``runner.execute(async_fn, *args)`` and collects it with ``await runner.wait()``
or ``await operation.wait()``. The task is not acknowledged, and the worker
counts it in flight (so a graceful shutdown waits), until every operation it
started has finished, even those the handler did not wait for. (In a worker
the operations run in the worker run's nursery, which costs less than a
nursery per task; outside one, in a nursery of the call.)

* ``LongRunningConfig(max_duration=s)`` limits each operation to ``s``
  seconds; one that runs longer fails with :class:`OperationTimeoutError`
  (whole-task limits are ``TimeoutLayer``'s job).
* A failing operation does not disturb the others. ``wait()`` raises the
  first failure (in start order) once every operation has finished. A failure
  nobody waited for fails the task when the handler returns.
* If the handler fails, its unfinished operations are cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, cast

import trio

from .._errors import MissingDataError, OperationTimeoutError
from .._implementation import Task
from .._worker._service import WORKER_NURSERY, AlwaysReady, Service
from ._common import check_callable, check_seconds

__all__ = [
    "LongRunningConfig",
    "LongRunningLayer",
    "Operation",
    "OperationTimeoutError",
    "Runner",
]


@dataclass(frozen=True, slots=True)
class LongRunningConfig:
    """How a :class:`LongRunningLayer` treats the operations a task starts.

    ``max_duration``: seconds (int, float or ``timedelta``) each operation may
    run, or None for no limit.
    """

    max_duration: float | timedelta | None = None

    def __post_init__(self) -> None:
        if self.max_duration is not None:
            seconds = check_seconds("LongRunningConfig", "max_duration", self.max_duration)
            object.__setattr__(self, "max_duration", seconds)


class Operation:
    """One piece of sub-work started by :meth:`Runner.execute`."""

    __slots__ = ("_done", "_error", "_observed", "_scope", "_value", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._observed = False

    @property
    def done(self) -> bool:
        """Whether the operation has finished (succeeded or failed)."""
        return self._done.is_set()

    async def wait(self) -> Any:
        """Wait for the operation; its return value, or its exception raised."""
        await self._done.wait()
        self._observed = True
        if self._error is not None:
            raise self._error
        return self._value

    def __repr__(self) -> str:
        state = "running" if not self.done else ("failed" if self._error else "done")
        return f"<Operation {self.name} {state}>"


class Runner:
    """Starts and tracks the sub-work of one task; see the module documentation.

    A handler receives it by declaring a parameter annotated ``Runner`` (the
    worker needs a ``LongRunningLayer``, ``WorkerBuilder.long_running()``).
    """

    __slots__ = ("_closed", "_max_duration", "_nursery", "_operations")

    def __init__(self, nursery: trio.Nursery, max_duration: float | None) -> None:
        self._nursery = nursery
        self._max_duration = max_duration
        self._operations: list[Operation] = []
        self._closed = False

    @classmethod
    def from_request(cls, task: Task) -> Runner:
        """The runner of ``task``'s execution (how a handler parameter gets it)."""
        runner = task.parts.data.get(cls)
        if runner is None:
            error = MissingDataError(cls)
            error.add_note(
                "a Runner exists only inside a LongRunningLayer: build the worker with "
                ".long_running() or .layer(LongRunningLayer())"
            )
            raise error
        return runner

    @classmethod
    def provided_by(cls, layer: object) -> bool:
        """Whether ``layer`` gives handlers a runner (a :class:`LongRunningLayer` does)."""
        return isinstance(layer, LongRunningLayer)

    @classmethod
    def missing_layer(cls) -> str:
        """The advice for a builder whose handler takes a Runner without the layer."""
        return "a LongRunningLayer provides; add .long_running() to the builder"

    def execute(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Operation:
        """Start ``await async_fn(*args)`` as tracked sub-work of the task."""
        if self._closed:
            raise RuntimeError("Runner.execute: the task this runner belongs to has finished")
        check_callable("Runner.execute", "async_fn", async_fn)
        operation = Operation(getattr(async_fn, "__qualname__", repr(async_fn)))
        self._operations.append(operation)
        self._nursery.start_soon(self._run, operation, async_fn, args, name=operation.name)
        return operation

    async def wait(self) -> list[Any]:
        """Wait for every operation started so far; their values, in start order.

        Operations started while waiting are waited for too. If any failed,
        the first failure (in start order) is raised once all have finished.
        """
        await self._join()
        for operation in self._operations:
            operation._observed = True
        for operation in self._operations:
            if operation._error is not None:
                raise operation._error
        return [operation._value for operation in self._operations]

    @property
    def operations(self) -> list[Operation]:
        """Every operation started, in start order."""
        return list(self._operations)

    @property
    def pending(self) -> int:
        """Operations still running."""
        return sum(1 for operation in self._operations if not operation.done)

    async def _run(
        self, operation: Operation, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            with operation._scope:  # cancelled when the task ends abnormally
                if self._max_duration is None:
                    operation._value = await async_fn(*args)
                else:
                    with trio.move_on_after(self._max_duration) as scope:
                        operation._value = await async_fn(*args)
                    if scope.cancelled_caught:
                        operation._error = OperationTimeoutError(self._max_duration)
        except Exception as error:
            operation._error = error
        finally:
            operation._done.set()

    async def _join(self) -> None:
        """Wait until every operation started (also while waiting) has finished."""
        index = 0
        while index < len(self._operations):
            await self._operations[index]._done.wait()
            index += 1

    def _cancel(self) -> None:
        for operation in self._operations:
            operation._scope.cancel()

    def _unobserved_failure(self) -> BaseException | None:
        for operation in self._operations:
            if operation._error is not None and not operation._observed:
                error = operation._error
                error.add_note(
                    f"tracked operation {operation.name} failed and the handler did not wait for it"
                )
                return error
        return None


class LongRunningLayer:
    """Gives each execution a :class:`Runner` and waits for the work it tracks.

    ``WorkerBuilder.long_running(config=None)`` is the shortcut. An execution
    layer (see :mod:`pyapalis._worker._service`): the task is acknowledged once its
    tracked work is done, with the outcome described in the module
    documentation.
    """

    wraps_execution: ClassVar[bool] = True

    def __init__(self, config: LongRunningConfig | None = None) -> None:
        if config is None:
            config = LongRunningConfig()
        elif not isinstance(config, LongRunningConfig):
            raise TypeError(
                f"LongRunningLayer: config must be a LongRunningConfig, "
                f"got {type(config).__name__} {config!r}"
            )
        self.config = config

    def layer(self, inner: Service) -> Service:
        return _LongRunningService(inner, cast(float | None, self.config.max_duration))

    def __repr__(self) -> str:
        return f"LongRunningLayer({self.config!r})"


class _LongRunningService(AlwaysReady):
    __slots__ = ("_inner", "_max_duration")

    def __init__(self, inner: Service, max_duration: float | None) -> None:
        self._inner = inner
        self._max_duration = max_duration

    async def __call__(self, task: Task) -> Any:
        nursery = WORKER_NURSERY.get()
        if nursery is None:
            return await self._call_in_own_nursery(task)
        # In a worker: the operations run in the worker's nursery (no nursery
        # per task), and this call waits for them before the task is settled.
        data = task.parts.data
        runner = Runner(nursery, self._max_duration)
        data.insert(runner)
        try:
            try:
                result = await self._inner(task)
            finally:
                data.remove(Runner)
            if runner._operations:
                await runner._join()
        except BaseException:
            runner._cancel()  # the task failed or was interrupted: abandon its sub-work
            raise
        finally:
            runner._closed = True
        if runner._operations:
            failure = runner._unobserved_failure()
            if failure is not None:
                raise failure
        return result

    async def _call_in_own_nursery(self, task: Task) -> Any:
        """The same, outside a worker run: the task's own nursery holds its operations."""
        data = task.parts.data
        error: Exception | None = None
        result: Any = None
        async with trio.open_nursery() as nursery:
            runner = Runner(nursery, self._max_duration)
            data.insert(runner)
            try:
                result = await self._inner(task)
            except Exception as exc:
                error = exc
                nursery.cancel_scope.cancel()  # the task failed: abandon its sub-work
            finally:
                data.remove(Runner)
        runner._closed = True
        if error is not None:
            raise error
        failure = runner._unobserved_failure()
        if failure is not None:
            raise failure
        return result
