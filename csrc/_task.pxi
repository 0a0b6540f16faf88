# Task, Parts and TaskBuilder: a task's arguments and everything a backend and
# a worker need to know about it.

cdef object _PENDING = Status.Pending


cdef inline object _as_status(object value, str name):
    if isinstance(value, Status):
        return value
    if isinstance(value, str):
        return Status(value)
    raise TypeError(f"{name}: expected Status, got {type(value).__name__} {value!r}")


cdef inline object _as_task_id(object value, str name):
    if value is None or isinstance(value, TaskId):
        return value
    if isinstance(value, str):
        return TaskId(value)
    raise TypeError(f"{name}: expected TaskId or str, got {type(value).__name__} {value!r}")


cdef object _meta_into(object ctx, object value):
    """Store ``value`` in a ctx mapping under its class's qualified name."""
    if ctx is None:
        ctx = {}
    elif not hasattr(ctx, "__setitem__"):
        raise TypeError(
            f"meta: the task ctx must be a mutable mapping to hold metadata, "
            f"got {type(ctx).__name__}"
        )
    cls = type(value)
    key = cls.__qualname__
    existing = ctx.get(key) if hasattr(ctx, "get") else None
    if existing is not None and not isinstance(existing, dict) and type(existing) is not cls:
        _meta_clash(cls, type(existing), key)
    ctx[key] = value
    return ctx


cdef _meta_clash(object cls, object other, str key):
    raise TypeError(
        f"meta: {cls.__module__}.{key} and {other.__module__}.{other.__qualname__} would "
        f"both be stored under {key!r} (metadata is keyed by the class's qualified name); "
        f"rename one of the classes, or wrap one in a class of its own"
    )


cdef inline object _copy_ctx(object ctx):
    # Metadata lives in a dict ctx: a clone gets its own dict so that adding
    # metadata to one copy does not leak into the other. Other contexts are
    # backend objects and are shared.
    if type(ctx) is dict:
        return dict(<dict>ctx)
    return ctx


@cython.final
@cython.freelist(256)
cdef class Parts:
    """Everything about a task except its arguments.

    ``max_attempts`` and ``timeout`` are ``None`` when unset (the worker's
    policy applies); ``run_at`` is UNIX seconds; ``ctx`` is the backend's
    context, a dict of metadata by default.
    """

    cdef object _task_id
    cdef Extensions _data
    cdef Attempt _attempt
    cdef public object ctx
    cdef object _status
    cdef double _run_at
    cdef double _timeout          # < 0 means None
    cdef long long _priority
    cdef int _max_attempts        # 0 means None

    def __init__(self, *, task_id=None, data=None, attempt=None, ctx=None,
                 status=Status.Pending, run_at=None, max_attempts=None,
                 timeout=None, priority=0):
        self.task_id = task_id
        self._data = None
        if data is not None:
            self.data = data
        if attempt is None:
            self._attempt = _new_attempt(0)
        else:
            self.attempt = attempt
        self.ctx = ctx
        self.status = status
        self._run_at = _wall_now() if run_at is None else _as_timestamp(run_at, "run_at")
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._priority = _as_priority(priority, "priority")

    @property
    def task_id(self):
        """The task's :class:`TaskId`, or None until a backend assigns one."""
        return self._task_id

    @task_id.setter
    def task_id(self, value):
        self._task_id = _as_task_id(value, "task_id")

    @property
    def data(self):
        """The task's :class:`Extensions` (values looked up by type)."""
        if self._data is None:
            self._data = Extensions.__new__(Extensions)
        return self._data

    @data.setter
    def data(self, value):
        if not isinstance(value, Extensions):
            raise TypeError(f"data: expected Extensions, got {type(value).__name__}")
        self._data = value

    @property
    def attempt(self):
        """The :class:`Attempt` counter, shared with clones of the task."""
        return self._attempt

    @attempt.setter
    def attempt(self, value):
        if not isinstance(value, Attempt):
            raise TypeError(f"attempt: expected Attempt, got {type(value).__name__}")
        self._attempt = value

    @property
    def status(self):
        """The task's :class:`Status`."""
        return self._status

    @status.setter
    def status(self, value):
        self._status = _as_status(value, "status")

    @property
    def run_at(self):
        """When the task may run, in UNIX seconds."""
        return self._run_at

    @run_at.setter
    def run_at(self, value):
        self._run_at = _as_timestamp(value, "run_at")

    @property
    def max_attempts(self):
        """The most executions this task may have, or None for the worker's policy."""
        return None if self._max_attempts == 0 else self._max_attempts

    @max_attempts.setter
    def max_attempts(self, value):
        self._max_attempts = 0 if value is None else _as_positive_int(value, "max_attempts")

    @property
    def timeout(self):
        """The limit of one execution in seconds, or None for the worker's."""
        return None if self._timeout < 0 else self._timeout

    @timeout.setter
    def timeout(self, value):
        self._timeout = -1.0 if value is None else _as_seconds(value, "timeout", False)

    @property
    def priority(self):
        """Higher runs first in backends that order by priority (a 64-bit int)."""
        return self._priority

    @priority.setter
    def priority(self, value):
        self._priority = _as_priority(value, "priority")

    def copy(self):
        """A copy that shares the Attempt and copies data (and a dict ctx) shallowly."""
        return _copy_parts(self)

    def __repr__(self):
        return (
            f"Parts(task_id={self._task_id!r}, status={self._status.name}, "
            f"attempt={self._attempt._count}, run_at={self._run_at!r}, "
            f"max_attempts={self.max_attempts!r}, timeout={self.timeout!r}, "
            f"priority={self._priority!r})"
        )


cdef Parts _copy_parts(Parts self):
    cdef Parts other = Parts.__new__(Parts)
    other._task_id = self._task_id
    other._data = None if self._data is None else _copy_extensions(self._data)
    other._attempt = self._attempt
    other.ctx = _copy_ctx(self.ctx)
    other._status = self._status
    other._run_at = self._run_at
    other._timeout = self._timeout
    other._priority = self._priority
    other._max_attempts = self._max_attempts
    return other


cdef inline Parts _new_parts(object ctx):
    cdef Parts parts = Parts.__new__(Parts)
    parts._attempt = _new_attempt(0)
    parts._status = _PENDING
    parts._run_at = _wall_now()
    parts._timeout = -1.0
    parts.ctx = ctx
    return parts


@cython.final
@cython.freelist(256)
cdef class Task:
    """A unit of work: the handler's arguments (``args``) and its :class:`Parts`."""

    cdef public object args
    cdef readonly Parts parts

    def __init__(self, args, ctx=None):
        self.args = args
        self.parts = _new_parts(ctx)

    @staticmethod
    def builder(args):
        """A :class:`TaskBuilder` for ``args``."""
        return TaskBuilder(args)

    @staticmethod
    def from_parts(args, parts):
        """A task made of ``args`` and existing ``parts`` (used by backends)."""
        if not isinstance(parts, Parts):
            raise TypeError(f"from_parts: expected Parts, got {type(parts).__name__}")
        return _task_from_parts(args, <Parts>parts)

    def clone(self):
        """A copy sharing the Attempt; ``data`` is copied shallowly."""
        return _task_from_parts(self.args, _copy_parts(self.parts))

    @property
    def task_id(self):
        """Shortcut for ``task.parts.task_id``."""
        return self.parts._task_id

    def __repr__(self):
        return (
            f"Task({self.args!r}, task_id={self.parts._task_id!r}, "
            f"status={self.parts._status.name}, attempt={self.parts._attempt._count})"
        )


cdef inline Task _task_from_parts(object args, Parts parts):
    cdef Task task = Task.__new__(Task)
    task.args = args
    task.parts = parts
    return task


cdef inline Task _new_task(object args):
    cdef Task task = Task.__new__(Task)
    task.args = args
    task.parts = _new_parts(None)
    return task


@cython.final
cdef class TaskBuilder:
    """Builds a :class:`Task` step by step; every method returns the builder.

    ``TaskBuilder("my-task").id("task-123").attempts(3).timeout(30)
    .run_in_minutes(10).build()``. Invalid input raises ``ValueError`` or
    ``TypeError`` naming the argument.
    """

    cdef object _args
    cdef object _task_id
    cdef Attempt _attempt
    cdef object _status
    cdef object _ctx
    cdef Extensions _data
    cdef double _run_at           # < 0 means "now, at build()"
    cdef double _timeout          # < 0 means None
    cdef long long _priority
    cdef int _max_attempts        # 0 means None

    def __init__(self, args):
        self._args = args
        self._status = _PENDING
        self._run_at = -1.0
        self._timeout = -1.0

    def id(self, value):
        """Use ``value`` (a str or :class:`TaskId`) as the task's id."""
        if isinstance(value, str) or isinstance(value, TaskId):
            self._task_id = TaskId(value)
            return self
        raise TypeError(f"id: expected str or TaskId, got {type(value).__name__} {value!r}")

    def with_task_id(self, value):
        """Alias of :meth:`id`."""
        return self.id(value)

    def attempts(self, n):
        """The maximum number of executions (>= 1)."""
        self._max_attempts = _as_positive_int(n, "attempts")
        return self

    def timeout(self, seconds):
        """The limit of one execution, in seconds or as a timedelta (> 0)."""
        self._timeout = _as_seconds(seconds, "timeout", False)
        return self

    def with_attempt(self, attempt):
        """Start from this :class:`Attempt` (the built task shares it)."""
        if not isinstance(attempt, Attempt):
            raise TypeError(
                f"with_attempt: expected Attempt, got {type(attempt).__name__} {attempt!r}"
            )
        self._attempt = attempt
        return self

    def with_status(self, status):
        """Start in this :class:`Status`."""
        self._status = _as_status(status, "with_status")
        return self

    def with_ctx(self, ctx):
        """Use this backend context (metadata added later goes into it)."""
        self._ctx = ctx
        return self

    def with_data(self, data):
        """Use these :class:`Extensions` (copied at build)."""
        if not isinstance(data, Extensions):
            raise TypeError(f"with_data: expected Extensions, got {type(data).__name__}")
        self._data = _copy_extensions(<Extensions>data)
        return self

    def data(self, value):
        """Insert one value into the task's data, keyed by its type."""
        if self._data is None:
            self._data = Extensions.__new__(Extensions)
        _extensions_insert(self._data, value)
        return self

    def meta(self, value):
        """Store ``value`` in the ctx metadata, keyed by its class's qualname."""
        self._ctx = _meta_into(self._ctx, value)
        return self

    def priority(self, value):
        """Higher runs first in backends that order by priority."""
        self._priority = _as_priority(value, "priority")
        return self

    def run_at_timestamp(self, seconds):
        """Run no earlier than this UNIX time (seconds)."""
        self._run_at = _as_timestamp(seconds, "run_at_timestamp")
        return self

    def run_at_time(self, when):
        """Run no earlier than this timezone-aware datetime."""
        if not isinstance(when, _datetime_cls):
            raise TypeError(
                f"run_at_time: expected datetime, got {type(when).__name__} {when!r}"
            )
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"run_at_time: datetime must be timezone-aware, got naive {when!r}"
            )
        self._run_at = _as_timestamp(when.timestamp(), "run_at_time")
        return self

    def run_after(self, delay):
        """Run no earlier than ``delay`` (seconds or timedelta) from now."""
        self._run_at = _after_now(delay, "run_after", 1.0)
        return self

    def run_in_seconds(self, n):
        """Run no earlier than ``n`` seconds from now."""
        self._run_at = _after_now(n, "run_in_seconds", 1.0)
        return self

    def run_in_minutes(self, n):
        """Run no earlier than ``n`` minutes from now."""
        self._run_at = _after_now(n, "run_in_minutes", 60.0)
        return self

    def run_in_hours(self, n):
        """Run no earlier than ``n`` hours from now."""
        self._run_at = _after_now(n, "run_in_hours", 3600.0)
        return self

    def build(self):
        """The task. The builder can be reused; each task gets its own data."""
        cdef Parts parts = Parts.__new__(Parts)
        parts._task_id = self._task_id
        parts._data = None if self._data is None else _copy_extensions(self._data)
        parts._attempt = _new_attempt(0) if self._attempt is None else self._attempt
        parts.ctx = _copy_ctx(self._ctx)
        parts._status = self._status
        parts._run_at = _wall_now() if self._run_at < 0 else self._run_at
        parts._timeout = self._timeout
        parts._priority = self._priority
        parts._max_attempts = self._max_attempts
        return _task_from_parts(self._args, parts)
