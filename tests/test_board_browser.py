"""The board in a real browser: headless Chromium (Debian's) driven by Playwright.

A real SQLite store gets real tasks run by a real worker (some fail), then
``python -m pyapalis board`` serves it as a subprocess. The test checks what a
person sees: the counts, a failed task's error, args holding markup shown as
text (no script runs), a retry that moves a task back to Pending, a kill,
a purge, refused actions, the workers; and a board with a token, opened once
by ``/?token=`` and then by its cookie. Screenshots go to the test's
directory, and to ``$PYAPALIS_BOARD_SCREENSHOT`` when set (that is how
``docs/board.png`` is made). Skips without chromium or Playwright, except
under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests._optional import IN_CI, installed, needs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    needs("playwright", "dev"),
    needs("starlette", "board"),
    needs("hypercorn", "board"),
    pytest.mark.skipif(
        CHROMIUM is None and not IN_CI,
        reason="chromium is not installed (apt-get install -y chromium)",
    ),
]
WAIT = 20.0
XSS = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>"


def _fill(path: Path) -> dict[str, Any]:
    """Six tasks run by a real worker (n % 3 == 0 fails), one Pending with markup in its args."""
    from pyapalis import Event, EventKind, SqliteStorage, TaskBuilder, WorkerBuilder

    async def fill() -> dict[str, Any]:
        async with SqliteStorage(path) as storage:
            ids = [
                str(await storage.push_task(TaskBuilder(n).attempts(1).build())) for n in range(6)
            ]
            finished = 0
            all_done = trio.Event()

            def on_event(_context: Any, event: Event) -> None:
                nonlocal finished
                if event.kind in (EventKind.Success, EventKind.Error):
                    finished += 1
                    if finished == len(ids):
                        all_done.set()

            async def handler(n: int) -> int:
                if n % 3 == 0:
                    raise ValueError(f"<b>boom</b> {n}")
                return n * n

            worker = WorkerBuilder("mailer").backend(storage).on_event(on_event).build(handler)
            with trio.fail_after(WAIT):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker.run)
                    await all_done.wait()
                    worker.context.stop()
            pending = str(await storage.push({"to": XSS}))
            async with storage.queue("emails") as emails:
                await emails.push_bulk(["a", "b"])
            await storage.register_worker("reporter")
            return {"ids": ids, "pending": pending}

    return trio.run(fill)


@contextlib.contextmanager
def _serve(db: Path, *extra: str) -> Iterator[str]:
    """``python -m pyapalis board`` on ``db`` as a subprocess; yields its address."""
    with subprocess.Popen(
        [sys.executable, "-m", "pyapalis", "board", f"sqlite://{db}", "--port", "0", *extra],
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        lines: queue.Queue[str] = queue.Queue()
        assert process.stderr is not None
        stream = process.stderr
        threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
        try:
            address = ""
            while not address:
                line = lines.get(timeout=WAIT)
                if line.startswith("pyapalis board:"):
                    address = line.rsplit(" on ", 1)[1].strip().rstrip("/")
            yield address
        finally:
            process.terminate()
            assert process.wait(timeout=WAIT) == 0  # SIGTERM stops the board cleanly


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any], Path]]:
    db = tmp_path / "tasks.db"
    seeded = _fill(db)
    with _serve(db) as address:
        yield address, seeded, db


def _shoot(page: Any, tmp_path: Path, name: str, publish: bool = False) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    target = os.environ.get("PYAPALIS_BOARD_SCREENSHOT")
    if publish and target:
        page.screenshot(path=target, full_page=True)


def _status(db: Path, task_id: str) -> str:
    from pyapalis import SqliteStorage

    async def read() -> str:
        async with SqliteStorage(db) as storage:
            task = await storage.fetch_by_id(task_id)
            assert task is not None
            return task.parts.status.value

    return trio.run(read)


def test_what_a_person_sees(board: tuple[str, dict[str, Any], Path], tmp_path: Path) -> None:
    assert installed("playwright")
    from playwright.sync_api import expect, sync_playwright

    address, seeded, db = board
    failed = [seeded["ids"][0], seeded["ids"][3]]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(address + "/")

            # The queue: counts by status.
            expect(page.locator('.card[data-status="Done"] .n')).to_have_text("4")
            expect(page.locator('.card[data-status="Failed"] .n')).to_have_text("2")
            expect(page.locator('.card[data-status="Pending"] .n')).to_have_text("1")
            expect(page.locator("#backend")).to_contain_text("SqliteStorage")
            rows = page.locator("#queues tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(1).locator("td").first).to_have_text("emails")
            expect(rows.nth(1).locator("td").last).to_have_text("2")
            _shoot(page, tmp_path, "queue", publish=True)

            # Another queue, chosen in the header.
            page.locator("#queue").select_option("emails")
            expect(page.locator('.card[data-status="Pending"] .n')).to_have_text("2")
            expect(page.locator('.card[data-status="Done"] .n')).to_have_text("0")
            page.locator("#queue").select_option("default")
            expect(page.locator('.card[data-status="Done"] .n')).to_have_text("4")

            # Failed tasks, then one of them: its error shown as text.
            page.locator('.card[data-status="Failed"]').click()
            expect(page.locator("tbody tr")).to_have_count(2)
            expect(page.locator("#status-filter")).to_have_value("Failed")
            _shoot(page, tmp_path, "failed")
            page.locator(f'tr[data-id="{failed[0]}"]').click()
            expect(page.locator("#f-error")).to_contain_text("<b>boom</b> 0")
            assert page.locator("#f-error b").count() == 0
            expect(page.locator("#f-status")).to_have_text("Failed")
            expect(page.locator("#kill")).to_be_disabled()
            _shoot(page, tmp_path, "task")

            # Retry: back to Pending, on the page and in the store.
            page.locator("#retry").click()
            expect(page.locator("#f-status")).to_have_text("Pending")
            expect(page.locator("#notice")).to_have_text("retry: done")
            assert _status(db, failed[0]) == "Pending"

            # Markup in args is text: nothing ran.
            page.goto(f"{address}/#/task/{seeded['pending']}")
            expect(page.locator("#f-args")).to_contain_text(XSS)
            assert page.evaluate("window.__xss") is None
            assert page.locator("#f-args img, #f-args script").count() == 0

            # Kill the Pending task from its page.
            page.locator("#kill").click()
            expect(page.locator("#f-status")).to_have_text("Killed")
            expect(page.locator("#f-error")).to_have_text("killed by an operator")
            assert _status(db, seeded["pending"]) == "Killed"
            refused = page.evaluate(
                "id => post('/tasks/' + id + '/kill').then(() => 'ok', error => error.message)",
                seeded["pending"],
            )
            assert refused == (
                f"task {seeded['pending']} is Killed: only tasks that have not finished "
                f"can be killed"
            )
            # The same origin without the page's CSRF token is refused too.
            forged = page.evaluate(
                "fetch('/api/purge', {method: 'POST', body: JSON.stringify({status: 'Failed'})})"
                ".then(response => response.status)"
            )
            assert forged == 403

            # Purge the Done tasks, confirming the dialog.
            page.goto(f"{address}/#/tasks?status=Done")
            expect(page.locator("tbody tr")).to_have_count(4)
            page.once("dialog", lambda dialog: dialog.accept())
            page.locator("#purge").click()
            expect(page.locator("#notice")).to_have_text("deleted 4 Done task(s)")
            expect(page.locator("main")).to_contain_text("No tasks.")

            # Workers, with their last heartbeat.
            page.locator('nav a[data-nav="workers"]').click()
            expect(page.locator("tbody tr")).to_have_count(1)
            expect(page.locator("tbody tr td").first).to_have_text("reporter")
            expect(page.locator("tbody tr td").last).to_contain_text(" s ago)")
            _shoot(page, tmp_path, "workers")
            assert errors == []
        finally:
            browser.close()


def test_a_token_opens_the_board_once_then_a_cookie_keeps_it_open(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    db = tmp_path / "tasks.db"
    _fill(db)
    token = "s3cret-token-for-the-test"
    with _serve(db, "--token", token) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            response = page.goto(address + "/")
            assert response is not None and response.status == 401
            expect(page.locator("body")).to_contain_text("a token is required")
            page.goto(f"{address}/?token={token}")
            assert page.url == address + "/"  # the token left the address bar
            expect(page.locator('.card[data-status="Done"] .n')).to_have_text("4")
            cookies = page.context.cookies()
            assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
                ("pyapalis_board", True, "Strict")
            ]
        finally:
            browser.close()
