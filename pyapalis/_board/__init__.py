"""``pyapalis board``: a web board to watch queues and act on tasks.

:mod:`._app` builds the Starlette application from :mod:`._endpoints` (the
page and the JSON API under ``/api``, on one opened backend and its other
queues), :mod:`._security` (token, CSRF, same origin, loopback host names of
:mod:`._hosts`, security headers) and :mod:`._responses` (JSON, errors as
HTTP statuses); :mod:`._openapi` is the API's OpenAPI document,
:mod:`._throughput` the live throughput samples, and :mod:`._server` serves it
all with hypercorn's trio worker. ``static/`` holds the page itself: HTML, CSS
and a script that only talks to ``/api`` and writes every value with
``textContent`` (never as HTML). Starlette and hypercorn are the ``board``
extra, imported only when the board starts.
"""
