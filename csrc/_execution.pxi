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
