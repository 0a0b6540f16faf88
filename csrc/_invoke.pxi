# What a worker does per execution, in C: call the handler with the arguments
# resolved at build (Invoker), decide what the outcome means (Judge), and
# record a Done the backend acknowledges synchronously (SyncDone).
#
# The pure-Python twin, pyapalis/_twin/_invoke.py, is the readable
# specification: both pass the same tests.

cdef object _INVOKE_RUNNING = Status.Running
cdef object _INVOKE_DONE = Status.Done
cdef object _INVOKE_PENDING = Status.Pending
cdef object _INVOKE_FAILED = Status.Failed
cdef object _INVOKE_KILLED = Status.Killed

# The kinds of a plan step: where one argument of the handler comes from.
STEP_ARGS = 0
STEP_CONSTANT = 1
STEP_ATTEMPT = 2
STEP_TASK_ID = 3
STEP_PARTS = 4
STEP_TASK = 5
STEP_EXTENSIONS = 6
STEP_DATA = 7
STEP_CALL = 8

cdef enum:
    _ARGS = 0
    _CONSTANT = 1
    _ATTEMPT = 2
    _TASK_ID = 3
    _PARTS = 4
    _TASK = 5
    _EXTENSIONS = 6
    _DATA = 7
    _CALL = 8


# -- the outcome rule ---------------------------------------------------------


@cython.final
cdef class Verdict:
    """What an execution's outcome means for its task (see :class:`Judge`).

    ``status`` is the status the task ends the execution with: ``Done``,
    ``Failed``, ``Killed``, or ``Pending`` for a retry after ``delay``
    seconds. ``error`` is the failure (None for ``Done``).
    """

    cdef readonly object status
    cdef readonly object error
    cdef readonly double delay

    def __init__(self, status, error=None, double delay=0.0):
        self.status = status
        self.error = error
        self.delay = delay

    def __repr__(self):
        if self.status is _INVOKE_PENDING:
            return f"Verdict(retry after {self.delay!r} s: {self.error!r})"
        if self.error is None:
            return f"Verdict({self.status.value})"
        return f"Verdict({self.status.value}: {self.error!r})"


cdef Verdict _DONE_VERDICT = Verdict(_INVOKE_DONE)
DONE = _DONE_VERDICT


def retry_delay(error, long long failures, backoff):
    """Seconds to wait before retrying after ``error``, the ``failures``-th failure.

    ``RetryAfterError`` brings its own delay, ``DeferredError`` none; any other
    error waits what ``backoff`` (a :class:`BackoffMode`, or None for none)
    says for that many failures. The one place a retry delay is chosen: the
    worker's retries through the backend and ``RetryLayer``'s in place.
    """
    if isinstance(error, RetryAfterError):
        return error.delay
    if backoff is None or isinstance(error, DeferredError):
        return 0.0
    return backoff.delay(failures)


@cython.final
cdef class Judge:
    """Decides what an execution's outcome means: the one rule of a worker.

    ``Judge(default_attempts, backoff)``: the attempt budget of a task that
    sets no ``max_attempts`` of its own, and the worker's backoff (None: retry
    at once).
    """

    cdef long long _default_attempts
    cdef object _backoff

    def __init__(self, long long default_attempts=1, backoff=None):
        if default_attempts < 1:
            raise ValueError(f"Judge: default_attempts must be >= 1, got {default_attempts!r}")
        self._default_attempts = default_attempts
        self._backoff = backoff

    cdef inline object _failure(self, object result, object error):
        if error is not None:
            return error
        if result is False:
            return TaskFailedError()
        return None

    cdef Verdict _decide(self, Task task, object result, object error):
        cdef Parts parts
        cdef long long attempt, budget
        error = self._failure(result, error)
        if error is None:
            return _DONE_VERDICT
        if isinstance(error, AbortError):
            return Verdict(_INVOKE_KILLED, error)
        parts = task.parts
        attempt = parts._attempt._count
        budget = parts._max_attempts if parts._max_attempts > 0 else self._default_attempts
        if attempt < budget:
            return Verdict(
                _INVOKE_PENDING, error, retry_delay(error, attempt if attempt > 1 else 1, self._backoff)
            )
        return Verdict(_INVOKE_FAILED, error)

    def failure(self, result, error):
        """The failure an outcome is, or None if it is a success.

        ``error`` if one was raised; a :class:`TaskFailedError` for the value
        ``False`` ("Task returned false"); None for any other value.
        """
        return self._failure(result, error)

    def decide(self, Task task not None, result, error):
        """The :class:`Verdict` on an execution of ``task`` that returned ``result``
        or raised ``error`` (None if it returned).

        A success is :data:`DONE`. ``AbortError`` is ``Killed``, never retried.
        Any other failure is retried (``Pending`` after :func:`retry_delay`)
        while the task has attempts left — its ``max_attempts``, else the
        default of this judge — and ``Failed`` once they are used up.
        """
        return self._decide(task, result, error)


@cython.final
cdef class SyncDone:
    """Records a success without awaiting, when the backend acknowledges synchronously.

    ``SyncDone(judge, listeners, on_success)``; :meth:`attach` gives it the
    backend's ``ack_nowait`` (:class:`SyncAck`) for a run, or None. Then
    ``record(task, result)`` acknowledges ``Done`` with the result and calls
    ``on_success(task, result)`` if ``listeners`` (a list) is not empty, and
    returns True, when the judge says the result is a success and the backend
    has ``ack_nowait``; otherwise it does nothing and returns False (the
    caller records the outcome by awaiting).
    """

    cdef Judge _judge
    cdef object _listeners
    cdef object _on_success
    cdef object _ack_nowait

    def __init__(self, Judge judge not None, listeners, on_success):
        self._judge = judge
        self._listeners = listeners
        self._on_success = on_success
        self._ack_nowait = None

    def attach(self, ack_nowait):
        """Acknowledge through ``ack_nowait`` from now on (None: never synchronously)."""
        self._ack_nowait = ack_nowait

    def record(self, Task task not None, result):
        """Record ``task`` Done with ``result`` now, if possible (see the class)."""
        if self._ack_nowait is None or self._judge._decide(task, result, None) is not _DONE_VERDICT:
            return False
        self._ack_nowait(task, _INVOKE_DONE, result, None)
        if self._listeners:
            self._on_success(task, result)
        return True


# -- calling the handler ---------------------------------------------------------


async def ready(value):
    """``await ready(value)`` is ``value``: a plain ``def`` handler's result as an awaitable.

    A compiled coroutine: awaiting it returns at once, without raising
    ``StopIteration`` as an iterator must (about 0.3 µs less a task).
    """
    return value


@cython.final
cdef class Step:
    """Where one argument of a handler comes from (see :class:`Invoker`)."""

    cdef readonly int kind
    cdef readonly object value
    cdef readonly object fallback

    def __init__(self, int kind, value=None, fallback=None):
        if kind < _ARGS or kind > _CALL:
            raise ValueError(f"Step: unknown kind {kind!r}")
        if kind == _CALL and not callable(value):
            raise TypeError(f"Step: a call step needs a callable, got {value!r}")
        self.kind = kind
        self.value = value
        self.fallback = fallback

    def value_for(self, Task task not None):
        """This argument's value for ``task``."""
        return _step_value(self, task)

    def __repr__(self):
        return f"Step({self.kind!r}, {self.value!r}, {self.fallback!r})"


cdef inline object _step_value(Step step, Task task):
    cdef int kind = step.kind
    cdef Parts parts
    cdef Extensions data
    if kind == _ARGS:
        return task.args
    if kind == _CONSTANT:
        return step.value
    parts = task.parts
    if kind == _ATTEMPT:
        return parts._attempt
    if kind == _TASK_ID:
        return parts._task_id
    if kind == _PARTS:
        return parts
    if kind == _TASK:
        return task
    if kind == _EXTENSIONS:
        return parts.data
    if kind == _DATA:
        data = parts._data
        if data is not None and data._map is not None:
            value = data._map.get(step.value)
            if value is not None:
                return value
        return step.fallback
    return step.value(task)


@cython.final
cdef class Invoker:
    """Calls a handler with the arguments its plan resolves, per execution.

    Built once, at ``WorkerBuilder.build()``: ``Invoker(function, steps,
    keywords=(), *, is_async, timeout, timed, plain_results, returns_later,
    finish_returned)``. ``steps`` is one :class:`Step` per positional
    parameter (the first is usually ``Step(STEP_ARGS)``), ``keywords`` pairs
    of a keyword-only parameter's name and its step.

    :meth:`begin` starts an execution: it counts the attempt, marks the task
    Running and returns what the worker awaits for the handler's result: the
    handler's own coroutine (an ``async def`` without a time limit), else
    ``timed(invoker, task, seconds)`` for a task limited by its own timeout or
    the worker's ``timeout``, which calls :meth:`call` inside its limit.
    :meth:`call` calls the handler: for a plain ``def``, its result comes back
    as an awaitable — :func:`ready` for a value, ``finish_returned(result,
    function)`` for a result that is ``returns_later`` and not of a type in
    ``plain_results``.
    """

    cdef object _function
    cdef tuple _steps
    cdef Py_ssize_t _count
    cdef tuple _names
    cdef tuple _named_steps
    cdef bint _is_async
    cdef double _timeout
    cdef object _timed
    cdef object _plain_results
    cdef object _returns_later
    cdef object _finish_returned

    def __init__(self, function, steps, keywords=(), *, bint is_async, timeout,
                 timed, plain_results, returns_later, finish_returned):
        if not callable(function):
            raise TypeError(f"Invoker: function must be callable, got {function!r}")
        self._steps = tuple(steps)
        if not self._steps:
            raise ValueError("Invoker: a handler takes at least one positional argument")
        for step in self._steps:
            if not isinstance(step, Step):
                raise TypeError(f"Invoker: steps must be Step objects, got {step!r}")
        named = tuple(keywords)
        self._names = tuple(name for name, _ in named)
        self._named_steps = tuple(step for _, step in named)
        for step in self._named_steps:
            if not isinstance(step, Step):
                raise TypeError(f"Invoker: keyword steps must be Step objects, got {step!r}")
        self._count = len(self._steps)
        self._function = function
        self._is_async = is_async
        self._timeout = -1.0 if timeout is None else timeout
        self._timed = timed
        self._plain_results = plain_results
        self._returns_later = returns_later
        self._finish_returned = finish_returned

    @property
    def function(self):
        """The handler."""
        return self._function

    @property
    def is_async(self):
        """Whether the handler is an ``async def`` (its call returns a coroutine)."""
        return self._is_async

    def begin(self, Task task not None):
        """Count an execution of ``task``, mark it Running, and start it (see the class)."""
        cdef Parts parts = task.parts
        cdef double timeout
        parts._attempt._count += 1
        parts._status = _INVOKE_RUNNING
        timeout = parts._timeout if parts._timeout >= 0 else self._timeout
        if timeout >= 0:
            return self._timed(self, task, timeout)
        return self._call(task)

    def call(self, Task task not None):
        """Call the handler for ``task``: a coroutine, or an awaitable of a plain def's result."""
        return self._call(task)

    cdef object _call(self, Task task):
        cdef Py_ssize_t count = self._count
        cdef Py_ssize_t i
        cdef tuple args
        cdef dict named
        cdef object result
        steps = self._steps
        if not self._names:
            if count == 1:
                result = self._function(_step_value(<Step>steps[0], task))
            elif count == 2:
                result = self._function(
                    _step_value(<Step>steps[0], task), _step_value(<Step>steps[1], task)
                )
            elif count == 3:
                result = self._function(
                    _step_value(<Step>steps[0], task),
                    _step_value(<Step>steps[1], task),
                    _step_value(<Step>steps[2], task),
                )
            else:
                result = self._function(*self._arguments(task))
        else:
            args = self._arguments(task)
            named = {}
            for i in range(len(self._names)):
                named[self._names[i]] = _step_value(<Step>self._named_steps[i], task)
            result = self._function(*args, **named)
        if self._is_async:
            return result
        if type(result) in self._plain_results or not isinstance(result, self._returns_later):
            return ready(result)
        return self._finish_returned(result, self._function)

    cdef tuple _arguments(self, Task task):
        return tuple([_step_value(<Step>step, task) for step in self._steps])
