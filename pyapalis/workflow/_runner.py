"""A workflow bound to a backend: starting runs, running their steps, looking them up.

Each step's handler runs the step's function, then pushes what comes next (the
next step, or one task per fan-out item) *before* the worker acknowledges it:
a crash in between re-runs the step (at-least-once, like every task) and its
second push stores nothing, since the ids are the run's (see ``_messages.py``).
So a run's whole state is in the backend: the step tasks, their args (each
step's input) and their results; no process keeps any of it in memory.

A fan-out item that finishes parks its result as a record task, then looks
for every item's record; the item that sees them all pushes the join step.
Two items finishing at the same moment may both see all records: both push
the join, under one id, so it is stored — and runs — once.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .._errors import AbortError, WorkflowFailedError
from .._implementation import TaskBuilder, TaskId
from .._status import Status
from ..backends._capabilities import Delete, FetchById, TaskSink, WaitForCompletion
from ._flow import Step, StepKind
from ._messages import PARKED_AT, Message, RunIds, check_name
from ._status import StepStatus, WorkflowStatus, failure_message, step_status

if TYPE_CHECKING:
    from ._flow import Workflow

In = TypeVar("In")
Out = TypeVar("Out")


class WorkflowBackend(TaskSink, FetchById, WaitForCompletion, Protocol):
    """What a workflow needs of its backend: pushes that keep ids, look-ups by id,
    and results. Every built-in backend has them."""


async def _call(step: Step, value: Any) -> Any:
    result = step.function(value)
    if inspect.isawaitable(result):
        result = await result
    return result


class WorkflowRunner(Generic[In, Out]):
    """A :class:`Workflow` bound to one backend (``flow.on(storage)``).

    * ``await runner.start(value)`` starts a run and returns its id;
    * ``runner.handle`` is the worker handler that runs the steps:
      ``WorkerBuilder(...).backend(storage).build(runner.handle)``;
    * ``await runner.status(run_id)`` and ``await runner.wait(run_id)`` look a
      run up, from any process sharing the backend.
    """

    def __init__(self, flow: Workflow[In, Out], backend: WorkflowBackend) -> None:
        self._flow = flow
        self._steps = flow.steps
        self._backend = backend

    @property
    def workflow(self) -> Workflow[In, Out]:
        """The definition this runner runs."""
        return self._flow

    @property
    def backend(self) -> WorkflowBackend:
        """The backend holding the runs."""
        return self._backend

    def _ids(self, run_id: object, where: str) -> RunIds:
        return RunIds(self._flow.name, check_name(run_id, where))

    # -- starting and running ------------------------------------------------

    async def start(self, value: In, *, run_id: str | None = None) -> str:
        """Start a run with ``value`` as the first step's input; return the run's id.

        ``run_id`` (letters, digits, ``_``, ``.``, ``-``) makes starting
        idempotent: a second start with the same id stores nothing. By
        default a fresh ULID.
        """
        ids = self._ids(str(TaskId.generate()) if run_id is None else run_id, "start: run_id")
        await self._push(ids.step(0), ids.step_args(0, value), self._steps[0])
        return ids.run

    async def handle(self, args: Any) -> Any:
        """Run the step a task stands for; its return value is the step's result."""
        try:
            message = Message.parse(args, self._flow.name)
        except ValueError as exc:
            raise AbortError(exc) from None
        if message.is_result:  # a parked record someone resumed: nothing to run
            return message.value
        if message.step >= len(self._steps):
            raise AbortError(
                f"workflow {self._flow.name!r} has {len(self._steps)} steps, "
                f"not a step {message.step}"
            )
        step = self._steps[message.step]
        if (message.item is None) != (step.kind is StepKind.then):
            raise AbortError(
                f"workflow {self._flow.name!r}: task {args!r} does not fit step "
                f"{message.step} ({step.kind.value})"
            )
        value = await _call(step, message.value)
        if message.item is None:
            return await self._advance(message.ids, message.step, value)
        await self._finish_item(message, value)
        return value

    async def _push(self, task_id: TaskId, args: dict[str, Any], step: Step) -> None:
        builder = TaskBuilder(args).id(task_id)
        if step.delay:
            # time.time(), looked up each call: a test's WallClock sees it.
            builder = builder.run_at_timestamp(time.time() + step.delay)
        if step.attempts is not None:
            builder = builder.attempts(step.attempts)
        await self._backend.push_task(builder.build())

    async def _advance(self, ids: RunIds, index: int, value: Any) -> Any:
        """Push what follows step ``index`` given its output; return the output to
        store (a fan-out's items as a list)."""
        following = index + 1
        if following == len(self._steps):
            return value
        step = self._steps[following]
        if step.kind is StepKind.then:
            await self._push(ids.step(following), ids.step_args(following, value), step)
            return value
        items = self._items(index, value)
        for item, item_value in enumerate(items):
            await self._push(
                ids.item(following, item),
                ids.item_args(following, item, len(items), item_value),
                step,
            )
        if not items:  # nothing to wait for: the fan-out's output is []
            await self._advance(ids, following, [])
        return items

    def _items(self, index: int, value: Any) -> list[Any]:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
            raise TypeError(
                f"workflow {self._flow.name!r}: step {index} "
                f"({self._steps[index].name}) returned {value!r}; the fan_out after it "
                "needs a list (or another iterable) of items"
            )
        return list(value)

    async def _finish_item(self, message: Message, value: Any) -> None:
        ids, step = message.ids, message.step
        assert message.item is not None
        record = (
            TaskBuilder(ids.result_args(step, message.item, message.items, value))
            .id(ids.result(step, message.item))
            .run_at_timestamp(PARKED_AT)
            .build()
        )
        await self._backend.push_task(record)
        # The last items are the likeliest to be missing: look from the end.
        results: list[Any] = [None] * message.items
        for item in reversed(range(message.items)):
            found = await self._backend.fetch_by_id(ids.result(step, item))
            if found is None:
                return
            results[item] = Message.parse(found.args, self._flow.name).value
        await self._advance(ids, step, results)

    # -- looking runs up -----------------------------------------------------

    def _task_ids(self, ids: RunIds, index: int, previous: Any) -> list[TaskId]:
        if self._steps[index].kind is StepKind.then:
            return [ids.step(index)]
        return [ids.item(index, item) for item in range(len(previous))]

    async def status(self, run_id: str) -> WorkflowStatus:
        """How the run stands: each step reached so far, with its results or error."""
        ids = self._ids(run_id, "status: run_id")
        reached: list[StepStatus] = []
        previous: Any = None
        for index, step in enumerate(self._steps):
            task_ids = self._task_ids(ids, index, previous)
            results = await self._backend.check_status(task_ids) if task_ids else []
            current = step_status(index, step.name, results, step.kind is StepKind.fan_out)
            reached.append(current)
            if current.status is not Status.Done:
                # A later step's Pending is a run in progress (the step waits
                # for its delay); only the first step's is a run not started.
                final = current.status in (Status.Failed, Status.Killed)
                overall = current.status if final or index == 0 else Status.Running
                return WorkflowStatus(
                    ids.workflow, ids.run, overall, tuple(reached), error=current.error
                )
            previous = current.result
        return WorkflowStatus(ids.workflow, ids.run, Status.Done, tuple(reached), result=previous)

    async def wait(self, run_id: str) -> Out:
        """Wait for the run to finish and return the last step's output.

        Raises :class:`WorkflowFailedError` naming the step if a step failed for
        good (after its retries).
        """
        ids = self._ids(run_id, "wait: run_id")
        previous: Any = None
        for index, step in enumerate(self._steps):
            values = []
            for task_id in self._task_ids(ids, index, previous):
                result = await self._backend.wait_for_single(task_id)
                if result.status is not Status.Done:
                    raise WorkflowFailedError(ids.run, index, failure_message(result))
                values.append(result.unwrap())
            previous = values if step.kind is StepKind.fan_out else values[0]
        return previous  # type: ignore[no-any-return]

    async def forget(self, run_id: str) -> int:
        """Delete a finished run's tasks: its steps, its items and their result
        records; return how many were deleted.

        ``vacuum()`` removes finished tasks but not the parked records, so this
        is how a run's tasks leave the backend. Needs a backend that can delete
        (``JsonStorage``, ``SqliteStorage``); a run with a task that may still
        run (a failed fan-out's other items, say) raises ``ValueError``.
        """
        backend = self._backend
        if not isinstance(backend, Delete):
            raise TypeError(f"forget: {backend!r} cannot delete tasks (no delete capability)")
        ids = self._ids(run_id, "forget: run_id")
        status = await self.status(run_id)
        task_ids: list[TaskId] = []
        for step in status.steps:
            task_ids += step.task_ids
            if self._steps[step.index].kind is StepKind.fan_out:
                task_ids += [ids.result(step.index, item) for item in range(len(step.task_ids))]
        unfinished = [
            str(result.task_id)
            for result in await self._backend.check_status(task_ids)
            if not result.is_final and not str(result.task_id).endswith(":result")
        ]
        if not status.is_final or unfinished:
            raise ValueError(
                f"forget: run {run_id!r} is not finished ({status.status}; tasks that may "
                f"still run: {unfinished})"
            )
        deleted = 0
        for task_id in task_ids:
            deleted += await backend.delete(task_id)
        return deleted

    def __repr__(self) -> str:
        return f"WorkflowRunner({self._flow!r} on {self._backend!r})"
