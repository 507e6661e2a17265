"""Generations for asyncio front ends (the API): routing, queueing, loading and every token
wait run in a worker thread, so the event loop never blocks on them.

Plain asyncio, no web framework. Each :class:`AsyncEngineStream` owns one worker thread that
routes the request (:meth:`Engine.stream_quick` / :meth:`Engine.stream_chat`), then reads the
:class:`~orin_console.core.engine.streams.EngineStream` and hands each piece to the loop with
``loop.call_soon_threadsafe``. Cancelling the task that awaits it (the client went away),
:meth:`AsyncEngineStream.cancel`, ``aclose()`` or leaving its ``async with`` cancels the
request: a wait for a load or a queue place ends at once (its place is freed), a generation
stops within one token; the worker is then joined.

    async with astream_quick(engine, "Hi", source="api", max_tokens=64) as stream:
        print(stream.model_id, stream.explanation)       # routed before the block starts
        async for piece in stream:
            await send(piece)
    print(stream.result.summary())

    result = await aquick(engine, "Hi", source="api")   # not streamed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from orin_console.core.engine.types import EngineError, Result, Route, check_request_id
from orin_console.core.manager.manager import new_request_id

if TYPE_CHECKING:
    from orin_console.core.engine.inference import Engine
    from orin_console.core.engine.selection import Selection
    from orin_console.core.engine.streams import EngineStream

__all__ = ["AsyncEngineStream", "achat", "aquick", "astream_chat", "astream_quick"]

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S: Final = 5.0
"""How long closing waits for the worker to end after cancelling it (a routing or a
llama.cpp call in hand) before leaving it to end by itself."""

_ROUTED, _PIECE, _DONE, _ERROR, _EXIT = range(5)


class AsyncEngineStream:
    """One generation for asyncio: ``async with`` routes it, ``async for`` yields its text.

    Made by :func:`astream_quick` / :func:`astream_chat`. The properties that describe the
    route (:attr:`route`, :attr:`model_id`, :attr:`explanation`...) are set once
    :meth:`start` (or ``async with``) has returned; :attr:`result` once the text has been
    read to its end.

    Args:
        open_stream: makes the routed :class:`EngineStream` (called in the worker thread).
        request_id: the request's id (already in ``open_stream``'s arguments).
    """

    def __init__(self, open_stream: Callable[[], EngineStream], request_id: str) -> None:
        self.request_id = request_id
        self._open = open_stream
        self._stream: EngineStream | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[tuple[int, Any]] | None = None
        self._exited: asyncio.Future[None] | None = None
        self._finished = False
        self.result: Result | None = None

    # -- the route ------------------------------------------------------------------------

    def _routed(self) -> EngineStream:
        if self._stream is None:
            raise EngineError("the stream is not routed yet: use `async with` or await start() first")
        return self._stream

    @property
    def route(self) -> Route:
        """Where the request goes."""
        return self._routed().route

    @property
    def selection(self) -> Selection:
        """The selection decision."""
        return self._routed().selection

    @property
    def model_id(self) -> str:
        """The model that answers."""
        return self._routed().model_id

    @property
    def explanation(self) -> str:
        """The route in one line."""
        return self._routed().explanation

    @property
    def will_load(self) -> bool:
        """Whether the model must be loaded first."""
        return self._routed().will_load

    # -- the worker -----------------------------------------------------------------------

    async def start(self) -> AsyncEngineStream:
        """Start the worker and wait (without blocking the loop) until the request is routed.

        Raises:
            ParameterError, SelectionError: as :meth:`Engine.stream_quick` raises them.
        """
        if self._thread is not None:
            return self
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._exited = loop.create_future()
        self._thread = threading.Thread(target=self._work, args=(loop,), daemon=True,
                                        name=f"engine-stream-{self.request_id}")
        self._thread.start()
        kind, value = await self._next_item()
        if kind == _ERROR:
            await self._join()
            raise value
        return self

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        queue, exited = self._queue, self._exited
        assert queue is not None and exited is not None

        def post(kind: int, value: Any = None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the loop is closed: nobody reads; stop the generation
                self.cancel()

        stream: EngineStream | None = None
        try:
            stream = self._open()
            with self._lock:
                self._stream = stream
                cancelled = self._cancelled
            if cancelled:
                stream.cancel()
            post(_ROUTED)
            for piece in stream:
                post(_PIECE, piece)
            post(_DONE, stream.result)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which raises it
            post(_ERROR, exc)
        finally:
            if stream is not None:
                stream.close()  # gives back the queue place whatever happened
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, exited)

    async def _next_item(self) -> tuple[int, Any]:
        assert self._queue is not None
        try:
            return await self._queue.get()
        except BaseException:  # the task was cancelled (the client went away)
            self.cancel()
            await self._join()
            raise

    async def _join(self) -> None:
        """Wait (on the loop) for the worker to end, then join it."""
        thread, exited = self._thread, self._exited
        if thread is None or exited is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(exited), JOIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("the worker of request %s is still busy %.0f s after it was cancelled; "
                        "it ends by itself", self.request_id, JOIN_TIMEOUT_S)
            return
        thread.join()  # it has posted its last word: only its return is left

    # -- reading --------------------------------------------------------------------------

    def __aiter__(self) -> AsyncEngineStream:
        return self

    async def __anext__(self) -> str:
        if self._finished:
            raise StopAsyncIteration
        await self.start()
        kind, value = await self._next_item()
        if kind == _PIECE:
            return str(value)
        self._finished = True
        await self._join()
        if kind == _ERROR:
            raise value
        self.result = value
        raise StopAsyncIteration

    async def collect(self) -> Result:
        """Read the rest of the text and return the result."""
        async for _ in self:
            pass
        if self.result is None:  # pragma: no cover - every ending path sets it or raises
            raise EngineError(f"request {self.request_id} ended without a result")
        return self.result

    # -- control --------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the request (thread-safe): a load or queue wait ends at once, a generation
        within one token; the text read so far stays, and the result says ``cancelled``."""
        with self._lock:
            self._cancelled = True
            stream = self._stream
        if stream is not None:
            stream.cancel()

    async def aclose(self) -> None:
        """Cancel whatever still runs and join the worker."""
        if not self._finished:
            self.cancel()
            self._finished = True
        await self._join()

    async def __aenter__(self) -> AsyncEngineStream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _request_id(request_id: str | None) -> str:
    return new_request_id() if request_id is None else check_request_id(request_id)


def astream_quick(engine: Engine, prompt: str, *, request_id: str | None = None,
                  **options: Any) -> AsyncEngineStream:
    """:meth:`Engine.stream_quick` for asyncio: same arguments (``source``, ``mode``,
    ``max_tokens``...); routed by ``async with`` / :meth:`AsyncEngineStream.start`.

    Raises:
        ParameterError: ``request_id`` is malformed (the rest is checked when routed).
    """
    rid = _request_id(request_id)
    return AsyncEngineStream(lambda: engine.stream_quick(prompt, request_id=rid, **options), rid)


def astream_chat(engine: Engine, messages: Sequence[Mapping[str, str]], *,
                 request_id: str | None = None, **options: Any) -> AsyncEngineStream:
    """:meth:`Engine.stream_chat` for asyncio; see :func:`astream_quick`."""
    rid = _request_id(request_id)
    return AsyncEngineStream(lambda: engine.stream_chat(messages, request_id=rid, **options), rid)


async def aquick(engine: Engine, prompt: str, **options: Any) -> Result:
    """:meth:`Engine.quick` for asyncio: cancelling the awaiting task cancels the request."""
    options.setdefault("incremental", False)
    async with astream_quick(engine, prompt, **options) as stream:
        return await stream.collect()


async def achat(engine: Engine, messages: Sequence[Mapping[str, str]], **options: Any) -> Result:
    """:meth:`Engine.chat` for asyncio: cancelling the awaiting task cancels the request."""
    options.setdefault("incremental", False)
    async with astream_chat(engine, messages, **options) as stream:
        return await stream.collect()
