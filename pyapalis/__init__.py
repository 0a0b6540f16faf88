"""pyapalis: a fast task framework for trio, ported from Rust's apalis.

This module only re-exports, grouped by topic; each name lives in a private
module that owns it. The public surface is split by audience, as trio's is:

* :mod:`pyapalis` — what most programs use: tasks, the common backends,
  workers, the monitor, typed tasks, embedding, every error;
* :mod:`pyapalis.backends` — every backend, codecs, pipes, polling backends, and
  the protocols a backend author implements;
* :mod:`pyapalis.layers` — middleware: the Service/Layer protocols and the
  built-in layers;
* :mod:`pyapalis.typed` — backie-style typed tasks and worker pools;
* :mod:`pyapalis.embed` — a worker on its own thread for non-trio programs;
* :mod:`pyapalis.testing` — ``TestWorker`` and the backend conformance suite.
"""

from ._errors import AbortError as AbortError
from ._errors import BuildError as BuildError
from ._errors import CircuitOpenError as CircuitOpenError
from ._errors import CodecError as CodecError
from ._errors import DeferredError as DeferredError
from ._errors import MissingDataError as MissingDataError
from ._errors import MonitorError as MonitorError
from ._errors import NotReadyError as NotReadyError
from ._errors import OperationTimeoutError as OperationTimeoutError
from ._errors import OverloadedError as OverloadedError
from ._errors import PyapalisError as PyapalisError
from ._errors import RetryAfterError as RetryAfterError
from ._errors import RuntimeStoppedError as RuntimeStoppedError
from ._errors import StorageError as StorageError
from ._errors import StrayCancelledError as StrayCancelledError
from ._errors import TaskError as TaskError
from ._errors import TaskFailedError as TaskFailedError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import UnknownTaskError as UnknownTaskError
from ._errors import WorkerStateError as WorkerStateError
from ._errors import WorkflowFailedError as WorkflowFailedError
from ._implementation import Attempt as Attempt
from ._implementation import Extensions as Extensions
from ._implementation import Parts as Parts
from ._implementation import Task as Task
from ._implementation import TaskBuilder as TaskBuilder
from ._implementation import TaskId as TaskId
from ._monitor import Monitor as Monitor
from ._monitor import MonitorStatistics as MonitorStatistics
from ._status import Status as Status
from ._version import __version__ as __version__
from ._worker._context import WorkerContext as WorkerContext
from ._worker._context import WorkerState as WorkerState
from ._worker._events import Event as Event
from ._worker._events import EventKind as EventKind
from ._worker._handler import Data as Data
from ._worker._handler import Meta as Meta
from ._worker._retry import BackoffMode as BackoffMode
from ._worker._retry import RetryPolicy as RetryPolicy
from ._worker._stream import EventStream as EventStream
from ._worker._worker import Worker as Worker
from ._worker._worker import WorkerBuilder as WorkerBuilder
from .backends._cron._stream import CronStream as CronStream
from .backends._json._storage import JsonStorage as JsonStorage
from .backends._memory._storage import MemoryStorage as MemoryStorage
from .backends._open import open_backend as open_backend
from .backends._pipe import Pipe as Pipe
from .backends._postgres._storage import PostgresStorage as PostgresStorage
from .backends._redis._storage import RedisStorage as RedisStorage
from .backends._sqlite._storage import SqliteStorage as SqliteStorage
from .embed._runtime import start_in_thread as start_in_thread
from .typed._pool import WorkerPool as WorkerPool
from .typed._task import BackgroundTask as BackgroundTask
from .typed._task import CurrentTask as CurrentTask
from .typed._task import TaskHash as TaskHash

__all__ = [  # noqa: RUF022 - grouped by topic, sorted within each group
    # The task core (compiled)
    "Attempt",
    "Extensions",
    "Parts",
    "Status",
    "Task",
    "TaskBuilder",
    "TaskId",
    # Backends (more in pyapalis.backends)
    "CronStream",
    "JsonStorage",
    "MemoryStorage",
    "Pipe",
    "PostgresStorage",
    "RedisStorage",
    "SqliteStorage",
    "open_backend",
    # Workers
    "BackoffMode",
    "Data",
    "Event",
    "EventKind",
    "EventStream",
    "Meta",
    "RetryPolicy",
    "Worker",
    "WorkerBuilder",
    "WorkerContext",
    "WorkerState",
    # Running several workers
    "Monitor",
    "MonitorStatistics",
    # Typed tasks (more in pyapalis.typed)
    "BackgroundTask",
    "CurrentTask",
    "TaskHash",
    "WorkerPool",
    # Embedding in programs that are not trio (more in pyapalis.embed)
    "start_in_thread",
    # Errors
    "AbortError",
    "BuildError",
    "CircuitOpenError",
    "CodecError",
    "DeferredError",
    "MissingDataError",
    "MonitorError",
    "NotReadyError",
    "OperationTimeoutError",
    "OverloadedError",
    "PyapalisError",
    "RetryAfterError",
    "RuntimeStoppedError",
    "StorageError",
    "StrayCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
    "UnknownTaskError",
    "WorkerStateError",
    "WorkflowFailedError",
]
