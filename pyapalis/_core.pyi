# Stub of the compiled core. The compiled classes behave exactly like their
# typed pure-Python twins (both pass one test suite), so the stub re-exports
# the twin's declarations rather than repeating them.
from typing import Final

from pyapalis._pycore import Attempt as Attempt
from pyapalis._pycore import Extensions as Extensions
from pyapalis._pycore import Parts as Parts
from pyapalis._pycore import Task as Task
from pyapalis._pycore import TaskBuilder as TaskBuilder
from pyapalis._pycore import TaskId as TaskId
from pyapalis._pyexecution import TIMED as TIMED
from pyapalis._pyexecution import AckRecorder as AckRecorder
from pyapalis._pyexecution import begin_direct as begin_direct
from pyapalis._pyexecution import begin_execution as begin_execution
from pyapalis._pyexecution import set_status as set_status
from pyapalis._pyexecution import undo_attempt as undo_attempt
from pyapalis._pyqueue import OneShotValue as OneShotValue
from pyapalis._pyqueue import TaskQueue as TaskQueue
from pyapalis._status import Status as Status

IMPLEMENTATION: Final[str]

def _reseed() -> None: ...
