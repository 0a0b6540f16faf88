"""The backend kit: what every backend shares, written once.

- ``_args``: argument checks with one exception type and message per bad value
  (``list_tasks(page="1")`` fails the same way on every backend);
- ``_clock``: the run clock between wall time and trio time;
- ``_leases``: the shared-backend model of DESIGN §8 (the ``LeaseStore``
  protocol a shared backend implements, and the ``LeaseSession`` a worker run
  consumes: batched claims, fenced and batched acks, heartbeats, leaderless
  recovery);
- ``_results``: the result store (waiters and outcome listeners).
"""
