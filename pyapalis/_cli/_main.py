"""Argument parsing and dispatch for ``pyapalis``; every failure is one line and an exit code.

argparse (the standard library) serves: sub-commands, help and usage errors
(exit 2) are all it needs to give, and the command then costs no dependency.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import trio

from .._errors import PyapalisError
from .._ops import _actions as actions
from .._ops._errors import ExitCode, OperationError
from .._ops._store import describe, opened
from .._version import __version__
from ._output import print_json, print_record, print_table

__all__ = ["build_parser", "main"]

TASK_COLUMNS = ("id", "status", "attempts", "run_at", "args")
WORKER_COLUMNS = ("name", "id", "host", "pid", "last_seen")
EPILOG = (
    "exit codes: 0 done; 1 the store or the worker failed; 2 bad arguments (URL, "
    "MODULE:ATTR); 3 no such task; 4 the backend lacks the capability; 5 the task's "
    "status forbids the action; 130 interrupted"
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    value = 0 if text.strip() == "0" else _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (also what ``--help`` prints)."""
    parser = argparse.ArgumentParser(
        prog="pyapalis", description="Run workers and manage task stores.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"pyapalis {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker",
        help="run a Worker, Monitor or WorkerPool until SIGINT/SIGTERM",
        description="Run MODULE:ATTR (a Worker, Monitor, WorkerPool, or a factory of one) "
        "until SIGINT or SIGTERM; exits 0 after a graceful stop.",
        epilog=EPILOG,
    )
    worker.add_argument("target", metavar="MODULE:ATTR")
    worker.add_argument("--concurrency", type=_positive, help="passed as concurrency= to a factory")

    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON for scripts")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("url", metavar="URL", help="sqlite:///path, json:///path, postgresql://...")
    store.add_argument("--queue", help="a named queue of the store (default: the URL's)")

    tasks = commands.add_parser("tasks", help="list and act on tasks", epilog=EPILOG)
    tasks.add_argument("url", metavar="URL", help="sqlite:///path, json:///path, postgresql://...")
    actions_parser = tasks.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions_parser.add_parser(
        "list", help="a page of tasks", parents=[json_flag], epilog=EPILOG
    )
    listing.add_argument("--status", help="only tasks of this status")
    listing.add_argument("--queue", help="a named queue of the store (default: the URL's)")
    listing.add_argument("--page", type=_positive, default=1)
    listing.add_argument("--page-size", type=_positive, default=20)
    for name, text in (
        ("show", "everything known of one task"),
        ("retry", "make a Failed or Killed task Pending again"),
        ("kill", "make a task that has not finished Killed"),
    ):
        action = actions_parser.add_parser(name, help=text, parents=[json_flag], epilog=EPILOG)
        action.add_argument("task_id", metavar="ID")
        if name == "kill":
            action.add_argument(
                "--reason", default=actions.KILL_REASON, help="recorded as the task's error"
            )
    purge = actions_parser.add_parser(
        "purge", help="delete every task of one status", parents=[json_flag], epilog=EPILOG
    )
    purge.add_argument("--status", required=True, help="Pending, Done, Failed or Killed")
    purge.add_argument("--queue", help="a named queue of the store (default: the URL's)")

    commands.add_parser(
        "workers", help="the workers a store knows of", parents=[store, json_flag], epilog=EPILOG
    )
    commands.add_parser(
        "migrate",
        help="create or migrate a store's schema",
        parents=[store, json_flag],
        epilog=EPILOG,
    )

    board = commands.add_parser("board", help="serve the web board", parents=[store], epilog=EPILOG)
    board.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine)")
    board.add_argument("--port", type=_port, default=8000, help="default 8000; 0 picks a free one")
    board.add_argument(
        "--token",
        help="required to bind anywhere but 127.0.0.1/::1/localhost "
        "(or the PYAPALIS_BOARD_TOKEN environment variable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (errors are one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return trio.run(_dispatch, args)
    except OperationError as error:
        print(f"pyapalis: error: {error.message}", file=sys.stderr)
        return int(error.code)
    except PyapalisError as error:
        print(f"pyapalis: error: {type(error).__name__}: {error}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    except KeyboardInterrupt:
        print("pyapalis: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "worker":
        from ._worker import run_target

        await run_target(args.target, args.concurrency)
        return int(ExitCode.OK)
    if args.command == "board":
        from .._board._server import serve_board

        await serve_board(args.url, args.queue, host=args.host, port=args.port, token=args.token)
        return int(ExitCode.OK)
    async with opened(args.url, getattr(args, "queue", None)) as backend:
        if args.command == "tasks":
            await _tasks(backend, args)
        elif args.command == "workers":
            _show_rows(await actions.list_workers(backend), WORKER_COLUMNS, args.json)
        else:  # migrate: opening the store created or migrated its schema
            persistent = hasattr(backend, "__aenter__")
            if args.json:
                print_json({"url": args.url, "migrated": persistent})
            elif persistent:
                print(f"{args.url}: schema up to date")
            else:
                print(f"{args.url}: {describe(backend)} keeps no schema; nothing to migrate")
    return int(ExitCode.OK)


async def _tasks(backend: Any, args: argparse.Namespace) -> None:
    if args.action == "list":
        status = actions.parse_status(args.status) if args.status else None
        rows = await actions.list_tasks(backend, status, args.page, args.page_size)
        _show_rows(rows, TASK_COLUMNS, args.json)
        if not args.json and len(rows) == args.page_size:
            print(f"(page {args.page}; --page {args.page + 1} for more)")
    elif args.action == "purge":
        status = actions.parse_status(args.status)
        progress = None if args.json else _progress_printer()
        count = await actions.purge_tasks(backend, status, progress)
        if args.json:
            print_json({"status": status.value, "deleted": count})
        else:
            print(f"deleted {count} {status.value} task(s)")
    else:
        if args.action == "kill":
            record = await actions.kill_task(backend, args.task_id, args.reason)
        elif args.action == "retry":
            record = await actions.retry_task(backend, args.task_id)
        else:
            record = await actions.show_task(backend, args.task_id)
        if args.json:
            print_json(record)
        else:
            print_record(record)


def _show_rows(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        print_json(rows)
    elif rows:
        print_table(rows, columns)
    else:
        print("(none)")


def _progress_printer() -> Any:
    """``progress(done, total)`` drawing ``purging 120/1000`` on stderr, one line redrawn.

    On a terminal the line is redrawn in place; elsewhere (a log) one line
    every 10% so that a long purge shows it is alive without flooding.
    """
    tty = sys.stderr.isatty()
    shown = {"tenth": -1}

    def progress(done: int, total: int) -> None:
        if tty:
            end = "\n" if done == total else ""
            print(f"\rpurging {done}/{total}", end=end, file=sys.stderr, flush=True)
            return
        tenth = done * 10 // total
        if tenth != shown["tenth"]:
            shown["tenth"] = tenth
            print(f"purging {done}/{total}", file=sys.stderr, flush=True)

    return progress
