"""Chooses the implementation of the task core: compiled or pure Python.

The compiled ``pyapalis._core`` is used unless ``PYAPALIS_NO_EXTENSIONS`` is
set, the interpreter is not CPython, or the extension is missing (a source
checkout that was never built). Type checkers read the typed twin, which the
``_core.pyi`` stub mirrors.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from ._twin import _deque as _pyqueue
from ._twin import _execution as _pyexecution
from ._twin import _task as _pycore


def _extensions_disabled() -> bool:
    flag = os.environ.get("PYAPALIS_NO_EXTENSIONS", "").strip().lower()
    return flag in {"1", "true", "yes", "on"} or sys.implementation.name != "cpython"


NO_EXTENSIONS = _extensions_disabled()

core: ModuleType = _pycore
queue_module: ModuleType = _pyqueue
execution_module: ModuleType = _pyexecution
if not NO_EXTENSIONS:
    try:
        from . import _core
    except ImportError:  # pragma: no cover - a checkout that was never compiled
        pass
    else:
        core = _core
        queue_module = _core
        execution_module = _core

IMPLEMENTATION: str = core.IMPLEMENTATION

if TYPE_CHECKING:
    from ._twin._deque import OneShotValue as OneShotValue
    from ._twin._deque import TaskQueue as TaskQueue
    from ._twin._execution import begin_execution as begin_execution
    from ._twin._execution import set_status as set_status
    from ._twin._execution import undo_attempt as undo_attempt
    from ._twin._task import Attempt as Attempt
    from ._twin._task import Extensions as Extensions
    from ._twin._task import Parts as Parts
    from ._twin._task import Task as Task
    from ._twin._task import TaskBuilder as TaskBuilder
    from ._twin._task import TaskId as TaskId
else:
    Attempt = core.Attempt
    Extensions = core.Extensions
    Parts = core.Parts
    Task = core.Task
    TaskBuilder = core.TaskBuilder
    TaskId = core.TaskId
    OneShotValue = queue_module.OneShotValue
    TaskQueue = queue_module.TaskQueue
    begin_execution = execution_module.begin_execution
    set_status = execution_module.set_status
    undo_attempt = execution_module.undo_attempt
