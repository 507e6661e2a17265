"""``OrinClient``: the async SDK's entry point, and its ``system`` and ``models`` groups."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, overload
from urllib.parse import quote

import httpx

from orin_console.client import checks
from orin_console.client._http import Http, iter_events, sdk_version
from orin_console.client.errors import OperationFailedError, OrinClientError, OrinTimeoutError, api_error
from orin_console.client.inference import InferenceAPI
from orin_console.client.placement import PlacementAPI
from orin_console.client.preview import AddPreview
from orin_console.client.types import (
    AddResult,
    Health,
    ModelInfo,
    ModelStats,
    Operation,
    PlanVerdict,
    ServerEvent,
    SystemStatus,
    _list,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "ORIN_API_URL"
"""The server's URL when ``base_url`` is not given (else :data:`DEFAULT_BASE_URL`)."""
TOKEN_VARIABLE = "ORIN_TOKEN"
"""The bearer token when ``token`` is not given (the variable ``orin-console serve`` reads too)."""
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=5.0)
"""Five seconds to connect; five minutes for an answer (a generation may wait for a load)."""


def _id(model_id: Any, name: str = "model_id") -> str:
    if not isinstance(model_id, str) or not model_id:
        raise TypeError(f"{name}: a model id must be a non-empty str, not {model_id!r}"[:200])
    return quote(checks.model_id(name, model_id), safe="")


def _tier(tier: Any, *, required: bool = False, allowed: tuple[str, ...] = ("ram", "swap")) -> str | None:
    if tier is None and not required:
        return None
    if not isinstance(tier, str):
        raise TypeError(f"tier must be a str ({' or '.join(map(repr, allowed))}), not {type(tier).__name__}")
    return checks.choice("tier", tier, allowed)


def _check_base_url(base_url: Any) -> None:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str (an http:// or https:// URL), not {type(base_url).__name__}")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url[:100]!r}")
    try:
        url = httpx.URL(base_url)
        port = url.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"base_url {base_url[:100]!r} is not a URL: {exc}") from None
    if not url.host or any(c.isspace() for c in base_url) or (port is not None and not 0 < port < 65536):
        raise ValueError(f"base_url {base_url[:100]!r} needs a host (and a port from 1 to 65535), e.g. "
                         f"{DEFAULT_BASE_URL}")


def _check_timeout(timeout: Any) -> None:
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return
    checks.number("timeout", timeout, 0.0, 1e9, low_open=True)


def _check_headers(headers: Any) -> None:
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of str to str, not {type(headers).__name__}")
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"headers must map str to str, not {type(name).__name__} to {type(value).__name__}")
        if not name or not all(c.isascii() and c.isprintable() and c not in " :" for c in name):
            raise ValueError(f"headers: {name[:40]!r} is not a header name")
        if not all(c.isprintable() for c in value) or not value.isascii():
            raise ValueError(f"headers[{name[:40]!r}] holds a character a header cannot carry (control, "
                             "non-ASCII)")


class SystemAPI:
    """The server and the machine: ``client.system``."""

    def __init__(self, http: Http) -> None:
        self._http = http

    async def health(self) -> Health:
        """``GET /system/health``: the server is up (needs no token)."""
        return Health.from_dict(await self._http.request("GET", "/system/health"))

    async def get_system_status(self) -> SystemStatus:
        """``GET /system/status``: models (``status["models"]["total"]``, loaded per tier,
        states), tier budgets, memory, telemetry, uptime."""
        return SystemStatus.from_dict(await self._http.request("GET", "/system/status"))

    status = get_system_status


class ModelsAPI:
    """The catalog and the models' life cycle: ``client.models``.

    ``load``, ``move`` and ``unload`` start an operation on the server and return it; with
    ``wait=True`` (the default) they follow it (``GET /operations/{id}``) until it ends and
    raise :class:`~orin_console.client.errors.OperationFailedError` when it fails.
    """

    def __init__(self, http: Http, *, poll_interval: float = 0.05) -> None:
        self._http = http
        self._poll = poll_interval

    async def list(self) -> list[ModelInfo]:
        """``GET /models/list``: every catalog model and its state."""
        answer = await self._http.request("GET", "/models/list")
        models = answer.get("models") if isinstance(answer, Mapping) else answer
        return [ModelInfo.from_dict(m) for m in _list(models) if isinstance(m, Mapping)]

    async def get(self, model_id: str) -> ModelInfo:
        """``GET /models/{id}``; :class:`~orin_console.client.errors.NotFoundError` if unknown."""
        return ModelInfo.from_dict(await self._http.request("GET", f"/models/{_id(model_id)}"))

    @overload
    async def add(self, path: str, *, id: str | None = None, tasks: Iterable[str] | None = None,
                  tier: str | None = None, context: int | None = None,
                  dry_run: Literal[False] = False) -> AddResult: ...

    @overload
    async def add(self, path: str, *, id: str | None = None, tasks: Iterable[str] | None = None,
                  tier: str | None = None, context: int | None = None, dry_run: Literal[True]) -> AddPreview: ...

    async def add(self, path: str, *, id: str | None = None, tasks: Iterable[str] | None = None,
                  tier: str | None = None, context: int | None = None,
                  dry_run: bool = False) -> AddResult | AddPreview:
        """``POST /models/add``: add a GGUF file to the catalog. The server takes files only from
        its configured model folders.

        Args:
            path: the file, as the server sees it (absolute).
            id: the catalog id (default: from the file name).
            tasks: what it is for (``["chat"]``, ``["code"]``...).
            tier: its preferred tier (``ram``, ``swap`` or ``disk``).
            context: its context size, tokens (64 to 131072).
            dry_run: only say what would be added (an :class:`AddPreview`: the entry, the
                file's header, its predicted memory, admission's verdict per tier); nothing is
                written.
        """
        body: dict[str, Any] = {"path": checks.path("path", path)}
        if id is not None:
            body["id"] = checks.model_id("id", id)
        if tasks is not None:
            names = checks.strings("tasks", tasks, one=False)
            if not 1 <= len(names) <= len(checks.TASKS):
                raise ValueError(f"tasks must name 1 to {len(checks.TASKS)} tasks, not {len(names)}")
            for i, task in enumerate(names):
                checks.choice(f"tasks[{i}]", task, checks.TASKS)
            if len(set(names)) != len(names):
                raise ValueError(f"tasks names a task twice: {names!r}")
            body["tasks"] = names
        if tier is not None:
            body["tier"] = _tier(tier, allowed=checks.TIERS)
        if context is not None:
            body["context"] = checks.integer("context", context, *checks.CONTEXT_RANGE)
        if not isinstance(dry_run, bool):
            raise TypeError(f"dry_run must be a bool, not {type(dry_run).__name__}")
        if dry_run:
            body["dry_run"] = True
            return AddPreview.from_dict(await self._http.request("POST", "/models/add", json_body=body))
        return AddResult.from_dict(await self._http.request("POST", "/models/add", json_body=body))

    async def load(self, model_id: str, tier: str | None = None, *, wait: bool = True,
                   timeout: float | None = None) -> Operation:
        """``POST /models/{id}/load`` into ``tier`` (default: its preferred tier). A refusal
        is an :class:`~orin_console.client.errors.AdmissionRefusedError` with the reasons."""
        body = {"tier": _tier(tier)} if tier is not None else {}
        return await self._start(f"/models/{_id(model_id)}/load", body, wait, timeout)

    async def move(self, model_id: str, tier: str, *, wait: bool = True, timeout: float | None = None) -> Operation:
        """``POST /models/{id}/move`` to ``tier`` (the old runner serves until the new one is ready)."""
        target = _tier(tier, required=True, allowed=checks.TIERS)
        return await self._start(f"/models/{_id(model_id)}/move", {"tier": target}, wait, timeout)

    async def unload(self, model_id: str, *, wait: bool = True, timeout: float | None = None) -> Operation:
        """``POST /models/{id}/unload``: stop its runner."""
        return await self._start(f"/models/{_id(model_id)}/unload", {}, wait, timeout)

    async def pin(self, model_id: str, pinned: bool = True) -> ModelInfo:
        """``POST /models/{id}/pin``: the placement plan keeps it where it is (``pinned=False``
        releases it)."""
        if not isinstance(pinned, bool):
            raise TypeError(f"pinned must be a bool, not {type(pinned).__name__}")
        return ModelInfo.from_dict(await self._http.request("POST", f"/models/{_id(model_id)}/pin",
                                                            json_body={"pinned": pinned}))

    async def plan(self, model_id: str, tier: str | None = None) -> PlanVerdict:
        """``GET /models/{id}/plan``: would a load into ``tier`` fit? A dry run, itemised (a
        verdict that it would not fit is an answer, not an error)."""
        params = {"tier": _tier(tier)} if tier is not None else None
        return PlanVerdict.from_dict(await self._http.request("GET", f"/models/{_id(model_id)}/plan", params=params))

    async def stats(self, model_id: str) -> ModelStats:
        """``GET /models/{id}/stats``: its usage figures."""
        return ModelStats.from_dict(await self._http.request("GET", f"/models/{_id(model_id)}/stats"))

    async def operation(self, operation_id: str) -> Operation:
        """``GET /operations/{id}``: a load, move or unload as it stands."""
        if not isinstance(operation_id, str) or not operation_id:
            raise TypeError(f"operation_id must be a non-empty str, not {operation_id!r}"[:200])
        checks.text("operation_id", operation_id, max_chars=80)
        answer = await self._http.request("GET", f"/operations/{quote(operation_id, safe='')}")
        return _operation(answer)

    async def wait(self, operation: Operation, *, timeout: float | None = None) -> Operation:
        """Follow ``operation`` until it ends; the final operation, or
        :class:`~orin_console.client.errors.OperationFailedError`."""
        if not isinstance(operation, Operation):
            raise TypeError(f"operation must be an Operation (from load, move or unload with wait=False, or "
                            f"operation(id)), not {type(operation).__name__}")
        if timeout is not None:
            checks.number("timeout", timeout, 0.0, 1e9, low_open=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = self._poll
        while not operation.done:
            if deadline is not None and time.monotonic() >= deadline:
                url = self._http.url(f"/operations/{operation.id}")
                raise OrinTimeoutError(url, "still running", f"{operation.action} {operation.model_id} (operation "
                                       f"{operation.id}) still running after {timeout} s; it goes on on the server: "
                                       "wait for it again with client.models.wait(operation)")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            operation = await self.operation(operation.id)
        if not operation.ok:
            raise OperationFailedError(operation)
        return operation

    async def _start(self, path: str, body: dict[str, Any], wait: bool, timeout: float | None) -> Operation:
        if not isinstance(wait, bool):
            raise TypeError(f"wait must be a bool, not {type(wait).__name__}")
        if timeout is not None:
            checks.number("timeout", timeout, 0.0, 1e9, low_open=True)
        operation = _operation(await self._http.request("POST", path, json_body=body))
        return await self.wait(operation, timeout=timeout) if wait else operation


def _operation(answer: Any) -> Operation:
    """An operation from ``{"operation": {...}}`` (or the bare object)."""
    if isinstance(answer, Mapping) and isinstance(answer.get("operation"), Mapping):
        return Operation.from_dict(answer["operation"])
    if isinstance(answer, Mapping):
        return Operation.from_dict(answer)
    raise OrinClientError(f"unexpected answer for an operation: {type(answer).__name__}")


class OrinClient:
    """The async client of an Orin Console server.

    ::

        async with OrinClient() as client:
            result = await client.inference.quick_generate("The future of AI is", max_tokens=50)

    Args:
        base_url: the server; default: ``$ORIN_API_URL``, else ``http://127.0.0.1:8000`` (where
            ``orin-console serve`` listens by default).
        token: the bearer token the server was started with (needed off loopback); default:
            ``$ORIN_TOKEN``, else none.
        timeout: seconds (or an ``httpx.Timeout``) for connecting and for each answer; streams
            allow this long between two pieces. The event feed (:meth:`events`) waits forever.
        transport: an httpx transport to use instead of the network (tests:
            ``httpx.MockTransport``).
        headers: extra headers sent with every request.
    """

    def __init__(self, base_url: str | None = None, *, token: str | None = None,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None, headers: Mapping[str, str] | None = None) -> None:
        if base_url is None:
            base_url = os.environ.get(URL_VARIABLE) or DEFAULT_BASE_URL
        if token is None:
            token = os.environ.get(TOKEN_VARIABLE) or None
        _check_base_url(base_url)
        _check_timeout(timeout)
        if headers is not None:
            _check_headers(headers)
        if token is not None and (not isinstance(token, str) or not token):
            raise TypeError("token must be a non-empty str (or None)")
        if token is not None and (not token.isascii() or not token.isprintable() or " " in token):
            raise ValueError("token must be printable ASCII without spaces (the token the server was started with)")
        all_headers = {"User-Agent": f"orin-console-sdk/{sdk_version()}", "Accept": "application/json",
                       **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=all_headers,
                                         timeout=timeout, transport=transport)
        self._http = Http(self._client, self.base_url)
        self.inference = InferenceAPI(self._http)
        """Generation: quick_generate, generate, chat, batch, stream."""
        self.system = SystemAPI(self._http)
        """The server: health, get_system_status."""
        self.models = ModelsAPI(self._http)
        """The catalog and the models' life cycle: list, get, add, load, move, unload, pin, plan, stats."""
        self.placement = PlacementAPI(self._http)
        """The usage-based placement plan: plan, apply."""

    async def __aenter__(self) -> OrinClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close the connections (``async with`` does it)."""
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"OrinClient({self.base_url!r})"

    async def events(self, kinds: str | Iterable[str] | None = None, *,
                     snapshot: bool = False) -> AsyncIterator[ServerEvent]:
        """The core's events as they happen (``GET /events``), until the loop is left or the
        server stops.

        Args:
            kinds: event class names to receive (``"ModelStateChanged"``, ``["LoadProgress",
                "TierUsageChanged"]``...); None: all.
            snapshot: first a ``Snapshot`` event with the whole state.
        """
        params: dict[str, str] = {}
        if kinds is not None:
            if isinstance(kinds, str):
                names = [kinds]
            elif isinstance(kinds, Iterable) and not isinstance(kinds, bytes | bytearray | Mapping):
                names = list(kinds)
            else:
                raise TypeError(f"kinds must be an event class name or a list of them, not {type(kinds).__name__}")
            if not names:
                raise ValueError("kinds names no event; leave it out (None) to receive every kind")
            if not all(isinstance(k, str) and k for k in names):
                raise TypeError("kinds must be event class names (str)")
            for name in names:
                if not name.isidentifier() or not name.isascii():
                    raise ValueError(f"kinds: {name[:40]!r} is not an event class name (e.g. 'ModelStateChanged')")
            params["kinds"] = ",".join(names)
        if not isinstance(snapshot, bool):
            raise TypeError(f"snapshot must be a bool, not {type(snapshot).__name__}")
        if snapshot:
            params["snapshot"] = "1"
        timeout = httpx.Timeout(None, connect=self._client.timeout.connect)
        async with self._http.sse("GET", "/events", params=params or None, timeout=timeout) as source:
            async for name, data in iter_events(source, "/events", self._http):
                if name == "error":  # the server is shutting down (or the feed failed)
                    raise api_error(None, data, fallback="the event feed failed")
                yield ServerEvent.of(name, data if isinstance(data, Mapping) else {"data": data})
