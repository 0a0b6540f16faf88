"""The trio-native PostgreSQL driver: statements, cancellation on the server, lost sessions."""

from __future__ import annotations

import pytest
import trio

from pyapalis import StorageError
from tests._postgres import DSN, needs_postgres
from tests._postgres import pg_schema as pg_schema

pytestmark = needs_postgres


async def test_statement_with_parameters_and_nulls() -> None:
    from pyapalis.backends._postgres._driver import connect

    conn = await connect(DSN)
    try:
        rows = await conn.execute(
            b"SELECT $1::int + 1, $2::text, $3::text", [b"41", None, b"\xc3\xa9"]
        )
        assert rows == [[b"42", None, "é".encode()]]
        assert await conn.execute(b"SELECT 1 WHERE false") == []
    finally:
        conn.close()


async def test_server_error_names_the_problem_and_the_session_goes_on() -> None:
    from pyapalis.backends._postgres._driver import PostgresError, connect

    conn = await connect(DSN)
    try:
        with pytest.raises(PostgresError, match="division by zero") as info:
            await conn.execute(b"SELECT 1 / 0")
        assert info.value.sqlstate == "22012"
        assert isinstance(info.value, StorageError)
        assert await conn.execute(b"SELECT 2") == [[b"2"]]
    finally:
        conn.close()


async def test_cancelled_wait_cancels_the_statement_on_the_server() -> None:
    from pyapalis.backends._postgres._driver import connect

    conn = await connect(DSN)
    watcher = await connect(DSN)
    try:
        pid = str(conn.backend_pid).encode()
        started = trio.Event()

        async def slow() -> None:
            started.set()
            await conn.execute(b"SELECT pg_sleep(30)")

        with trio.move_on_after(5) as outer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                await started.wait()
                # Wait until the server runs it, then cancel the trio side.
                while not await watcher.execute(
                    b"SELECT 1 FROM pg_stat_activity WHERE pid = $1::int AND state = 'active'",
                    [pid],
                ):
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        assert not outer.cancelled_caught
        rows = await watcher.execute(
            b"SELECT state FROM pg_stat_activity WHERE pid = $1::int", [pid]
        )
        assert rows == [[b"idle"]], "the statement still runs on the server"
        assert await conn.execute(b"SELECT 3") == [[b"3"]], "the session is usable again"
    finally:
        conn.close()
        watcher.close()


async def test_terminated_session_raises_storage_error() -> None:
    from pyapalis.backends._postgres._driver import connect

    conn = await connect(DSN)
    killer = await connect(DSN)
    try:
        await killer.execute(
            b"SELECT pg_terminate_backend($1::int)", [str(conn.backend_pid).encode()]
        )
        with pytest.raises(StorageError, match="PostgreSQL"):
            await conn.execute(b"SELECT 1")
        assert conn.closed
        with pytest.raises(StorageError, match="closed"):
            await conn.execute(b"SELECT 1")
    finally:
        conn.close()
        killer.close()


async def test_connect_failure_names_the_server_without_the_password() -> None:
    from pyapalis.backends._postgres._driver import connect

    with pytest.raises(StorageError, match="cannot connect") as info:
        await connect("postgresql://someone:secret@127.0.0.1:1/nowhere", timeout=5)
    assert "secret" not in str(info.value)


async def test_notifications_reach_a_waiting_listener() -> None:
    from pyapalis.backends._postgres._driver import connect

    received: list[tuple[str, str]] = []
    listener = await connect(DSN, on_notify=received.append)
    sender = await connect(DSN)
    try:
        await listener.execute(b'LISTEN "pyapalis.driver_test"')
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                while not received:
                    await listener.wait_for_input()

            nursery.start_soon(listen)
            await sender.execute(b"SELECT pg_notify('pyapalis.driver_test', 'hello')")
        assert received == [("pyapalis.driver_test", "hello")]
        # A statement while the listener waits takes the session over.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.wait_for_input)
            await trio.sleep(0.01)
            assert await listener.execute(b"SELECT 5") == [[b"5"]]
            nursery.cancel_scope.cancel()
    finally:
        listener.close()
        sender.close()


async def test_migrations_are_idempotent_and_safe_when_many_open_at_once(pg_schema: str) -> None:
    from pyapalis.backends._postgres._driver import connect
    from pyapalis.backends._postgres._schema import LATEST, migrate

    applied: list[int] = []

    async def one() -> None:
        conn = await connect(DSN)
        try:
            applied.append(await migrate(conn, pg_schema))
        finally:
            conn.close()

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(one)
    assert sorted(applied) == [0] * 5 + [LATEST]
    conn = await connect(DSN)
    try:
        rows = await conn.execute(
            f'SELECT version FROM "{pg_schema}".schema_version ORDER BY version'.encode()
        )
        assert rows == [[str(v).encode()] for v in range(1, LATEST + 1)]
    finally:
        conn.close()


def test_schema_names_are_checked() -> None:
    from pyapalis import PostgresStorage

    for bad in ("Upper", "a-b", "1abc", "", 'x"; drop'):
        with pytest.raises(ValueError, match="schema must be a lower-case identifier"):
            PostgresStorage(DSN, schema=bad)
