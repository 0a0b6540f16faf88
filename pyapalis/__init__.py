"""pyapalis: a fast task framework for trio, ported from Rust's apalis.

This module only re-exports; each name lives in a private module that owns it.
"""

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
from ._implementation import Attempt as Attempt
from ._implementation import Extensions as Extensions
from ._implementation import Parts as Parts
from ._implementation import Task as Task
from ._implementation import TaskBuilder as TaskBuilder
from ._implementation import TaskId as TaskId
from ._monitor import Monitor as Monitor
from ._monitor import MonitorError as MonitorError
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
from ._worker._service import Layer as Layer
from ._worker._service import NotReadyError as NotReadyError
from ._worker._service import Service as Service
from ._worker._worker import EventStream as EventStream
from ._worker._worker import Worker as Worker
from ._worker._worker import WorkerBuilder as WorkerBuilder
from .backends._capabilities import FetchById as FetchById
from .backends._capabilities import ListTasks as ListTasks
from .backends._capabilities import ListWorkers as ListWorkers
from .backends._capabilities import RegisterWorker as RegisterWorker
from .backends._capabilities import Reschedule as Reschedule
from .backends._capabilities import ResumeAbandoned as ResumeAbandoned
from .backends._capabilities import ResumeById as ResumeById
from .backends._capabilities import TaskResult as TaskResult
from .backends._capabilities import TaskSink as TaskSink
from .backends._capabilities import Update as Update
from .backends._capabilities import Vacuum as Vacuum
from .backends._capabilities import WaitForCompletion as WaitForCompletion
from .backends._capabilities import WorkerInfo as WorkerInfo
from .backends._codec import Codec as Codec
from .backends._codec import JsonCodec as JsonCodec
from .backends._custom import BackendBuilder as BackendBuilder
from .backends._custom import CustomBackend as CustomBackend
from .backends._custom import CustomConfig as CustomConfig
from .backends._custom import dequeue_backend as dequeue_backend
from .backends._json._journal import ReplayReport as ReplayReport
from .backends._json._storage import JsonStorage as JsonStorage
from .backends._memory._queues import MemoryQueues as MemoryQueues
from .backends._memory._storage import MemoryStorage as MemoryStorage
from .backends._memory._storage import MemoryStorageStatistics as MemoryStorageStatistics
from .backends._pipe import Pipe as Pipe
from .backends._pipe import PushTarget as PushTarget
from .backends._pipe import pipe_to as pipe_to
from .backends._poll import BackoffConfig as BackoffConfig
from .backends._poll import FutureStrategy as FutureStrategy
from .backends._poll import IntervalStrategy as IntervalStrategy
from .backends._poll import MultiStrategy as MultiStrategy
from .backends._poll import PollStrategy as PollStrategy
from .backends._poll import PollTicker as PollTicker
from .backends._poll import StreamStrategy as StreamStrategy
from .backends._protocols import Backend as Backend
from .embed._runtime import BackgroundRuntime as BackgroundRuntime
from .embed._runtime import RuntimeStoppedError as RuntimeStoppedError
from .embed._runtime import start_in_thread as start_in_thread
from .layers._ack import AcknowledgeLayer as AcknowledgeLayer
from .layers._ack import EventListenerLayer as EventListenerLayer
from .layers._circuit import CircuitBreakerConfig as CircuitBreakerConfig
from .layers._circuit import CircuitBreakerLayer as CircuitBreakerLayer
from .layers._circuit import CircuitBreakerStatistics as CircuitBreakerStatistics
from .layers._circuit import CircuitOpenError as CircuitOpenError
from .layers._circuit import CircuitState as CircuitState
from .layers._execution import CatchPanicLayer as CatchPanicLayer
from .layers._execution import RetryLayer as RetryLayer
from .layers._execution import TimeoutLayer as TimeoutLayer
from .layers._limits import ConcurrencyLimitLayer as ConcurrencyLimitLayer
from .layers._limits import LoadShedLayer as LoadShedLayer
from .layers._limits import OverloadedError as OverloadedError
from .layers._limits import RateLimitLayer as RateLimitLayer
from .layers._long_running import LongRunningConfig as LongRunningConfig
from .layers._long_running import LongRunningLayer as LongRunningLayer
from .layers._long_running import Operation as Operation
from .layers._long_running import OperationTimeoutError as OperationTimeoutError
from .layers._long_running import Runner as Runner
from .layers._otel import OpenTelemetryLayer as OpenTelemetryLayer
from .layers._prometheus import PrometheusLayer as PrometheusLayer
from .layers._tracing import TracingLayer as TracingLayer
from .testing._test_worker import TestWorker as TestWorker
from .typed._pool import QueueConfig as QueueConfig
from .typed._pool import RetentionMode as RetentionMode
from .typed._pool import WorkerPool as WorkerPool
from .typed._task import BackgroundTask as BackgroundTask
from .typed._task import CurrentTask as CurrentTask
from .typed._task import TaskHash as TaskHash
from .typed._task import UnknownTaskError as UnknownTaskError

__all__ = [
    "AbortError",
    "AcknowledgeLayer",
    "Attempt",
    "Backend",
    "BackendBuilder",
    "BackgroundRuntime",
    "BackgroundTask",
    "BackoffConfig",
    "BackoffMode",
    "BuildError",
    "CatchPanicLayer",
    "CircuitBreakerConfig",
    "CircuitBreakerLayer",
    "CircuitBreakerStatistics",
    "CircuitOpenError",
    "CircuitState",
    "Codec",
    "CodecError",
    "ConcurrencyLimitLayer",
    "CurrentTask",
    "CustomBackend",
    "CustomConfig",
    "Data",
    "DeferredError",
    "Event",
    "EventKind",
    "EventListenerLayer",
    "EventStream",
    "Extensions",
    "FetchById",
    "FutureStrategy",
    "IntervalStrategy",
    "JsonCodec",
    "JsonStorage",
    "Layer",
    "ListTasks",
    "ListWorkers",
    "LoadShedLayer",
    "LongRunningConfig",
    "LongRunningLayer",
    "MemoryQueues",
    "MemoryStorage",
    "MemoryStorageStatistics",
    "Meta",
    "MissingDataError",
    "Monitor",
    "MonitorError",
    "MonitorStatistics",
    "MultiStrategy",
    "NotReadyError",
    "OpenTelemetryLayer",
    "Operation",
    "OperationTimeoutError",
    "OverloadedError",
    "Parts",
    "Pipe",
    "PollStrategy",
    "PollTicker",
    "PrometheusLayer",
    "PushTarget",
    "PyapalisError",
    "QueueConfig",
    "RateLimitLayer",
    "RegisterWorker",
    "ReplayReport",
    "Reschedule",
    "ResumeAbandoned",
    "ResumeById",
    "RetentionMode",
    "RetryAfterError",
    "RetryLayer",
    "RetryPolicy",
    "Runner",
    "RuntimeStoppedError",
    "Service",
    "Status",
    "StorageError",
    "StreamStrategy",
    "Task",
    "TaskBuilder",
    "TaskError",
    "TaskFailedError",
    "TaskHash",
    "TaskId",
    "TaskResult",
    "TaskSink",
    "TaskTimeoutError",
    "TestWorker",
    "TimeoutLayer",
    "TracingLayer",
    "UnknownTaskError",
    "Update",
    "Vacuum",
    "WaitForCompletion",
    "Worker",
    "WorkerBuilder",
    "WorkerContext",
    "WorkerInfo",
    "WorkerPool",
    "WorkerState",
    "WorkerStateError",
    "dequeue_backend",
    "pipe_to",
    "start_in_thread",
]
