# Stub of the compiled core. The compiled classes behave exactly like their
# typed pure-Python twins (both pass one test suite), so the stub re-exports
# the twin's declarations rather than repeating them.
from typing import Final

from pyapalis._status import Status as Status
from pyapalis._twin._deque import OneShotValue as OneShotValue
from pyapalis._twin._deque import TaskQueue as TaskQueue
from pyapalis._twin._execution import TIMED as TIMED
from pyapalis._twin._execution import AckRecorder as AckRecorder
from pyapalis._twin._execution import begin_direct as begin_direct
from pyapalis._twin._execution import begin_execution as begin_execution
from pyapalis._twin._execution import set_status as set_status
from pyapalis._twin._execution import undo_attempt as undo_attempt
from pyapalis._twin._task import Attempt as Attempt
from pyapalis._twin._task import Extensions as Extensions
from pyapalis._twin._task import Parts as Parts
from pyapalis._twin._task import Task as Task
from pyapalis._twin._task import TaskBuilder as TaskBuilder
from pyapalis._twin._task import TaskId as TaskId

IMPLEMENTATION: Final[str]

def _reseed() -> None: ...
