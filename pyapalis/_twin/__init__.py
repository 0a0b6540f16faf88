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
from ._execution import TIMED as TIMED
from ._execution import AckRecorder as AckRecorder
from ._execution import begin_direct as begin_direct
from ._execution import begin_execution as begin_execution
from ._execution import set_status as set_status
from ._execution import undo_attempt as undo_attempt
from ._extensions import Extensions as Extensions
from ._task import Parts as Parts
from ._task import Task as Task
from ._task import TaskBuilder as TaskBuilder
from ._ulid import TaskId as TaskId

IMPLEMENTATION = "python"

__all__ = [
    "IMPLEMENTATION",
    "TIMED",
    "AckRecorder",
    "Attempt",
    "Extensions",
    "OneShotValue",
    "Parts",
    "Task",
    "TaskBuilder",
    "TaskId",
    "TaskQueue",
    "begin_direct",
    "begin_execution",
    "set_status",
    "undo_attempt",
]
