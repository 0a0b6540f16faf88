# Stub of the compiled core. The compiled classes behave exactly like their
# typed pure-Python twins (both pass one test suite), so the stub re-exports
# the twin's declarations rather than repeating them.
from typing import Final

from pyapalis._status import Status as Status
from pyapalis._twin import DONE as DONE
from pyapalis._twin import STEP_ARGS as STEP_ARGS
from pyapalis._twin import STEP_ATTEMPT as STEP_ATTEMPT
from pyapalis._twin import STEP_CALL as STEP_CALL
from pyapalis._twin import STEP_CONSTANT as STEP_CONSTANT
from pyapalis._twin import STEP_DATA as STEP_DATA
from pyapalis._twin import STEP_EXTENSIONS as STEP_EXTENSIONS
from pyapalis._twin import STEP_PARTS as STEP_PARTS
from pyapalis._twin import STEP_TASK as STEP_TASK
from pyapalis._twin import STEP_TASK_ID as STEP_TASK_ID
from pyapalis._twin import AckRecorder as AckRecorder
from pyapalis._twin import Attempt as Attempt
from pyapalis._twin import Extensions as Extensions
from pyapalis._twin import Invoker as Invoker
from pyapalis._twin import Judge as Judge
from pyapalis._twin import OneShotValue as OneShotValue
from pyapalis._twin import Parts as Parts
from pyapalis._twin import Step as Step
from pyapalis._twin import SyncDone as SyncDone
from pyapalis._twin import Task as Task
from pyapalis._twin import TaskBuilder as TaskBuilder
from pyapalis._twin import TaskId as TaskId
from pyapalis._twin import TaskQueue as TaskQueue
from pyapalis._twin import Verdict as Verdict
from pyapalis._twin import ready as ready
from pyapalis._twin import retry_delay as retry_delay
from pyapalis._twin import set_status as set_status
from pyapalis._twin import spin_until_readable as spin_until_readable
from pyapalis._twin import undo_attempt as undo_attempt

IMPLEMENTATION: Final[str]

def _reseed() -> None: ...
