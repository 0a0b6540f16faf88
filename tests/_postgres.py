"""The PostgreSQL server the tests use, and a fresh schema per test.

The server is ``PYAPALIS_POSTGRES_DSN`` (default: the local server on
127.0.0.1:5432, database ``test``, trust auth). Outside CI, tests that need it
skip with the reason when psycopg is missing or no server answers; in CI
(``CI=true``) they run, and fail if the server is not there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests._optional import IN_CI, installed

DSN = os.environ.get("PYAPALIS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _why_not() -> str | None:
    if not installed("psycopg"):
        return "psycopg is not installed (pip install -e '.[postgres]')"
    import psycopg

    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"no PostgreSQL server answers at {DSN} ({first}); set PYAPALIS_POSTGRES_DSN"
    return None


REASON = _why_not()

needs_postgres = pytest.mark.skipif(not IN_CI and REASON is not None, reason=REASON or "")
"""Skip unless a PostgreSQL server answers (never skip in CI)."""


def drop_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema name of this test's own, dropped afterwards."""
    name = "test_" + uuid.uuid4().hex[:16]
    try:
        yield name
    finally:
        drop_schema(name)
