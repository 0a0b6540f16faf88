"""MemoryStorage, the compiled in-process backend, and MemoryQueues (named MemoryStorages).

The queue itself is compiled (``TaskQueue`` in ``csrc/_deque.pxi``, its twin in
``pyapalis/_twin/_deque.py``); this package adds what needs trio: parking idle
consumers, waking them from any thread, schedules, backpressure, and the record
of finished tasks.
"""
