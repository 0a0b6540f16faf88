"""pyapalis: a fast task framework for trio, ported from Rust's apalis.

This module only re-exports; each name lives in a private module that owns it.
"""

from ._backend import Backend as Backend
from ._background import BackgroundTask as BackgroundTask
from ._background import CurrentTask as CurrentTask
from ._background import TaskHash as TaskHash
from ._background import UnknownTaskError as UnknownTaskError
from ._background_pool import QueueConfig as QueueConfig
from ._background_pool import RetentionMode as RetentionMode
from ._background_pool import WorkerPool as WorkerPool
from ._background_queues import MemoryQueues as MemoryQueues
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
from ._custom import BackendBuilder as BackendBuilder
from ._custom import CustomBackend as CustomBackend
from ._custom import CustomConfig as CustomConfig
from ._custom import dequeue_backend as dequeue_backend
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
from ._journal import ReplayReport as ReplayReport
from ._json_storage import JsonStorage as JsonStorage
from ._layer_ack import AcknowledgeLayer as AcknowledgeLayer
from ._layer_ack import EventListenerLayer as EventListenerLayer
from ._layer_circuit import CircuitBreakerConfig as CircuitBreakerConfig
from ._layer_circuit import CircuitBreakerLayer as CircuitBreakerLayer
from ._layer_circuit import CircuitBreakerStatistics as CircuitBreakerStatistics
from ._layer_circuit import CircuitOpenError as CircuitOpenError
from ._layer_circuit import CircuitState as CircuitState
from ._layer_execution import CatchPanicLayer as CatchPanicLayer
from ._layer_execution import RetryLayer as RetryLayer
from ._layer_execution import TimeoutLayer as TimeoutLayer
from ._layer_limits import ConcurrencyLimitLayer as ConcurrencyLimitLayer
from ._layer_limits import LoadShedLayer as LoadShedLayer
from ._layer_limits import OverloadedError as OverloadedError
from ._layer_limits import RateLimitLayer as RateLimitLayer
from ._layer_long_running import LongRunningConfig as LongRunningConfig
from ._layer_long_running import LongRunningLayer as LongRunningLayer
from ._layer_long_running import Operation as Operation
from ._layer_long_running import OperationTimeoutError as OperationTimeoutError
from ._layer_long_running import Runner as Runner
from ._layer_otel import OpenTelemetryLayer as OpenTelemetryLayer
from ._layer_prometheus import PrometheusLayer as PrometheusLayer
from ._layer_tracing import TracingLayer as TracingLayer
from ._memory import MemoryStorage as MemoryStorage
from ._memory import MemoryStorageStatistics as MemoryStorageStatistics
from ._monitor import Monitor as Monitor
from ._monitor import MonitorError as MonitorError
from ._monitor import MonitorStatistics as MonitorStatistics
from ._pipe import Pipe as Pipe
from ._pipe import PushTarget as PushTarget
from ._pipe import pipe_to as pipe_to
from ._poll import BackoffConfig as BackoffConfig
from ._poll import FutureStrategy as FutureStrategy
from ._poll import IntervalStrategy as IntervalStrategy
from ._poll import MultiStrategy as MultiStrategy
from ._poll import PollStrategy as PollStrategy
from ._poll import PollTicker as PollTicker
from ._poll import StreamStrategy as StreamStrategy
from ._retry import BackoffMode as BackoffMode
from ._retry import RetryPolicy as RetryPolicy
from ._runtime import BackgroundRuntime as BackgroundRuntime
from ._runtime import RuntimeStoppedError as RuntimeStoppedError
from ._runtime import start_in_thread as start_in_thread
from ._service import Layer as Layer
from ._service import NotReadyError as NotReadyError
from ._service import Service as Service
from ._status import Status as Status
from ._test_worker import TestWorker as TestWorker
from ._version import __version__ as __version__
from ._worker import EventStream as EventStream
from ._worker import Worker as Worker
from ._worker import WorkerBuilder as WorkerBuilder

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
