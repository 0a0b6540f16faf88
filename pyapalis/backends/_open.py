"""``open_backend(url)``: a backend from a URL, one scheme per line of a table.

Each scheme names the function that builds its backend as ``"module:function"``;
the module is imported only when its scheme is used, so an optional backend's
driver (psycopg, coredis) is needed only by those who use it. A backend adds
itself with one line in :data:`SCHEMES`. The function receives the parsed URL
and its query options (``?queue=emails&lease=10``), and takes the options it
knows with :func:`take_options`, which refuses the others by name.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

__all__ = ["SCHEMES", "open_backend", "take_options"]

SCHEMES: dict[str, str] = {
    "memory": "pyapalis.backends._open:memory_from_url",
    "json": "pyapalis.backends._open:json_from_url",
    "sqlite": "pyapalis.backends._open:sqlite_from_url",
    "postgresql": "pyapalis.backends._postgres._url:postgres_from_url",
    "postgres": "pyapalis.backends._postgres._url:postgres_from_url",
    "redis": "pyapalis.backends._redis._storage:from_url",
    "rediss": "pyapalis.backends._redis._storage:from_url",
}
"""URL scheme -> ``"module:function"`` building the backend from ``(url, options)``."""


def open_backend(url: str) -> Any:
    """The backend a URL names, not yet opened (``async with`` it, or hand it to a worker).

    ``memory://`` (a new MemoryStorage), ``json:///path/tasks.jsonl``,
    ``sqlite:///path/tasks.db`` (``sqlite:///`` then an absolute path; a
    relative one is ``sqlite://relative/tasks.db``), ``redis://host:port/db``
    (and ``rediss://``), ``postgresql://user@host:5432/db`` (libpq's URL; its
    own query options such as ``sslmode`` stay in it). Query options are the
    backend's keyword arguments: ``sqlite:///tasks.db?queue=emails&lease=10&
    synchronous=FULL``. An unknown scheme or option raises ``ValueError``
    naming it.
    """
    if not isinstance(url, str):
        raise TypeError(f"open_backend: url must be a str, got {url!r}")
    parsed = urlsplit(url)
    scheme = parsed.scheme.lower()
    target = SCHEMES.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in SCHEMES)
        raise ValueError(f"open_backend: unknown scheme in {url!r} (known: {known})")
    module_name, _, function_name = target.partition(":")
    build: Callable[[SplitResult, dict[str, str]], Any] = getattr(
        importlib.import_module(module_name), function_name
    )
    options: dict[str, str] = {}
    for key, value in parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=False):
        if key in options:
            raise ValueError(f"open_backend: option {key!r} given twice in {url!r}")
        options[key] = value
    return build(parsed, options)


def _positive_float(value: str) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError("must be a positive number")
    return number


def _natural(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


CONVERTERS: dict[type, Callable[[str], Any]] = {
    str: str,
    float: _positive_float,
    int: _natural,
}


def take_options(
    url: SplitResult, options: Mapping[str, str], known: Mapping[str, type]
) -> dict[str, Any]:
    """The URL's options converted to keyword arguments; ValueError for an unknown or bad one."""
    kwargs: dict[str, Any] = {}
    for key, text in options.items():
        kind = known.get(key)
        if kind is None:
            allowed = ", ".join(sorted(known)) or "none"
            raise ValueError(
                f"open_backend: unknown option {key!r} for {url.scheme}:// (known: {allowed})"
            )
        try:
            kwargs[key] = CONVERTERS[kind](text)
        except ValueError as error:
            raise ValueError(f"open_backend: option {key}={text!r}: {error}") from None
    return kwargs


def _path_of(url: SplitResult) -> str:
    path = url.netloc + url.path
    if not path:
        raise ValueError(f"open_backend: {url.geturl()!r} names no file")
    return path


def memory_from_url(url: SplitResult, options: dict[str, str]) -> Any:
    from ._memory._storage import MemoryStorage

    take_options(url, options, {})
    return MemoryStorage()


def json_from_url(url: SplitResult, options: dict[str, str]) -> Any:
    from ._json._storage import JsonStorage

    return JsonStorage(_path_of(url), **take_options(url, options, {"queue": str, "lease": float}))


def sqlite_from_url(url: SplitResult, options: dict[str, str]) -> Any:
    from ._sqlite._storage import SqliteStorage

    known = {
        "queue": str,
        "lease": float,
        "synchronous": str,
        "busy_timeout": float,
        "prefetch": int,
        "batch": int,
        "poll": float,
    }
    return SqliteStorage(_path_of(url), **take_options(url, options, known))
