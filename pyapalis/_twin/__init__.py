"""The pure-Python twin of the compiled core ``pyapalis._core``.

One module per compiled part (``csrc/_<part>.pxi`` ↔ ``_twin/_<part>.py``),
and this package the counterpart of the extension module: it exports the same
names. It is the readable specification of the core and the fallback where
the extension cannot be built (``PYAPALIS_NO_EXTENSIONS=1``, non-CPython);
every core test runs against both, so the two agree on every observable
behaviour, error messages included. :mod:`pyapalis._implementation` chooses
between them, in one place.
"""

from ._attempt import Attempt as Attempt
from ._deque import OneShotValue as OneShotValue
from ._deque import TaskQueue as TaskQueue
from ._execution import AckRecorder as AckRecorder
from ._execution import set_status as set_status
from ._execution import undo_attempt as undo_attempt
from ._extensions import Extensions as Extensions
from ._invoke import DONE as DONE
from ._invoke import STEP_ARGS as STEP_ARGS
from ._invoke import STEP_ATTEMPT as STEP_ATTEMPT
from ._invoke import STEP_CALL as STEP_CALL
from ._invoke import STEP_CONSTANT as STEP_CONSTANT
from ._invoke import STEP_DATA as STEP_DATA
from ._invoke import STEP_EXTENSIONS as STEP_EXTENSIONS
from ._invoke import STEP_PARTS as STEP_PARTS
from ._invoke import STEP_TASK as STEP_TASK
from ._invoke import STEP_TASK_ID as STEP_TASK_ID
from ._invoke import Invoker as Invoker
from ._invoke import Judge as Judge
from ._invoke import Step as Step
from ._invoke import SyncDone as SyncDone
from ._invoke import Verdict as Verdict
from ._invoke import ready as ready
from ._invoke import retry_delay as retry_delay
from ._spin import spin_until_readable as spin_until_readable
from ._task import Parts as Parts
from ._task import Task as Task
from ._task import TaskBuilder as TaskBuilder
from ._ulid import TaskId as TaskId

IMPLEMENTATION = "python"

__all__ = [
    "DONE",
    "IMPLEMENTATION",
    "STEP_ARGS",
    "STEP_ATTEMPT",
    "STEP_CALL",
    "STEP_CONSTANT",
    "STEP_DATA",
    "STEP_EXTENSIONS",
    "STEP_PARTS",
    "STEP_TASK",
    "STEP_TASK_ID",
    "AckRecorder",
    "Attempt",
    "Extensions",
    "Invoker",
    "Judge",
    "OneShotValue",
    "Parts",
    "Step",
    "SyncDone",
    "Task",
    "TaskBuilder",
    "TaskId",
    "TaskQueue",
    "Verdict",
    "ready",
    "retry_delay",
    "set_status",
    "spin_until_readable",
    "undo_attempt",
]
