# Stub of the compiled core. The compiled classes behave exactly like their
# typed pure-Python twins (both pass one test suite), so the stub re-exports
# the twin's declarations rather than repeating them.
from typing import Final

from pyapalis._status import Status as Status
from pyapalis._twin import TIMED as TIMED
from pyapalis._twin import AckRecorder as AckRecorder
from pyapalis._twin import Attempt as Attempt
from pyapalis._twin import Extensions as Extensions
from pyapalis._twin import OneShotValue as OneShotValue
from pyapalis._twin import Parts as Parts
from pyapalis._twin import Task as Task
from pyapalis._twin import TaskBuilder as TaskBuilder
from pyapalis._twin import TaskId as TaskId
from pyapalis._twin import TaskQueue as TaskQueue
from pyapalis._twin import begin_direct as begin_direct
from pyapalis._twin import begin_execution as begin_execution
from pyapalis._twin import set_status as set_status
from pyapalis._twin import undo_attempt as undo_attempt

IMPLEMENTATION: Final[str]

def _reseed() -> None: ...
