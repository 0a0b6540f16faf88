"""Chooses the implementation of the task core: compiled or pure Python, in one place.

The compiled ``pyapalis._core`` is used unless ``PYAPALIS_NO_EXTENSIONS`` is
set, the interpreter is not CPython, or the extension is missing (a source
checkout that was never built); otherwise its pure-Python twin,
:mod:`pyapalis._twin`, which exports the same names. Every other module imports
the core's names from here. Type checkers read the typed twin, which the
``_core.pyi`` stub mirrors.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from . import _twin


def _extensions_disabled() -> bool:
    flag = os.environ.get("PYAPALIS_NO_EXTENSIONS", "").strip().lower()
    return flag in {"1", "true", "yes", "on"} or sys.implementation.name != "cpython"


NO_EXTENSIONS = _extensions_disabled()

core: ModuleType = _twin
if not NO_EXTENSIONS:
    try:
        from . import _core
    except ImportError:  # pragma: no cover - a checkout that was never compiled
        pass
    else:
        core = _core

# Kept for the modules that name the parts separately: one module serves them all.
queue_module: ModuleType = core
execution_module: ModuleType = core

IMPLEMENTATION: str = core.IMPLEMENTATION

if TYPE_CHECKING:
    from ._twin import DONE as DONE
    from ._twin import STEP_ARGS as STEP_ARGS
    from ._twin import STEP_ATTEMPT as STEP_ATTEMPT
    from ._twin import STEP_CALL as STEP_CALL
    from ._twin import STEP_CONSTANT as STEP_CONSTANT
    from ._twin import STEP_DATA as STEP_DATA
    from ._twin import STEP_EXTENSIONS as STEP_EXTENSIONS
    from ._twin import STEP_PARTS as STEP_PARTS
    from ._twin import STEP_TASK as STEP_TASK
    from ._twin import STEP_TASK_ID as STEP_TASK_ID
    from ._twin import AckRecorder as AckRecorder
    from ._twin import Attempt as Attempt
    from ._twin import Extensions as Extensions
    from ._twin import Invoker as Invoker
    from ._twin import Judge as Judge
    from ._twin import OneShotValue as OneShotValue
    from ._twin import Parts as Parts
    from ._twin import Step as Step
    from ._twin import SyncDone as SyncDone
    from ._twin import Task as Task
    from ._twin import TaskBuilder as TaskBuilder
    from ._twin import TaskId as TaskId
    from ._twin import TaskQueue as TaskQueue
    from ._twin import Verdict as Verdict
    from ._twin import retry_delay as retry_delay
    from ._twin import set_status as set_status
    from ._twin import spin_until_readable as spin_until_readable
    from ._twin import undo_attempt as undo_attempt
else:
    DONE = core.DONE
    STEP_ARGS = core.STEP_ARGS
    STEP_ATTEMPT = core.STEP_ATTEMPT
    STEP_CALL = core.STEP_CALL
    STEP_CONSTANT = core.STEP_CONSTANT
    STEP_DATA = core.STEP_DATA
    STEP_EXTENSIONS = core.STEP_EXTENSIONS
    STEP_PARTS = core.STEP_PARTS
    STEP_TASK = core.STEP_TASK
    STEP_TASK_ID = core.STEP_TASK_ID
    AckRecorder = core.AckRecorder
    Attempt = core.Attempt
    Extensions = core.Extensions
    Invoker = core.Invoker
    Judge = core.Judge
    OneShotValue = core.OneShotValue
    Parts = core.Parts
    Step = core.Step
    SyncDone = core.SyncDone
    Task = core.Task
    TaskBuilder = core.TaskBuilder
    TaskId = core.TaskId
    TaskQueue = core.TaskQueue
    Verdict = core.Verdict
    retry_delay = core.retry_delay
    set_status = core.set_status
    spin_until_readable = core.spin_until_readable
    undo_attempt = core.undo_attempt
