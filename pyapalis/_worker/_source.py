"""What a worker run uses of the backend it consumes, found once through the declared protocols.

A worker checks its backend against :class:`~pyapalis.backends.Backend` and the
optional protocols of :mod:`pyapalis.backends._worker_protocols` (and
``RegisterWorker``) once, when it is built — or, for a backend consumed
through a session per run (:class:`~pyapalis.backends._worker_protocols.WorkerSessions`),
when the run opens its session — and keeps the bound methods it will call in a
:class:`TaskSource`. Nothing is probed per task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._implementation import Task
from .._status import Status
from ..backends._capabilities import RegisterWorker
from ..backends._protocols import Backend
from ..backends._worker_protocols import Bindable, RunsAlongside, SyncAck, Wakeable

__all__ = ["TaskSource", "check_backend"]

_BACKEND_METHODS = ("take_nowait", "take", "ack", "retry", "release")


def check_backend(backend: object) -> str | None:
    """The first method of :class:`Backend` that ``backend`` lacks, or None if it has them all.

    (``bind`` is optional: :class:`Bindable`.)
    """
    for method in _BACKEND_METHODS:
        if not callable(getattr(backend, method, None)):
            return method
    return None


@dataclass(frozen=True, slots=True)
class TaskSource:
    """The backend as a worker run consumes it: its methods, and its optional extras or None."""

    backend: Backend
    take_nowait: Callable[[], Task | None]
    take: Callable[[], Awaitable[Task]]
    ack_nowait: Callable[[Task, Status, Any, BaseException | None], None] | None
    """:class:`SyncAck`."""
    take_or_wake: Callable[[], Awaitable[Task | None]] | None
    """:class:`Wakeable`, with :attr:`wake_takers`."""
    wake_takers: Callable[[], None] | None
    bind: Callable[[], None] | None
    """:class:`Bindable`."""
    register: Callable[[str], Awaitable[None]] | None
    """``RegisterWorker.register_worker``: the heartbeat."""
    alongside: Callable[[], Awaitable[None]] | None
    """:class:`RunsAlongside`."""

    @classmethod
    def of(cls, backend: Backend) -> TaskSource:
        """Check ``backend`` against the protocols, once; TypeError if it is no backend."""
        missing = check_backend(backend)
        if missing is not None:
            raise TypeError(f"{type(backend).__name__} is not a backend (no {missing}() method)")
        wakeable = backend if isinstance(backend, Wakeable) else None
        return cls(
            backend=backend,
            take_nowait=backend.take_nowait,
            take=backend.take,
            ack_nowait=backend.ack_nowait if isinstance(backend, SyncAck) else None,
            take_or_wake=wakeable.take_or_wake if wakeable is not None else None,
            wake_takers=wakeable.wake_takers if wakeable is not None else None,
            bind=backend.bind if isinstance(backend, Bindable) else None,
            register=backend.register_worker if isinstance(backend, RegisterWorker) else None,
            alongside=backend.run_alongside if isinstance(backend, RunsAlongside) else None,
        )
