"""The SDK's HTTP plumbing: one ``httpx.AsyncClient``, the server's errors as exceptions, the
transport's failures as :class:`~orin_console.client.errors.OrinConnectionError`, and
Server-Sent Events parsed by ``httpx_sse``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError, aconnect_sse

from orin_console.client.errors import OrinConnectionError, OrinTimeoutError, api_error


def sdk_version() -> str:
    """The installed ``orin-console`` version (``0+unknown`` when run from a bare checkout)."""
    try:
        return metadata.version("orin-console")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        return "0+unknown"


class Http:
    """What the API groups share: the client, the base URL, errors mapped on the way back."""

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def transport_error(self, path: str, exc: httpx.TransportError) -> OrinConnectionError:
        """A transport failure in the operator's words, naming the URL."""
        url, kind = self.url(path), type(exc).__name__
        reason = f"{kind}: {exc}" if str(exc) else kind
        if isinstance(exc, httpx.TimeoutException):
            return OrinTimeoutError(url, reason, f"Orin Console at {url} did not answer in time ({kind}); if it "
                                                 "is busy (loading a model, a long generation), raise "
                                                 "OrinClient(timeout=...)")
        if isinstance(exc, httpx.ConnectError):
            return OrinConnectionError(url, reason)
        return OrinConnectionError(url, reason, f"the connection to Orin Console at {url} broke ({reason}); "
                                                "did the server stop? Is `orin-console serve` still running?")

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      params: Mapping[str, Any] | None = None, expect: tuple[int, ...] = (200, 201, 202),
                      timeout: Any = None) -> Any:
        """Send a request; the decoded JSON answer, or the server's error raised. ``timeout``:
        this request's own (seconds or an ``httpx.Timeout``; None: the client's)."""
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = await self.client.request(method, path, json=json_body, params=params, **kwargs)
        except httpx.TransportError as exc:
            raise self.transport_error(path, exc) from exc
        if response.status_code not in expect:
            raise error_from(response)
        try:
            return response.json()
        except ValueError as exc:
            raise api_error(response.status_code, None,
                            fallback=f"the server's answer to {method} {path} was not JSON") from exc

    @asynccontextmanager
    async def sse(self, method: str, path: str, *, json_body: Any = None,
                  params: Mapping[str, Any] | None = None, timeout: Any = None) -> AsyncIterator[EventSource]:
        """An SSE connection: an error answer (JSON, not a stream) is raised as the server's
        error before any event is read."""
        kwargs: dict[str, Any] = {"json": json_body, "params": params}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            async with aconnect_sse(self.client, method, path, **kwargs) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    raise error_from(response)
                yield source
        except httpx.TransportError as exc:
            raise self.transport_error(path, exc) from exc


async def iter_events(source: EventSource, path: str, http: Http) -> AsyncIterator[tuple[str, Any]]:
    """``(event name, decoded data)`` for each event of an open SSE stream (comments and
    keep-alives skipped; data that is not JSON is passed as text)."""
    try:
        async for sse in source.aiter_sse():
            if not sse.event and not sse.data:
                continue
            try:
                data: Any = json.loads(sse.data) if sse.data else {}
            except ValueError:
                data = sse.data
            yield sse.event or "message", data
    except SSEError as exc:
        raise api_error(source.response.status_code, None,
                        fallback=f"{path} did not answer with an event stream ({exc})") from exc
    except httpx.TransportError as exc:
        raise http.transport_error(path, exc) from exc


def error_from(response: httpx.Response) -> Exception:
    """The exception for an error answer (its body decoded when it is JSON)."""
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    text = response.text.strip()[:200] if payload is None else ""
    fallback = f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")
    return api_error(response.status_code, payload, fallback=fallback)
