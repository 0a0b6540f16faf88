"""The backend kit: what every backend shares, written once.

The run clock between wall time and trio time (``_clock``); more parts (argument
validation, the result store, the lease machinery of shared backends) join it
as the backends that need them are built.
"""
