"""The OpenAPI 3.1 document of the board's JSON API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from .._version import __version__

__all__ = ["OPENAPI"]

_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
_ERROR = {"$ref": "#/components/schemas/Error"}
_TASK = {"$ref": "#/components/schemas/Task"}
_STATUS = {"$ref": "#/components/schemas/Status"}
_QUEUE = {
    "name": "queue",
    "in": "query",
    "description": "a named queue of the store (default: the board's URL's)",
    "schema": {"type": "string"},
}


def _reply(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _reply(_ERROR, "bad input (an unknown status, a page below 1)"),
    "401": _reply(_ERROR, "a token is required"),
    "403": _reply(_ERROR, "an action without the page's X-CSRF-Token, or cross-site"),
    "404": _reply(_ERROR, "no task with that id"),
    "409": _reply(_ERROR, "the task's status forbids the action"),
    "501": _reply(_ERROR, "the backend lacks the capability"),
    "503": _reply(_ERROR, "the store failed"),
}
_ACTION_SECURITY: list[dict[str, list[str]]] = [
    {"csrf": [], "bearer": []},
    {"csrf": [], "cookie": []},
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pyapalis board",
        "version": __version__,
        "description": "Watch a queue and act on its tasks. Actions are POSTs carrying the "
        "X-CSRF-Token of the board's page; a token, when the board has one, is sent as "
        "Authorization: Bearer or the cookie set by /?token=.",
    },
    "paths": {
        "/api/summary": {
            "get": {
                "summary": "Every queue's counts, the chosen queue's, throughput, capabilities",
                "parameters": [_QUEUE],
                "responses": {"200": _reply({"$ref": "#/components/schemas/Summary"}, "ok")},
            }
        },
        "/api/tasks": {
            "get": {
                "summary": "A page of tasks, optionally of one status",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"$ref": "#/components/schemas/Status"},
                    },
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {
                        "name": "page_size",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
                "responses": {
                    "200": _reply(
                        {
                            "type": "object",
                            "properties": {
                                "tasks": {"type": "array", "items": _TASK},
                                "page": {"type": "integer"},
                                "page_size": {"type": "integer"},
                            },
                        },
                        "ok",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/tasks/{task_id}": {
            "get": {
                "summary": "One task: args, status, attempts, run_at, error, result, timeline",
                "parameters": [_ID, _QUEUE],
                "responses": {"200": _reply(_TASK, "ok"), **_ERRORS},
            }
        },
        "/api/tasks/{task_id}/retry": {
            "post": {
                "summary": "Make a Failed, Killed or abandoned task Pending again",
                "parameters": [_ID, _QUEUE],
                "security": _ACTION_SECURITY,
                "responses": {"200": _reply(_TASK, "the task, now Pending"), **_ERRORS},
            }
        },
        "/api/tasks/{task_id}/kill": {
            "post": {
                "summary": "Make a task that has not finished Killed",
                "parameters": [_ID, _QUEUE],
                "security": _ACTION_SECURITY,
                "responses": {"200": _reply(_TASK, "the task, now Killed"), **_ERRORS},
            }
        },
        "/api/purge": {
            "post": {
                "summary": "Delete every task of one status (Pending, Done, Failed or Killed)",
                "parameters": [_QUEUE],
                "security": _ACTION_SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"$ref": "#/components/schemas/Status"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _reply(
                        {
                            "type": "object",
                            "properties": {
                                "status": {"$ref": "#/components/schemas/Status"},
                                "deleted": {"type": "integer"},
                            },
                        },
                        "how many were deleted",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/workers": {
            "get": {
                "summary": "The workers the store knows of, with their last heartbeat",
                "parameters": [_QUEUE],
                "responses": {
                    "200": _reply(
                        {
                            "type": "object",
                            "properties": {
                                "workers": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Worker"},
                                }
                            },
                        },
                        "ok",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "ok"}}}
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "pyapalis_board"},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
        },
        "schemas": {
            "Status": {
                "type": "string",
                "enum": ["Pending", "Queued", "Running", "Done", "Failed", "Killed"],
            },
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "Task": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "status": {"$ref": "#/components/schemas/Status"},
                    "args": {},
                    "attempts": {"type": "integer"},
                    "max_attempts": {"type": ["integer", "null"]},
                    "priority": {"type": "integer"},
                    "timeout": {"type": ["number", "null"]},
                    "run_at": {"type": "string", "format": "date-time"},
                    "created_at": {"type": ["string", "null"], "format": "date-time"},
                    "meta": {},
                    "result": {},
                    "error": {"type": ["string", "null"]},
                    "timeline": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "at": {"type": ["string", "null"]},
                                "what": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "Worker": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "id": {"type": ["string", "null"]},
                    "host": {"type": ["string", "null"]},
                    "pid": {"type": "integer"},
                    "started_at": {"type": "string", "format": "date-time"},
                    "last_seen": {"type": "string", "format": "date-time"},
                },
            },
            "Summary": {
                "type": "object",
                "properties": {
                    "backend": {"type": "string"},
                    "queue": {"type": ["string", "null"]},
                    "queues": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "queue": {"type": "string"},
                                "counts": {
                                    "type": "object",
                                    "additionalProperties": {"type": "integer"},
                                },
                                "total": {"type": "integer"},
                            },
                        },
                    },
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "total": {"type": "integer"},
                    "throughput": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "ago": {"type": "number"},
                                "per_minute": {"type": "number"},
                            },
                        },
                    },
                    "throughput_interval": {"type": "number"},
                    "can": {"type": "object", "additionalProperties": {"type": "boolean"}},
                },
            },
        },
    },
}
