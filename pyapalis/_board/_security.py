"""The board's security rules, in one middleware that every request passes.

Security (the board can retry, kill and delete tasks):

* A ``token``, when set, is required on every request: ``Authorization:
  Bearer <token>``, or the cookie set by opening ``/?token=<token>`` once
  (HttpOnly, SameSite=Strict). :mod:`._server` refuses to bind anything but
  loopback without one. Without a token only loopback ``Host`` names are
  accepted, so a web page cannot reach the board by DNS rebinding.
* Actions are POSTs that must carry the page's ``X-CSRF-Token`` (a random
  secret a cross-site page cannot read) and, when the browser sends them, a
  same-origin ``Origin`` and ``Sec-Fetch-Site``.
* Values are never written into HTML by the server; the page's script writes
  them with ``textContent``. A Content-Security-Policy allows scripts from the
  board only, so even an injected tag would not run.
"""

from __future__ import annotations

import hmac

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from ._hosts import host_of, is_loopback
from ._responses import error_response

__all__ = ["CSRF_HEADER", "SECURITY_HEADERS", "TOKEN_COOKIE", "Guard"]

TOKEN_COOKIE = "pyapalis_board"
CSRF_HEADER = "x-csrf-token"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class Guard(BaseHTTPMiddleware):
    """Token, CSRF and same-origin checks, errors as JSON, security headers on every response."""

    def __init__(self, app: ASGIApp, token: str | None, csrf: str) -> None:
        super().__init__(app)
        self.token = token
        self.csrf = csrf

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._checked(request, call_next)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api"):
            response.headers["cache-control"] = "no-store"
        return response

    async def _checked(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.token is None:
            # No token: this machine only. A page elsewhere whose name resolves
            # here (DNS rebinding) still sends its own name as Host: refused.
            host = host_of(request.headers.get("host", ""))
            if not is_loopback(host):
                return PlainTextResponse(
                    f"this board answers only to loopback host names, not {host!r}",
                    status_code=400,
                )
        else:
            given = request.query_params.get("token")
            if given is not None and request.method == "GET" and request.url.path == "/":
                if not _same(given, self.token):
                    return PlainTextResponse("wrong token", status_code=401)
                # Trade the token in the address for a cookie, and drop it from the address.
                redirect = RedirectResponse("/", status_code=303)
                redirect.set_cookie(
                    TOKEN_COOKIE, self.token, httponly=True, samesite="strict", path="/"
                )
                return redirect
            if not self._authorized(request):
                message = "a token is required: open /?token=<token> or send Authorization: Bearer"
                if request.url.path.startswith("/api"):
                    return error_response(message, 401)
                return PlainTextResponse(message, status_code=401)
        if request.method not in ("GET", "HEAD"):
            refusal = self._cross_site(request)
            if refusal is not None:
                return error_response(refusal, 403)
        return await call_next(request)

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and _same(header[7:], self.token):
            return True
        cookie = request.cookies.get(TOKEN_COOKIE)
        return cookie is not None and _same(cookie, self.token)

    def _cross_site(self, request: Request) -> str | None:
        """Why a state-changing request is refused as cross-site, or None."""
        if not _same(request.headers.get(CSRF_HEADER, ""), self.csrf):
            return "missing or wrong X-CSRF-Token header (actions come from the board's page)"
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site: {site})"
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return f"cross-origin request refused (Origin: {origin})"
        return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
