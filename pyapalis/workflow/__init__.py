"""Durable workflows (apalis-workflow): chains of steps, delays, fan-out and fan-in.

A :class:`Workflow` is a definition; ``flow.on(storage)`` gives a
:class:`WorkflowRunner` that starts runs, is the handler workers run them
with, and looks them up (:class:`WorkflowStatus`). Every step is a task of
that storage, so a run survives crashes and restarts of its workers.
"""

from .._errors import WorkflowFailedError as WorkflowFailedError
from ._flow import Step as Step
from ._flow import StepKind as StepKind
from ._flow import Workflow as Workflow
from ._runner import WorkflowBackend as WorkflowBackend
from ._runner import WorkflowRunner as WorkflowRunner
from ._status import StepStatus as StepStatus
from ._status import WorkflowStatus as WorkflowStatus

__all__ = [
    "Step",
    "StepKind",
    "StepStatus",
    "Workflow",
    "WorkflowBackend",
    "WorkflowFailedError",
    "WorkflowRunner",
    "WorkflowStatus",
]
