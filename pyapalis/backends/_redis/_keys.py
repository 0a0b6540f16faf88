"""The key layout of one queue in Redis.

Every key of a queue starts with ``<namespace>:{<queue>}:``: the braces are a
Redis Cluster hash tag, so one queue lives on one shard and every Lua script
touches a single slot. Under that prefix (``P``):

=====================  ===========  ====================================================
key                    type         holds
=====================  ===========  ====================================================
``P t:<id>``           hash         one task: args, metadata, status, attempts, run_at,
                                    limits, owner, result or error, timestamps
``P ready``            sorted set   due Pending tasks, all at score 0, ordered by member:
                                    priority (higher first), run_at, push order, id
``P ready:<name>``     sorted set   the due Pending typed tasks of one task name, members
                                    as in ``ready`` (a pool's claim merges its names')
``P sched``            sorted set   Pending tasks not yet due, by run_at (ms)
``P lease``            sorted set   Running tasks by lease deadline (ms)
``P h:<worker id>``    set          the tasks a worker run holds (its heartbeat extends them)
``P s:Pending``        sorted set   Pending tasks by push order (``list_tasks``)
``P s:<final>``        sorted set   Done, Failed, Killed tasks by finish time (ms): listing
                                    and retention expiry (Running ones are ``lease``'s)
``P all``              sorted set   every stored task by push order
``P gone``             sorted set   ids of expired or vacuumed tasks, by deletion time: a
                                    push of one stores nothing (a periodic tick runs once)
``P u:<key>``          string       the task holding a uniqueness key while Pending/Running
``P seq``              string       the push counter (push order)
``P workers``          sorted set   worker runs by last heartbeat (ms)
``P w:<worker id>``    hash         a worker run's name, host, pid, start (expires)
``P wake``             list         wake markers idle workers block on (BLPOP)
=====================  ===========  ====================================================
"""

from __future__ import annotations

__all__ = ["QueueKeys"]


class QueueKeys:
    """The names of one queue's keys (``prefix`` is ``<namespace>:{<queue>}:``)."""

    __slots__ = ("all", "lease", "prefix", "ready", "sched", "wake", "workers")

    def __init__(self, namespace: str, queue: str) -> None:
        self.prefix = f"{namespace}:{{{queue}}}:"
        p = self.prefix
        self.ready = p + "ready"
        self.sched = p + "sched"
        self.lease = p + "lease"
        self.all = p + "all"
        self.workers = p + "workers"
        self.wake = p + "wake"

    def task(self, task_id: str) -> str:
        """The hash of one task."""
        return f"{self.prefix}t:{task_id}"

    def status(self, status: str) -> str:
        """The index of the tasks in ``status`` (a Status value)."""
        return f"{self.prefix}s:{status}"

    def worker(self, worker_id: str) -> str:
        """The record of one worker run."""
        return f"{self.prefix}w:{worker_id}"

    def pattern(self) -> str:
        """A SCAN pattern matching every key of the queue."""
        return _glob_escape(self.prefix) + "*"


def _glob_escape(text: str) -> str:
    """``text`` with the glob characters of SCAN MATCH escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
