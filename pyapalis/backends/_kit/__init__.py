"""The backend kit: what every backend shares, written once.

- ``_args``: argument checks with one exception type and message per bad value
  (``list_tasks(page="1")`` fails the same way on every backend);
- ``_clock``: the run clock between wall time and trio time.

More parts (the result store, the lease machinery of shared backends) join it
as the backends that need them are built.
"""
