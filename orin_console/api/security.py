"""Secure by default: loopback bind, a bearer token off loopback, a Host allowlist, bounded
request bodies, no CORS unless configured.

- :func:`check_bind` refuses a non-loopback bind without a token (the fix is in the message).
- With a token, every route but ``GET /system/health`` needs ``Authorization: Bearer <token>``,
  compared in constant time (:func:`hmac.compare_digest`).
- The ``Host`` header must name an allowed host (loopback names, the bind address, and any
  configured ones): a browser page on another origin that rebinds its DNS name to 127.0.0.1
  still sends its own name, and is refused.
- A request body over ``max_body_bytes`` is refused with 413 before it is read into memory.
- A body (POST, PUT, PATCH) is read here and checked by :mod:`orin_console.api.json_guard`
  (JSON content type, UTF-8, valid JSON, depth, duplicate keys, lone surrogates) before any
  route runs; the route then gets the same bytes, and still hears the client leave.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orin_console.api.json_guard import BodyProblem, check_body
from orin_console.core.errors import SettingsError
from orin_console.core.text import sanitize

PUBLIC_PATHS = frozenset({"/system/health"})
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
DEFAULT_MAX_BODY_BYTES = 1 << 20
"""1 MB: far above any prompt the runners take in one request (8 MB is the runner's own bound,
raised only for batch requests through the setting)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve off loopback without a token.

    Raises:
        SettingsError: ``host`` is not loopback and no token is set (the message says how).
    """
    if not is_loopback(host) and not token:
        raise SettingsError(
            f"refusing to serve on {host}: any address other than loopback needs a token; set one "
            "with --token or ORIN_TOKEN (e.g. ORIN_TOKEN=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')), or bind 127.0.0.1"
        )


def allowed_hosts_for(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host-header allowlist for a bind address: loopback names, the bind address (unless it
    is a wildcard) and ``extra``."""
    hosts = [*LOOPBACK_HOSTS]
    if bind_host not in ("0.0.0.0", "::", ""):
        hosts.append(bind_host if ":" not in bind_host else f"[{bind_host.strip('[]')}]")
    hosts.extend(extra)
    return list(dict.fromkeys(hosts))


async def _send_error(send: Send, status: int, kind: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None, scope: Scope | None = None) -> None:
    """The seed routes' error shape, or OpenAI's under ``/v1`` (``code``: the seed type)."""
    path = str((scope or {}).get("path", ""))
    if path == "/v1" or path.startswith("/v1/"):
        kind_v1 = {401: "authentication_error"}.get(status, "invalid_request_error")
        error: dict[str, Any] = {"message": message, "type": kind_v1, "param": None, "code": kind}
    else:
        error = {"type": kind, "message": message}
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class GuardMiddleware:
    """Host allowlist, bearer token and body-size bound, checked before any route runs.

    Args:
        app: the ASGI app to guard.
        token: the bearer token (None: no token needed; only allowed on loopback).
        allowed_hosts: Host header names accepted (without port); ``"*"`` accepts any.
        max_body_bytes: the largest request body accepted.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: Iterable[str],
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed = frozenset(h.lower() for h in allowed_hosts)
        self.max_body_bytes = max_body_bytes

    def _host_ok(self, scope: Scope) -> bool:
        if "*" in self.allowed:
            return True
        host = (_header(scope, b"host") or "").lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.allowed

    def _token_ok(self, scope: Scope) -> bool:
        if self.token is None or scope.get("path") in PUBLIC_PATHS:
            return True
        auth = _header(scope, b"authorization") or ""
        scheme, _, given = auth.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._host_ok(scope):
            await _send_error(send, 400, "HostNotAllowed",
                              "the Host header names a host this server does not serve (DNS "
                              "rebinding protection); use the server's address, or add the name "
                              "to the allowed hosts", scope=scope)
            return
        if not self._token_ok(scope):
            await _send_error(send, 401, "Unauthorized",
                              "this server needs 'Authorization: Bearer <token>' (the token it was "
                              "started with)", [(b"www-authenticate", b"Bearer")], scope=scope)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _send_error(send, 413, "BodyTooLarge",
                              f"the request body is {int(length)} bytes; the limit is {self.max_body_bytes}",
                              scope=scope)
            return
        bounded = self._bounded(receive, send)
        if scope.get("method") in BODY_METHODS:
            try:
                body = await _read_body(bounded)
            except BodyTooLarge as exc:
                await _send_error(send, 413, "BodyTooLarge", str(exc), scope=scope)
                return
            if body:
                content_type = _header(scope, b"content-type")
                problem = (check_body(body, content_type) if len(body) <= INLINE_CHECK_BYTES
                           else await asyncio.to_thread(check_body, body, content_type))  # off the loop
                if problem is not None:
                    await _send_problem(scope, send, problem)
                    return
            bounded = _replay(body, receive)
        await self.app(scope, bounded, send)

    def _bounded(self, receive: Receive, send: Send) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def bounded() -> Message:
            nonlocal seen
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return bounded


INLINE_CHECK_BYTES = 64 << 10
"""Bodies up to this size are checked on the event loop (well under a millisecond); larger ones
in a worker thread, so one big request never stalls the other clients' streams."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose body is read and checked (:mod:`orin_console.api.json_guard`) before any route runs."""


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left before sending it all
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the client's own messages (so a route still hears a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_problem(scope: Scope, send: Send, problem: BodyProblem) -> None:
    """The seed routes' error shape, or OpenAI's under ``/v1`` (``param``: the field at fault)."""
    path = str(scope.get("path", ""))
    whole = problem.field == "body"
    if path == "/v1" or path.startswith("/v1/"):  # OpenAI's param form: messages[0].content
        message = problem.message if whole else f"{problem.field}: {problem.message}"
        error: dict[str, Any] = {"message": sanitize(message), "type": "invalid_request_error",
                                 "param": None if whole else sanitize(problem.field), "code": problem.kind}
        status = 415 if problem.status == 415 else 400
    else:  # the seed routes' field form: messages.0.content
        field = re.sub(r"\[(\d+)\]", r".\1", problem.field)
        message = problem.message if whole else f"{field}: {problem.message}"
        error = {"type": problem.kind, "message": sanitize(message), "field": sanitize(field)}
        status = problem.status
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """A chunked request body went over the limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over the limit of {limit} bytes")
        self.limit = limit
