"""Opening the backend a URL names, with its errors turned into :class:`OperationError`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .._errors import StorageError
from ..backends._open import open_backend
from ._errors import ExitCode, OperationError

__all__ = ["describe", "opened", "require"]


def describe(backend: Any) -> str:
    """A short name for messages: ``SqliteStorage /path/tasks.db``."""
    name = type(backend).__name__
    path = getattr(backend, "path", None)
    return f"{name} {path}" if isinstance(path, str) else name


def require(backend: Any, capability: type, action: str) -> Any:
    """``backend`` if it implements the protocol ``capability``, else an UNSUPPORTED error.

    The message names the backend, the action and the missing protocol, so a
    person knows it is the backend, not their input, that cannot do it.
    """
    if not isinstance(backend, capability):
        raise OperationError(
            f"{describe(backend)} cannot {action}: it does not implement {capability.__name__}",
            ExitCode.UNSUPPORTED,
        )
    return backend


@contextlib.asynccontextmanager
async def opened(url: str, queue: str | None = None) -> AsyncIterator[Any]:
    """The backend ``url`` names, opened (schema created or migrated) and closed after.

    ``queue`` selects another named queue of the same store
    (``storage.queue(name)``). A bad URL is a USAGE error; a store that fails
    (unreachable, locked, corrupt) a FAILURE, both as one line.
    """
    try:
        backend = open_backend(url)
    except (ValueError, TypeError) as error:
        raise OperationError(str(error), ExitCode.USAGE) from None
    except ImportError as error:
        raise OperationError(
            f"{url.split(':', 1)[0]}:// needs a driver that is not installed: {error}",
            ExitCode.USAGE,
        ) from None
    except StorageError as error:  # a backend whose construction opens its store (JsonStorage)
        raise OperationError(str(error), ExitCode.FAILURE) from None
    try:
        async with contextlib.AsyncExitStack() as stack:
            await _enter(stack, backend)
            if queue is not None:
                select = getattr(backend, "queue", None)
                if not callable(select):
                    raise OperationError(
                        f"{describe(backend)} has no named queues (--queue {queue})",
                        ExitCode.UNSUPPORTED,
                    )
                backend = select(queue)
                await _enter(stack, backend)
            yield backend
    except StorageError as error:
        raise OperationError(str(error), ExitCode.FAILURE) from None
    except OSError as error:
        raise OperationError(f"{url}: {error}", ExitCode.FAILURE) from None


async def _enter(stack: contextlib.AsyncExitStack, backend: Any) -> None:
    """Open ``backend`` for the stack's lifetime, if it is opened at all (MemoryStorage is not)."""
    if hasattr(backend, "__aenter__"):
        await stack.enter_async_context(backend)
