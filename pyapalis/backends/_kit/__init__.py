"""The backend kit: what every backend shares, written once.

The run clock between wall time and trio time (``_clock``); the shared-backend
model of DESIGN §8 (``_leases``: the ``LeaseStore`` protocol a shared backend
implements, and the ``LeaseSession`` a worker run consumes: batched claims,
fenced and batched acks, heartbeats, leaderless recovery). More parts
(argument validation, the result store) join it as the backends need them.
"""
