"""The backend kit: what every backend shares, written once.

- ``_args``: argument checks with one exception type and message per bad value
  (``list_tasks(page="1")`` fails the same way on every backend);
- ``_results``: the result store (finished tasks, result waiters with an
  optional poll of a shared store, outcome listeners behind a compiled ack);
- ``_sink``: what every ``TaskSink`` does alike (``push_stream``);
- ``_handle``: the queue-handle logic of the shared backends (``task_names``,
  ``queue_name``, ``async with``);
- ``_names``: the stored task name and a typed task's uniqueness key;
- ``_clock``: the run clock between wall time and trio time, and the
  declaration of virtual clocks (``VirtualClock``);
- ``_leases``: the shared-backend model (the ``LeaseStore`` protocol a shared
  backend implements, and the ``LeaseSession`` a worker run consumes: batched
  claims, fenced and batched acks, heartbeats, leaderless recovery).
"""
