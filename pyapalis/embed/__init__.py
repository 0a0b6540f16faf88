"""Running workers inside programs that are not trio programs.

:func:`start_in_thread` runs a Worker or a Monitor under trio on a thread of its
own; any thread (or asyncio code) then pushes and submits tasks through the
returned :class:`BackgroundRuntime`.
"""

from .._errors import RuntimeStoppedError as RuntimeStoppedError
from ._runtime import BackgroundRuntime as BackgroundRuntime
from ._runtime import start_in_thread as start_in_thread

__all__ = [
    "BackgroundRuntime",
    "RuntimeStoppedError",
    "start_in_thread",
]
