"""An attached console's chat (answers streamed as SSE through the SDK) and the SDK's errors in
the console's words.

:class:`RemoteStream` looks like the core's ``EngineStream`` to the chat pane: made in the
pane's worker thread, it opens ``POST /generate`` with ``"stream": true`` on the back end's
loop and waits for the ``routed`` event (so ``model_id`` and ``will_load`` are known, as in
process); iterating yields the pieces; ``cancel()`` closes the connection, which makes the
server cancel the generation within a token. A stopped answer has no ``done`` event: its
result is made here from what arrived (``finish_reason`` ``cancelled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from orin_console.client import OrinClient
from orin_console.client.errors import (
    AdmissionRefusedError,
    OperationFailedError,
    OrinAPIError,
    OrinClientError,
    OrinConnectionError,
)
from orin_console.core.engine.selection import SelectionError
from orin_console.core.engine.types import Result
from orin_console.core.errors import OrinError
from orin_console.core.files import DiskFull
from orin_console.core.manager.types import ModelBusy
from orin_console.core.memory.admission import AdmissionRefused, Decision, Suggestion
from orin_console.core.runner.messages import RunnerError
from orin_console.core.text import sanitize
from orin_console.tui.backend import convert

__all__ = ["RemoteChat", "RemoteError", "RemoteStream", "core_error"]


class RemoteError(OrinError):
    """The server refused, failed, or could not be reached (the message says which and the fix)."""


class RemoteInvalid(RemoteError, ValueError):
    """The server found the request invalid (a parameter, the prompt)."""


def core_error(exc: BaseException) -> BaseException:
    """The SDK's error as the core's own (so the console shows it as in process): an admission
    refusal with its reasons, a busy model, a failed runner...; anything else unchanged."""
    if isinstance(exc, OrinConnectionError):
        return RemoteError(f"the server at {exc.url} does not answer ({sanitize(exc.reason)}); the console "
                           "reconnects by itself: try again once the banner is gone")
    if not isinstance(exc, OrinAPIError):
        return exc
    kind, message = exc.type, sanitize(exc.message)
    if isinstance(exc, AdmissionRefusedError | OperationFailedError) and (
            kind == "AdmissionRefused" or getattr(exc, "reasons", None)):
        reasons = tuple(sanitize(r) for r in exc.reasons)
        suggestions = tuple(Suggestion("", "", "", None, True, sanitize(s)) for s in exc.suggestions)
        summary = message.split("; ")[0] if reasons else message
        return AdmissionRefused(Decision(ok=False, model_id="", tier="", action="load", reasons=reasons,
                                         suggestions=suggestions, summary=summary))
    if kind == "ModelBusy":
        return ModelBusy(message)
    if kind == "DiskFull" or exc.status == 507:  # the server's disk: its message names the folder and the fix
        return DiskFull(message)
    if kind in ("SelectionError", "UnknownModel"):
        return SelectionError(message)
    if kind.startswith("Runner") and kind != "RunnerInputError":
        return RunnerError("", message)
    if kind in ("ValidationError", "ParameterError", "RunnerInputError", "EngineError"):
        return RemoteInvalid(message)
    if kind in ("Unauthorized", "AuthenticationError") or exc.status == 401:
        return RemoteError(f"{message} (give the server's token: --token or ORIN_TOKEN)")
    return RemoteError(message)


_END = object()


class RemoteStream:
    """One answer streamed from the server (see the module docstring).

    Args:
        submit: runs a coroutine on the back end's loop (returns its future).
        client: the SDK client (used on that loop only).
        body: ``client.inference.stream`` keyword arguments.
        tier_of: the tier a model would be loaded into (for the "loading … into …" note).
    """

    def __init__(self, submit: Callable[[Coroutine[Any, Any, Any]], Future[Any]], client: OrinClient,
                 body: dict[str, Any], tier_of: Callable[[str], str | None], mode: str) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._routed = threading.Event()
        self._cancelled = threading.Event()
        self._mode = mode
        self._pieces: list[str] = []
        self._started = time.monotonic()
        self._first: float | None = None
        self.model_id = ""
        self.will_load = False
        self.load_tier: str | None = None
        self.request_id = str(body.get("request_id") or "")
        self.result: Result | None = None
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future = submit(self._pump(client, body))
        while not self._routed.wait(0.05):  # the worker thread waits; the UI loop never does
            if self._future.done():
                break
        if self._error is not None and not self.model_id:
            raise self._error
        self.load_tier = tier_of(self.model_id) if self.will_load else None

    async def _pump(self, client: OrinClient, body: dict[str, Any]) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        text_stream = client.inference.stream(**body)
        watcher = asyncio.ensure_future(self._watch_routed(text_stream))
        try:
            async for piece in text_stream:
                if self._first is None:
                    self._first = time.monotonic()
                self._queue.put(piece)
            if text_stream.result is not None:
                self.result = convert.result(text_stream.result.raw, model_id=self.model_id, mode=self._mode)
        except asyncio.CancelledError:
            pass  # cancel(): the connection closes, the server stops the generation
        except (OrinClientError, OrinError) as exc:
            self._error = core_error(exc)
        finally:
            watcher.cancel()
            self._note_routed(text_stream)
            with contextlib.suppress(BaseException):
                await text_stream.aclose()
            self._routed.set()
            self._queue.put(_END)

    def _note_routed(self, text_stream: Any) -> None:
        routed = text_stream.routed
        if routed is not None and not self.model_id:
            self.model_id = sanitize(routed.model_id)
            self.will_load = routed.will_load
        if routed is not None:
            self._routed.set()

    async def _watch_routed(self, text_stream: Any) -> None:
        """The SDK keeps the ``routed`` event as an attribute: notice it before the first token
        (a model that loads first may take seconds to write one)."""
        while text_stream.routed is None:
            await asyncio.sleep(0.01)
        self._note_routed(text_stream)

    def __iter__(self) -> Iterator[str]:
        while True:
            piece = self._queue.get()
            if piece is _END:
                break
            self._pieces.append(piece)
            yield piece
        if self._error is not None and not self._cancelled.is_set():
            raise self._error
        if self.result is None:
            self.result = self._stopped_result()

    def _stopped_result(self) -> Result:
        text = "".join(self._pieces)
        now = time.monotonic()
        ttft = None if self._first is None else self._first - self._started
        speed = None
        if self._first is not None and len(self._pieces) > 1 and now > self._first:
            speed = (len(self._pieces) - 1) / (now - self._first)
        return convert.result({"text": text, "model_id": self.model_id, "tokens": len(self._pieces),
                               "finish_reason": "cancelled", "ttft_s": ttft, "tok_per_s": speed,
                               "elapsed_s": now - self._started, "request_id": self.request_id},
                              mode=self._mode)

    def cancel(self) -> None:
        """Stop the answer (thread-safe): the connection is closed, the server cancels it."""
        self._cancelled.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs any more
                loop.call_soon_threadsafe(task.cancel)

    def __enter__(self) -> RemoteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._future.done():
            self.cancel()


class RemoteChat:
    """The chat pane's engine for an attached console.

    Args:
        submit: runs a coroutine on the back end's loop.
        client: the SDK client.
        catalog_ids: the models the console knows (for ctrl+n).
        tier_of: a model's catalog tier.
        own_requests: request ids this console sends (the log does not show them as another
            front end's).
    """

    def __init__(self, submit: Callable[[Coroutine[Any, Any, Any]], Future[Any]], client: OrinClient,
                 catalog_ids: Callable[[], Sequence[str]], tier_of: Callable[[str], str | None],
                 own_requests: set[str]) -> None:
        self._submit = submit
        self._client = client
        self._catalog_ids = catalog_ids
        self._tier_of = tier_of
        self._own = own_requests

    def stream_quick(self, prompt: str, *, mode: Any = "auto", model: str | None = None,
                     preferred: str | None = None, params: Any = None, source: str = "tui") -> RemoteStream:
        request_id = f"{source}-{secrets.token_hex(6)}"
        self._own.add(request_id)
        body: dict[str, Any] = {"prompt": prompt, "mode": str(mode), "request_id": request_id}
        chosen = model if mode == "manual" else preferred if mode == "hybrid" else None
        if chosen is not None:
            body["model"] = chosen
        if params is not None:
            for name in ("max_tokens", "temperature", "top_p", "seed"):
                body[name] = getattr(params, name)
            if params.stop:
                body["stop"] = list(params.stop)
        return RemoteStream(self._submit, self._client, body, self._tier_of, str(mode))

    def catalog_ids(self) -> Sequence[str]:
        return self._catalog_ids()
