"""Printing for people (aligned tables, key/value blocks) and for scripts (JSON)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

__all__ = ["cell", "print_json", "print_record", "print_table"]


def cell(value: Any) -> str:
    """One value as table text: JSON for structured values, ``-`` for None."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    # One line per row, whatever the args hold.
    return text.replace("\n", "\\n").replace("\r", "\\r")


def print_json(data: Any, out: TextIO | None = None) -> None:
    """``data`` as indented JSON (values JSON cannot hold become strings)."""
    stream = out if out is not None else sys.stdout
    stream.write(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    out: TextIO | None = None,
    *,
    limit: int = 60,
) -> None:
    """Rows as columns aligned on their widest cell, headed by the column names.

    Cells longer than ``limit`` characters are cut with ``…`` (``show`` or
    ``--json`` give them whole).
    """
    stream = out if out is not None else sys.stdout
    texts = [[_cut(cell(row.get(column)), limit) for column in columns] for row in rows]
    headers = [column.upper() for column in columns]
    widths = [
        max([len(header)] + [len(line[index]) for line in texts])
        for index, header in enumerate(headers)
    ]
    for line in [headers, *texts]:
        padded = (text.ljust(width) for text, width in zip(line, widths, strict=True))
        stream.write("  ".join(padded).rstrip() + "\n")


def print_record(record: dict[str, Any], out: TextIO | None = None) -> None:
    """One record as ``key: value`` lines, keys aligned; the timeline one event a line."""
    stream = out if out is not None else sys.stdout
    width = max(len(key) for key in record)
    for key, value in record.items():
        if key == "timeline":
            stream.write(f"{key.ljust(width)}:\n")
            for event in value:
                stream.write(f"  {cell(event['at']).ljust(24)}  {event['what']}\n")
            continue
        stream.write(f"{key.ljust(width)}: {cell(value)}\n")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
