"""The board's JSON responses and how an :class:`OperationError` becomes one."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .._ops._errors import ExitCode, OperationError

__all__ = ["HTTP_STATUS", "JSON", "error_response", "operation_failed"]

HTTP_STATUS = {
    ExitCode.USAGE: 400,
    ExitCode.NOT_FOUND: 404,
    ExitCode.CONFLICT: 409,
    ExitCode.UNSUPPORTED: 501,
    ExitCode.FAILURE: 503,
}
"""The HTTP status of each kind of failure (the command's exit codes)."""


class JSON(Response):
    """A JSON response (orjson; values JSON cannot hold become strings), never cached."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


def _error(message: str, status_code: int) -> JSON:
    return JSON({"error": message}, status_code=status_code)


def error_response(message: str, status_code: int) -> JSON:
    """``{"error": message}`` with ``status_code``."""
    return JSON({"error": message}, status_code=status_code)


async def operation_failed(request: Request, error: Exception) -> Response:
    """An action that cannot be done: its one-line message, with the HTTP status it maps to."""
    assert isinstance(error, OperationError)
    return error_response(error.message, HTTP_STATUS.get(error.code, 500))
