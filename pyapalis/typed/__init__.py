"""Typed task definitions in the style of Rust's backie.

Subclass :class:`BackgroundTask` (its fields are the payload, its class
attributes say where and how it runs), enqueue instances, and run them with a
:class:`WorkerPool`. The common names are also importable from :mod:`pyapalis`.
"""

from ._pool import QueueConfig as QueueConfig
from ._pool import RetentionMode as RetentionMode
from ._pool import WorkerPool as WorkerPool
from ._task import BackgroundTask as BackgroundTask
from ._task import CurrentTask as CurrentTask
from ._task import TaskHash as TaskHash

__all__ = [
    "BackgroundTask",
    "CurrentTask",
    "QueueConfig",
    "RetentionMode",
    "TaskHash",
    "WorkerPool",
]
