"""What a look-up of a run reports: frozen records, built from the backend's task results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._implementation import TaskId
from .._status import Status
from ..backends._capabilities import TaskResult


@dataclass(frozen=True, slots=True)
class StepStatus:
    """One step of a run: its tasks (one, or one per fan-out item) and how they stand.

    ``result`` is the step's output once it is ``Done`` (for a fan-out, the
    list of the items' results); ``error`` the first failure's message.
    """

    index: int
    name: str
    status: Status
    task_ids: tuple[TaskId, ...]
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    """A run as its backend holds it: the steps reached so far, in order.

    ``status`` is ``Pending`` until the first step starts, ``Running`` while a
    step is unfinished, ``Done`` after the last step (``result`` is its
    output), ``Failed``/``Killed`` after a step failed for good (``error``).
    """

    workflow: str
    run_id: str
    status: Status
    steps: tuple[StepStatus, ...]
    result: Any = None
    error: str | None = None

    @property
    def is_final(self) -> bool:
        """True once the run will make no more progress."""
        return self.status.is_final


def failure_message(result: TaskResult) -> str:
    """A final, unsuccessful task result's error message."""
    if result.result is None:
        return f"task {result.task_id} is {result.status}"
    error = result.result.error if hasattr(result.result, "error") else None
    return str(error) if error is not None else f"task {result.task_id} is {result.status}"


def step_status(index: int, name: str, results: list[TaskResult], fan_out: bool) -> StepStatus:
    """Combine a step's task results: failed wins, then unfinished, then done."""
    task_ids = tuple(result.task_id for result in results)
    for result in results:
        if result.status in (Status.Failed, Status.Killed):
            return StepStatus(index, name, result.status, task_ids, error=failure_message(result))
    if all(result.status is Status.Done for result in results):
        values = [result.unwrap() for result in results]
        return StepStatus(
            index, name, Status.Done, task_ids, result=values if fan_out else values[0]
        )
    started = any(result.status not in (Status.Pending, Status.Queued) for result in results)
    return StepStatus(index, name, Status.Running if started else Status.Pending, task_ids)
