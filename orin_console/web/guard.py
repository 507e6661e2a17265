"""Who may open the console in a browser: textual-serve has no authentication of its own, and
every session it opens is an operator's console (load, unload, move, chat), so every route
goes through :class:`WebGuard` first.

- **Token** (required off loopback; optional on it): the first page is opened as
  ``/?token=<token>``; a right token (compared in constant time) sets an ``HttpOnly``,
  ``SameSite=Strict`` cookie holding an HMAC of the token (never the token itself) and
  redirects to ``/`` so the token leaves the address bar and the history. Later requests and
  the websocket carry the cookie; scripts may send ``Authorization: Bearer <token>``.
- **Host allowlist** when no token is set (loopback only): a page on another site that
  rebinds its DNS name to 127.0.0.1 still sends its own name in ``Host`` and is refused.
- **Origin** of the websocket must be this server's own (a websocket is not subject to
  CORS: without this, any page the operator visits could open a console session).
- Headers that keep the page out of frames (the console takes keystrokes) and out of caches.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from orin_console.api.security import allowed_hosts_for

COOKIE = "orin_web"
_SESSION_TAG = b"orin-console web session v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_value(token: str) -> str:
    """The cookie's value for ``token``: an HMAC, so the cookie never holds the token."""
    return hmac.new(token.encode(), _SESSION_TAG, hashlib.sha256).hexdigest()


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _refuse(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain", headers=headers)


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class WebGuard:
    """An aiohttp middleware: token, Host allowlist, websocket Origin.

    Args:
        token: the token the browser must present (None: none; only allowed on loopback,
            which the caller checks with ``check_bind``).
        bind_host: the address served on (joins the Host allowlist).
        allowed_hosts: more Host names to accept when no token is set.
    """

    def __init__(self, *, token: str | None, bind_host: str, allowed_hosts: Iterable[str] = ()) -> None:
        self.token = token or None
        self._cookie = session_value(token).encode() if token else None
        self.allowed = frozenset(h.lower() for h in allowed_hosts_for(bind_host, allowed_hosts))

    def host_ok(self, request: web.Request) -> bool:
        """With a token any Host will do (the token guards); without one, loopback names only."""
        if self.token is not None:
            return True
        return _host_name(request.headers.get("Host", "")) in self.allowed

    def token_ok(self, request: web.Request) -> bool:
        """The session cookie or a bearer header is right (always true without a token)."""
        if self._cookie is None or self.token is None:
            return True
        cookie = request.cookies.get(COOKIE, "")
        if hmac.compare_digest(cookie.encode("utf-8", "replace"), self._cookie):
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token.encode())

    def given_token_ok(self, request: web.Request) -> bool | None:
        """``?token=``: None when absent, else whether it is right."""
        if "token" not in request.query or self.token is None:
            return None
        given = request.query.get("token", "")
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    @staticmethod
    def origin_ok(request: web.Request) -> bool:
        """A websocket's Origin (browsers always send one) names this very server."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser: the token (or loopback) is what guards it
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == request.headers.get("Host", "").lower()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.host_ok(request):
            return _refuse(400, "orin-console web: the Host header names a host this server does not serve "
                                "(DNS rebinding protection); open it by its address (e.g. http://127.0.0.1:PORT/)")
        given = self.given_token_ok(request)
        response: web.StreamResponse
        if given is True:
            query = request.rel_url.query.copy()
            query.popall("token", None)
            target = request.rel_url.with_query(query)
            response = web.Response(status=303, headers={"Location": str(target)})
            response.set_cookie(COOKIE, session_value(self.token or ""), httponly=True, samesite="Strict",
                                path="/", secure=request.secure)
            response.headers.update(SECURITY_HEADERS)
            return response
        if given is False or not self.token_ok(request):
            return _refuse(401, "orin-console web: this console needs its token: open /?token=<token> once (the "
                                "token it was started with, --token or ORIN_TOKEN); the browser then keeps a "
                                "session cookie", {"WWW-Authenticate": "Bearer", **SECURITY_HEADERS})
        if request.path == "/ws" and not self.origin_ok(request):
            return _refuse(403, "orin-console web: a console session may only be opened by this server's own page "
                                "(the websocket's Origin is another site)")
        served = await handler(request)
        if not served.prepared:
            for key, value in SECURITY_HEADERS.items():
                served.headers.setdefault(key, value)
        return served
