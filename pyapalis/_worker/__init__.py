"""The worker runtime: from a task taken off a backend to its acknowledgement.

Resolved once, at build: the handler's arguments (``_handler``, into the plan of
the compiled ``Invoker``), what the worker uses of its backend (``_source``),
the Service/Layer protocols with their declared hooks and how a stack is
composed (``_service``). Per task: the consumer loops (``_loop``), the
execution and the stack of layers (``_pipeline``), the one place an outcome is
recorded (``_recorder``, after the compiled ``Judge`` decided it). Around
them: the worker's state and events (``_context``, ``_events``, ``_stream``),
the retry policy (``_retry``), the worker and its builder (``_worker``).
Backends never import it; layers see only its Service protocol and context.
The public names are re-exported by :mod:`pyapalis` and :mod:`pyapalis.layers`.
"""
