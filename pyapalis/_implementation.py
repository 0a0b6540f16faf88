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
    from ._twin import TIMED as TIMED
    from ._twin import AckRecorder as AckRecorder
    from ._twin import Attempt as Attempt
    from ._twin import Extensions as Extensions
    from ._twin import OneShotValue as OneShotValue
    from ._twin import Parts as Parts
    from ._twin import Task as Task
    from ._twin import TaskBuilder as TaskBuilder
    from ._twin import TaskId as TaskId
    from ._twin import TaskQueue as TaskQueue
    from ._twin import begin_direct as begin_direct
    from ._twin import begin_execution as begin_execution
    from ._twin import set_status as set_status
    from ._twin import undo_attempt as undo_attempt
else:
    TIMED = core.TIMED
    AckRecorder = core.AckRecorder
    Attempt = core.Attempt
    Extensions = core.Extensions
    OneShotValue = core.OneShotValue
    Parts = core.Parts
    Task = core.Task
    TaskBuilder = core.TaskBuilder
    TaskId = core.TaskId
    TaskQueue = core.TaskQueue
    begin_direct = core.begin_direct
    begin_execution = core.begin_execution
    set_status = core.set_status
    undo_attempt = core.undo_attempt
