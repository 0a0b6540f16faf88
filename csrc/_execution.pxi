# Helpers backends call on the tasks they take back or finish: one C call
# instead of several attribute lookups and property setters. (What a worker does
# per execution is in _invoke.pxi.)


def undo_attempt(Task task not None):
    """Un-count an execution that was interrupted before it could finish."""
    cdef Attempt attempt = task.parts._attempt
    if attempt._count > 0:
        attempt._count -= 1


def set_status(Task task not None, status):
    """Set a task's status (a :class:`Status` member) without validation overhead."""
    task.parts._status = status


cdef object _DONE = Status.Done


cdef class AckRecorder:
    """The ``ack_nowait`` of a backend that keeps its finished tasks in a deque.

    ``AckRecorder(append, owner)``; ``recorder.ack(task, status, result,
    error)`` records the common outcome itself, a task ``Done`` with no error
    while :attr:`attention` is false: it sets the status, calls
    ``append(task)`` (no result) or ``append((task, status, result))``, then
    calls every outcome listener (:attr:`listeners`, see :meth:`tell`). Any
    other outcome goes to ``owner.record_outcome(task, status, result,
    error)`` (the twin's ``OutcomeRecorder`` protocol), which must record it
    the same way and do the rest. The owner is held weakly, so an owner
    keeping its recorder makes no reference cycle.
    """

    cdef object _append
    cdef object _owner
    cdef public bint attention  # every ack goes to the owner (someone waits)
    cdef public tuple listeners  # called with every outcome recorded here

    def __init__(self, append, owner):
        if not callable(append):
            raise TypeError(f"AckRecorder: append must be callable, got {append!r}")
        self._append = append
        self._owner = _weakref.ref(owner)
        self.attention = False
        self.listeners = ()

    def ack(self, Task task not None, status, result, error):
        """Record ``task``'s final outcome (see the class)."""
        if status is _DONE and error is None and not self.attention:
            task.parts._status = _DONE
            if result is None:
                self._append(task)
            else:
                self._append((task, _DONE, result))
            if self.listeners:
                self._tell(task, status, result, error)
            return
        owner = self._owner()
        if owner is None:
            raise ReferenceError("AckRecorder: its owner is gone")
        owner.record_outcome(task, status, result, error)

    def tell(self, task, status, result, error):
        """Call each listener with the outcome; one that raises is reported to
        ``owner.listener_failed(listener, error)`` and the others are still called."""
        self._tell(task, status, result, error)

    cdef int _tell(self, task, status, result, error) except -1:
        for listener in self.listeners:
            try:
                listener(task, status, result, error)
            except Exception as exc:
                owner = self._owner()
                if owner is not None:
                    owner.listener_failed(listener, exc)
        return 0
