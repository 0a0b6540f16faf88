"""Backends: where tasks wait, and the protocols between them and workers.

For users: the built-in backends (``MemoryStorage``, ``JsonStorage``,
``RedisStorage``, ``SqliteStorage``), ``open_backend(url)``, codecs, pipes, periodic tasks
(``CronStream``), and polling backends built with ``BackendBuilder``. For
backend authors: the ``Backend`` protocol a worker consumes, the optional
extras a worker uses (``SyncAck``, ``Wakeable``, ``Bindable``,
``RunsAlongside``, ``WorkerSessions`` with ``WorkerIdentity``,
``FiltersTaskNames``), the
shared-backend model (``LeaseStore``, the store operations a shared backend
implements, and ``LeaseSession`` over them, with ``LeaseConfig``, ``Claim``,
``Claimed``, ``Settlement``), the optional capability protocols
(``FetchById``, ``WaitForCompletion`` ...), the operations the command and
the board use (``Kill``, ``Delete``, ``CountTasks``, ``ListQueues``),
``TaskResult``/``WorkerInfo``, and for pipe sources that make their own tasks,
``TaskSource`` (with ``TaskPushTarget``, what they feed).
The common backends are also importable from :mod:`pyapalis` itself.
"""

from ._capabilities import CountTasks as CountTasks
from ._capabilities import Delete as Delete
from ._capabilities import FetchById as FetchById
from ._capabilities import Kill as Kill
from ._capabilities import ListQueues as ListQueues
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
from ._cron._stream import CronStream as CronStream
from ._cron._stream import MissedTicks as MissedTicks
from ._custom import BackendBuilder as BackendBuilder
from ._custom import CustomBackend as CustomBackend
from ._custom import CustomConfig as CustomConfig
from ._custom import dequeue_backend as dequeue_backend
from ._json._journal import ReplayReport as ReplayReport
from ._json._storage import JsonStorage as JsonStorage
from ._kit._leases import Claim as Claim
from ._kit._leases import Claimed as Claimed
from ._kit._leases import LeaseConfig as LeaseConfig
from ._kit._leases import LeaseSession as LeaseSession
from ._kit._leases import LeaseStore as LeaseStore
from ._kit._leases import Settlement as Settlement
from ._memory._queues import MemoryQueues as MemoryQueues
from ._memory._storage import MemoryStorage as MemoryStorage
from ._memory._storage import MemoryStorageStatistics as MemoryStorageStatistics
from ._open import open_backend as open_backend
from ._pipe import Pipe as Pipe
from ._pipe import PushTarget as PushTarget
from ._pipe import TaskPushTarget as TaskPushTarget
from ._pipe import TaskSource as TaskSource
from ._pipe import pipe_to as pipe_to
from ._poll import BackoffConfig as BackoffConfig
from ._poll import FutureStrategy as FutureStrategy
from ._poll import IntervalStrategy as IntervalStrategy
from ._poll import MultiStrategy as MultiStrategy
from ._poll import PollStrategy as PollStrategy
from ._poll import PollTicker as PollTicker
from ._poll import StreamStrategy as StreamStrategy
from ._postgres._storage import PostgresStorage as PostgresStorage
from ._protocols import Backend as Backend
from ._redis._storage import RedisStorage as RedisStorage
from ._sqlite._storage import SqliteStorage as SqliteStorage
from ._worker_protocols import Bindable as Bindable
from ._worker_protocols import FiltersTaskNames as FiltersTaskNames
from ._worker_protocols import RunsAlongside as RunsAlongside
from ._worker_protocols import SyncAck as SyncAck
from ._worker_protocols import Wakeable as Wakeable
from ._worker_protocols import WorkerIdentity as WorkerIdentity
from ._worker_protocols import WorkerSession as WorkerSession
from ._worker_protocols import WorkerSessions as WorkerSessions

__all__ = [
    "Backend",
    "BackendBuilder",
    "BackoffConfig",
    "Bindable",
    "Claim",
    "Claimed",
    "Codec",
    "CountTasks",
    "CronStream",
    "CustomBackend",
    "CustomConfig",
    "Delete",
    "FetchById",
    "FiltersTaskNames",
    "FutureStrategy",
    "IntervalStrategy",
    "JsonCodec",
    "JsonStorage",
    "Kill",
    "LeaseConfig",
    "LeaseSession",
    "LeaseStore",
    "ListQueues",
    "ListTasks",
    "ListWorkers",
    "MemoryQueues",
    "MemoryStorage",
    "MemoryStorageStatistics",
    "MissedTicks",
    "MultiStrategy",
    "Pipe",
    "PollStrategy",
    "PollTicker",
    "PostgresStorage",
    "PushTarget",
    "RedisStorage",
    "RegisterWorker",
    "ReplayReport",
    "Reschedule",
    "ResumeAbandoned",
    "ResumeById",
    "RunsAlongside",
    "Settlement",
    "SqliteStorage",
    "StreamStrategy",
    "SyncAck",
    "TaskPushTarget",
    "TaskResult",
    "TaskSink",
    "TaskSource",
    "Update",
    "Vacuum",
    "WaitForCompletion",
    "Wakeable",
    "WorkerIdentity",
    "WorkerInfo",
    "WorkerSession",
    "WorkerSessions",
    "dequeue_backend",
    "open_backend",
    "pipe_to",
]
