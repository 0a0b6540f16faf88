"""The worker runtime: from a task taken off a backend to its acknowledgement.

It owns the handler's resolution at build (``_handler``), the worker's state
and events (``_context``, ``_events``), the retry policy (``_retry``), the
Service/Layer protocols and how a stack is composed (``_service``), what
happens to one task (``_pipeline``) and the consumer loops with the builder
(``_worker``). Backends never import it; layers see only its Service protocol.
The public names are re-exported by :mod:`pyapalis` and :mod:`pyapalis.layers`.
"""
