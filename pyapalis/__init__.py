"""pyapalis: a fast task framework for trio, ported from Rust's apalis.

This module only re-exports; each name lives in a private module that owns it.
"""

from ._backend import Backend as Backend
from ._capabilities import FetchById as FetchById
from ._capabilities import ListTasks as ListTasks
from ._capabilities import ListWorkers as ListWorkers
from ._capabilities import RegisterWorker as RegisterWorker
from ._capabilities import Reschedule as Reschedule
from ._capabilities import ResumeAbandoned as ResumeAbandoned
from ._capabilities import ResumeById as ResumeById
from ._capabilities import TaskResult as TaskResult
from ._capabilities import TaskSink as TaskSink
from ._capabilities import Update as Update
from ._capabilities import Vacuum as Vacuum
from ._capabilities import WaitForCompletion as WaitForCompletion
from ._capabilities import WorkerInfo as WorkerInfo
from ._codec import Codec as Codec
from ._codec import JsonCodec as JsonCodec
from ._context import WorkerContext as WorkerContext
from ._context import WorkerState as WorkerState
from ._errors import AbortError as AbortError
from ._errors import BuildError as BuildError
from ._errors import CodecError as CodecError
from ._errors import DeferredError as DeferredError
from ._errors import MissingDataError as MissingDataError
from ._errors import PyapalisError as PyapalisError
from ._errors import RetryAfterError as RetryAfterError
from ._errors import StorageError as StorageError
from ._errors import TaskError as TaskError
from ._errors import TaskFailedError as TaskFailedError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerStateError as WorkerStateError
from ._events import Event as Event
from ._events import EventKind as EventKind
from ._handler import Data as Data
from ._handler import Meta as Meta
from ._implementation import Attempt as Attempt
from ._implementation import Extensions as Extensions
from ._implementation import Parts as Parts
from ._implementation import Task as Task
from ._implementation import TaskBuilder as TaskBuilder
from ._implementation import TaskId as TaskId
from ._memory import MemoryStorage as MemoryStorage
from ._memory import MemoryStorageStatistics as MemoryStorageStatistics
from ._retry import BackoffMode as BackoffMode
from ._retry import RetryPolicy as RetryPolicy
from ._service import Layer as Layer
from ._service import Service as Service
from ._status import Status as Status
from ._test_worker import TestWorker as TestWorker
from ._worker import EventStream as EventStream
from ._worker import Worker as Worker
from ._worker import WorkerBuilder as WorkerBuilder

__all__ = [
    "AbortError",
    "Attempt",
    "Backend",
    "BackoffMode",
    "BuildError",
    "Codec",
    "CodecError",
    "Data",
    "DeferredError",
    "Event",
    "EventKind",
    "EventStream",
    "Extensions",
    "FetchById",
    "JsonCodec",
    "Layer",
    "ListTasks",
    "ListWorkers",
    "MemoryStorage",
    "MemoryStorageStatistics",
    "Meta",
    "MissingDataError",
    "Parts",
    "PyapalisError",
    "RegisterWorker",
    "Reschedule",
    "ResumeAbandoned",
    "ResumeById",
    "RetryAfterError",
    "RetryPolicy",
    "Service",
    "Status",
    "StorageError",
    "Task",
    "TaskBuilder",
    "TaskError",
    "TaskFailedError",
    "TaskId",
    "TaskResult",
    "TaskSink",
    "TaskTimeoutError",
    "TestWorker",
    "Update",
    "Vacuum",
    "WaitForCompletion",
    "Worker",
    "WorkerBuilder",
    "WorkerContext",
    "WorkerInfo",
    "WorkerState",
    "WorkerStateError",
]
