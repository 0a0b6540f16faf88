"""``open_backend("postgresql://...")``: a PostgresStorage from a libpq URL.

The URL's query options split in two: the storage's own (``queue``, ``schema``,
``lease``...) become keyword arguments; the rest stay in the DSN for libpq
(``sslmode``, ``application_name``...), which is asked to parse it at once so
an unknown option is refused by name here, not at the first connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlencode, urlunsplit

from .._open import take_options

__all__ = ["postgres_from_url"]

_STORAGE_OPTIONS: dict[str, type] = {
    "queue": str,
    "schema": str,
    "lease": float,
    "batch": int,
    "prefetch": int,
    "poll": float,
    "pool_size": int,
    "statement_timeout": float,
    "connect_timeout": float,
    "synchronous_commit": str,
}

_SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def postgres_from_url(url: SplitResult, options: dict[str, str]) -> Any:
    """The PostgresStorage of ``postgresql://user@host:port/db?queue=...&schema=...``."""
    import psycopg
    from psycopg import pq

    from ._storage import PostgresStorage

    ours = {key: value for key, value in options.items() if key in _STORAGE_OPTIONS}
    theirs = {key: value for key, value in options.items() if key not in _STORAGE_OPTIONS}
    kwargs = take_options(url, ours, _STORAGE_OPTIONS)
    if "synchronous_commit" in kwargs:
        switch = _SWITCH.get(str(kwargs["synchronous_commit"]).lower())
        if switch is None:
            raise ValueError(
                f"open_backend: option synchronous_commit={kwargs['synchronous_commit']!r}: "
                "must be on or off"
            )
        kwargs["synchronous_commit"] = switch
    dsn = urlunsplit(("postgresql", url.netloc, url.path, urlencode(theirs), url.fragment))
    try:
        pq.Conninfo.parse(dsn.encode())
    except psycopg.Error as error:
        raise ValueError(f"open_backend: {url.scheme}:// URL refused by libpq: {error}") from None
    return PostgresStorage(dsn, **kwargs)
