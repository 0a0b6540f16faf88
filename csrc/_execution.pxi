# Hot-path helpers the worker calls once per execution: one C call instead of
# several attribute lookups and property setters.


cdef object _RUNNING = Status.Running


def begin_execution(Task task not None):
    """Count an execution and mark the task Running.

    Returns the task's own timeout in seconds, or None: the worker needs it
    next, and handing it back here saves a property lookup per task.
    """
    cdef Parts parts = task.parts
    parts._attempt._count += 1
    parts._status = _RUNNING
    return None if parts._timeout < 0 else parts._timeout


def undo_attempt(Task task not None):
    """Un-count an execution that was interrupted before it could finish."""
    cdef Attempt attempt = task.parts._attempt
    if attempt._count > 0:
        attempt._count -= 1


def set_status(Task task not None, status):
    """Set a task's status (a :class:`Status` member) without validation overhead."""
    task.parts._status = status


cdef object _DONE = Status.Done
cdef object _TIMED = object()
TIMED = _TIMED


def begin_direct(Task task not None):
    """:func:`begin_execution` for a worker that calls its handler itself.

    Counts an execution and marks the task Running, then returns the task's
    args, or :data:`TIMED` if the task sets a timeout of its own (the worker
    then takes its timed path).
    """
    cdef Parts parts = task.parts
    parts._attempt._count += 1
    parts._status = _RUNNING
    if parts._timeout < 0:
        return task.args
    return _TIMED


cdef class AckRecorder:
    """The ``ack_nowait`` of a backend that keeps its finished tasks in a deque.

    ``AckRecorder(append, owner)``; ``recorder.ack(task, status, result,
    error)`` records the common outcome itself, a task ``Done`` with no result
    while :attr:`attention` is false: it sets the status and calls
    ``append(task)``. Any other outcome goes to ``owner._ack_slow(task, status,
    result, error)``, which must do the same and the rest. The owner is held
    weakly, so an owner keeping its recorder makes no reference cycle.
    """

    cdef object _append
    cdef object _owner
    cdef public bint attention  # an ack has more to do: every one takes the slow path

    def __init__(self, append, owner):
        if not callable(append):
            raise TypeError(f"AckRecorder: append must be callable, got {append!r}")
        self._append = append
        self._owner = _weakref.ref(owner)
        self.attention = False

    def ack(self, Task task not None, status, result, error):
        """Record ``task``'s final outcome (see the class)."""
        if status is _DONE and result is None and error is None and not self.attention:
            task.parts._status = _DONE
            self._append(task)
            return
        owner = self._owner()
        if owner is None:
            raise ReferenceError("AckRecorder: its owner is gone")
        owner._ack_slow(task, status, result, error)
