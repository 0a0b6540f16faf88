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
    error)`` records the common outcome itself, a task ``Done`` with no result
    while :attr:`attention` is false: it sets the status and calls
    ``append(task)``. Any other outcome goes to ``owner.record_outcome(task,
    status, result, error)`` (the twin's ``OutcomeRecorder`` protocol), which
    must do the same and the rest. The owner is held
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
        owner.record_outcome(task, status, result, error)
