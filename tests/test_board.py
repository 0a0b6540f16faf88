"""The board's JSON API and its security, through an ASGI client (httpx) on trio.

The app runs in this trio run on a real SQLite store; no server, no socket.
The page in a real browser is tests/test_board_browser.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests._optional import needs

pytestmark = [needs("starlette", "board"), needs("hypercorn", "board"), needs("httpx", "dev")]

CSRF = "c" * 32
TOKEN = "t" * 24
ACTION = {"X-CSRF-Token": CSRF}


async def _seed(storage: Any) -> dict[str, str]:
    from pyapalis import Status, TaskBuilder

    ids = {"pending": str(await storage.push({"to": "<script>alert(1)</script>"}))}
    for name, status in (("failed", Status.Failed), ("done", Status.Done)):
        task = TaskBuilder({"kind": name}).id(f"{name}-1").build()
        await storage.push_task(task)
        task.parts.status = status
        await storage.update(task)
        ids[name] = f"{name}-1"
    return ids


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Any]:
    from pyapalis import SqliteStorage

    async with SqliteStorage(tmp_path / "tasks.db") as storage:
        yield storage


def _client(app: Any, host: str = "127.0.0.1") -> Any:
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def test_api_reads(store: Any) -> None:
    from pyapalis._board._app import create_app

    ids = await _seed(store)
    async with _client(create_app(store, csrf=CSRF)) as client:
        summary = (await client.get("/api/summary")).json()
        assert summary["counts"] == {
            "Pending": 1,
            "Queued": 0,
            "Running": 0,
            "Done": 1,
            "Failed": 1,
            "Killed": 0,
        }
        assert summary["can"] == {"retry": True, "kill": True, "purge": True, "workers": True}
        listed = (await client.get("/api/tasks", params={"status": "failed"})).json()
        assert [task["id"] for task in listed["tasks"]] == [ids["failed"]]
        page = (await client.get("/api/tasks", params={"page": 2, "page_size": 2})).json()
        assert [task["id"] for task in page["tasks"]] == [ids["done"]]
        task = (await client.get(f"/api/tasks/{ids['pending']}")).json()
        assert task["args"] == {"to": "<script>alert(1)</script>"}
        assert [event["what"] for event in task["timeline"]] == ["created", "due"]
        missing = await client.get("/api/tasks/nope")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": f"no task 'nope' in SqliteStorage {store.path}"},
        )
        bad = await client.get("/api/tasks", params={"status": "Lost"})
        assert bad.status_code == 400 and "unknown status" in bad.json()["error"]
        assert (await client.get("/api/workers")).json() == {"workers": []}
        document = (await client.get("/api/openapi.json")).json()
        assert document["openapi"].startswith("3.")
        assert {"/api/summary", "/api/tasks", "/api/tasks/{task_id}/retry", "/api/purge"} <= set(
            document["paths"]
        )


async def test_every_queue_of_the_store(store: Any) -> None:
    from pyapalis._board._app import close_app, create_app

    await _seed(store)
    async with store.queue("emails") as emails:
        mail = str(await emails.push("hello"))
    app = create_app(store, csrf=CSRF)
    try:
        async with _client(app) as client:
            summary = (await client.get("/api/summary")).json()
            assert [(row["queue"], row["total"]) for row in summary["queues"]] == [
                ("default", 3),
                ("emails", 1),
            ]
            assert (summary["queue"], summary["total"]) == ("default", 3)
            scoped = (await client.get("/api/summary", params={"queue": "emails"})).json()
            assert (scoped["queue"], scoped["counts"]["Pending"], scoped["total"]) == (
                "emails",
                1,
                1,
            )
            listed = (await client.get("/api/tasks", params={"queue": "emails"})).json()
            assert [task["id"] for task in listed["tasks"]] == [mail]
            killed = await client.post(
                f"/api/tasks/{mail}/kill", params={"queue": "emails"}, headers=ACTION
            )
            assert killed.json()["status"] == "Killed"
    finally:
        await close_app(app)


async def test_named_queues_need_a_backend_that_has_them() -> None:
    from pyapalis import MemoryStorage
    from pyapalis._board._app import create_app

    async with _client(create_app(MemoryStorage(), csrf=CSRF)) as client:
        summary = (await client.get("/api/summary")).json()
        assert [row["queue"] for row in summary["queues"]] == ["default"]
        response = await client.get("/api/tasks", params={"queue": "emails"})
        assert response.status_code == 501
        assert response.json() == {"error": "MemoryStorage has no named queues (queue 'emails')"}


async def test_actions_with_the_page_csrf_token(store: Any) -> None:
    from pyapalis._board._app import create_app

    ids = await _seed(store)
    async with _client(create_app(store, csrf=CSRF)) as client:
        page = await client.get("/")
        assert f'<meta name="csrf-token" content="{CSRF}">' in page.text
        retried = await client.post(f"/api/tasks/{ids['failed']}/retry", headers=ACTION)
        assert (retried.status_code, retried.json()["status"]) == (200, "Pending")
        again = await client.post(f"/api/tasks/{ids['pending']}/retry", headers=ACTION)
        assert again.status_code == 409 and "is Pending" in again.json()["error"]
        killed = await client.post(f"/api/tasks/{ids['pending']}/kill", headers=ACTION)
        assert killed.json()["status"] == "Killed"
        purged = await client.post("/api/purge", headers=ACTION, json={"status": "Killed"})
        assert purged.json() == {"status": "Killed", "deleted": 1}
        assert (await client.post("/api/purge", headers=ACTION, content=b"[")).status_code == 400
        running = await client.post("/api/purge", headers=ACTION, json={"status": "Running"})
        assert running.status_code == 400
    assert await store.fetch_by_id(ids["pending"]) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "X-CSRF-Token"),
        ({"X-CSRF-Token": "wrong"}, "X-CSRF-Token"),
        ({**ACTION, "Origin": "http://evil.example"}, "cross-origin"),
        ({**ACTION, "Sec-Fetch-Site": "cross-site"}, "cross-site"),
    ],
)
async def test_cross_site_actions_are_refused(
    store: Any, headers: dict[str, str], reason: str
) -> None:
    from pyapalis._board._app import create_app

    ids = await _seed(store)
    async with _client(create_app(store, csrf=CSRF)) as client:
        response = await client.post(f"/api/tasks/{ids['failed']}/retry", headers=headers)
        assert response.status_code == 403 and reason in response.json()["error"]
        ok = await client.post(
            f"/api/tasks/{ids['failed']}/retry",
            headers={**ACTION, "Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"},
        )
        assert ok.status_code == 200


async def test_a_token_is_required_when_set(store: Any) -> None:
    from pyapalis._board._app import create_app

    await _seed(store)
    async with _client(create_app(store, token=TOKEN, csrf=CSRF), host="board.lan") as client:
        assert (await client.get("/api/summary")).status_code == 401
        assert (await client.get("/")).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 24}
        assert (await client.get("/api/summary", headers=wrong)).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/summary", headers=bearer)).status_code == 200
        assert (await client.get("/", params={"token": "nope"})).status_code == 401
        traded = await client.get("/", params={"token": TOKEN})
        assert traded.status_code == 303 and traded.headers["location"] == "/"
        cookie = traded.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        # The client keeps the cookie: the board now opens.
        assert (await client.get("/api/summary")).status_code == 200


async def test_only_loopback_hosts_without_a_token(store: Any) -> None:
    from pyapalis._board._app import create_app

    for host in ("rebound.example", "rebound.example:8000", "10.0.0.1", "[fe80::1]:80"):
        async with _client(create_app(store), host=host) as client:
            refused = await client.get("/api/summary")
            assert refused.status_code == 400
            assert "answers only to loopback host names" in refused.text
    for host in ("127.0.0.1:8000", "127.0.0.2", "[::1]:8000", "LOCALHOST:8000"):
        async with _client(create_app(store), host=host) as client:
            assert (await client.get("/api/summary")).status_code == 200, host
    async with _client(create_app(store), host="localhost") as client:
        response = await client.get("/api/summary")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


async def test_a_backend_without_a_capability(tmp_path: Path) -> None:
    from pyapalis import MemoryStorage
    from pyapalis._board._app import create_app

    storage = MemoryStorage()
    task_id = await storage.push("x")
    async with _client(create_app(storage, csrf=CSRF)) as client:
        summary = (await client.get("/api/summary")).json()
        assert summary["can"] == {"retry": False, "kill": True, "purge": False, "workers": False}
        response = await client.post(f"/api/tasks/{task_id}/retry", headers=ACTION)
        assert response.status_code == 501
        assert "does not implement ResumeById" in response.json()["error"]
        assert (await client.get("/api/workers")).status_code == 501


async def test_throughput_per_minute(autojump_clock: trio.testing.MockClock) -> None:
    from pyapalis._board._throughput import Throughput

    throughput = Throughput(interval=5.0)
    throughput.sample(0)
    await trio.sleep(2)
    throughput.sample(100)  # too soon: ignored
    await trio.sleep(3)
    throughput.sample(10)
    await trio.sleep(5)
    throughput.sample(4)  # a purge shrank the count: 0, not negative
    assert throughput.points() == [
        {"ago": 5.0, "per_minute": 120.0},
        {"ago": 0.0, "per_minute": 0.0},
    ]


@pytest.mark.parametrize(
    ("header", "host", "loopback"),
    [
        ("127.0.0.1:8000", "127.0.0.1", True),
        ("localhost", "localhost", True),
        ("[::1]:8000", "[::1]", True),
        ("::1", "::1", True),
        ("[::1", "[::1", False),
        ("board.lan:80", "board.lan", False),
        ("", "", False),
    ],
)
def test_host_names(header: str, host: str, loopback: bool) -> None:
    from pyapalis._board._hosts import host_of, is_loopback

    assert host_of(header) == host
    assert is_loopback(host) is loopback


def test_binding_elsewhere_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyapalis._board._server import TOKEN_VARIABLE, check_binding
    from pyapalis._cli import main
    from pyapalis._ops._errors import OperationError

    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    assert check_binding("127.0.0.1", None) is None
    assert check_binding("::1", None) is None
    assert main(["board", "memory://", "--host", "0.0.0.0"]) == 2
    assert capsys.readouterr().err == (
        "pyapalis: error: board: binding 0.0.0.0 (not this machine only) needs a token: "
        f"--token or {TOKEN_VARIABLE}\n"
    )
    with pytest.raises(OperationError, match="at least 16 characters"):
        check_binding("0.0.0.0", "short")
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    assert check_binding("0.0.0.0", None) == TOKEN


async def test_the_sampler_keeps_throughput_history(autojump_clock: trio.testing.MockClock) -> None:
    from pyapalis import MemoryStorage, WorkerBuilder
    from pyapalis._board._app import create_app, sample_throughput

    storage = MemoryStorage()
    app = create_app(storage, csrf=CSRF)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_throughput, app)
        await trio.sleep(1)  # sampled at 0: nothing finished
        ids = await storage.push_bulk(range(6))

        async def handler(n: int) -> None:
            await trio.sleep(0.1)

        worker = WorkerBuilder("w").backend(storage).build(handler)
        nursery.start_soon(worker.run)
        async with contextlib.aclosing(storage.wait_for(ids)) as results:
            assert len([result async for result in results]) == 6
        worker.context.stop()
        assert trio.current_time() - start < 5
        await trio.sleep_until(start + 5.5)  # sampled at 5: six finished
        async with _client(app) as client:
            summary = (await client.get("/api/summary")).json()
        assert summary["throughput"] == [{"ago": 0.5, "per_minute": 72.0}]
        nursery.cancel_scope.cancel()


def test_the_openapi_document_covers_every_api_route_and_its_references_resolve() -> None:
    from starlette.routing import Route

    from pyapalis import MemoryStorage
    from pyapalis._board._app import create_app
    from pyapalis._board._openapi import OPENAPI

    def references(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [ref for value in node.values() for ref in references(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in references(value)]
        return []

    for reference in references(OPENAPI):
        target: Any = OPENAPI
        for part in reference.removeprefix("#/").split("/"):
            target = target[part]  # KeyError: a dangling $ref
    routes = {
        (route.path.replace(":str}", "}"), method.lower())
        for route in create_app(MemoryStorage()).routes
        if isinstance(route, Route) and route.path.startswith("/api")
        for method in (route.methods or ()) - {"HEAD"}
    }
    documented = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    assert routes == documented


async def test_request_named_queues_are_limited_but_the_stores_are_all_shown(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyapalis._board import _endpoints
    from pyapalis._board._app import close_app, create_app

    monkeypatch.setattr(_endpoints, "MAX_QUEUE_HANDLES", 2)
    for name in ("a", "b", "c"):
        async with store.queue(name) as handle:
            await handle.push(name)
    app = create_app(store, csrf=CSRF)
    try:
        async with _client(app) as client:
            summary = (await client.get("/api/summary")).json()
            assert [row["queue"] for row in summary["queues"]] == ["a", "b", "c", "default"]
            refused = await client.get("/api/tasks", params={"queue": "no-such-queue"})
            assert refused.status_code == 400
            assert refused.json() == {"error": "the board keeps at most 2 queues open"}
            known = await client.get("/api/tasks", params={"queue": "c"})
            assert [task["args"] for task in known.json()["tasks"]] == ["c"]
    finally:
        await close_app(app)
