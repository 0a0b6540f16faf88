"""``pyapalis board``: a web board to watch queues and act on tasks.

:mod:`._app` is the Starlette application (pages, the JSON API under
``/api``, the security rules), :mod:`._openapi` its OpenAPI document,
:mod:`._throughput` the live throughput samples, :mod:`._server` serves it with
hypercorn's trio worker. ``static/`` holds the page itself: HTML, CSS and a
script that only talks to ``/api`` and writes every value with
``textContent`` (never as HTML). Starlette and hypercorn are the ``board``
extra, imported only when the board starts.
"""
