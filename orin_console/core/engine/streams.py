"""The streams the engine hands out: one request (:class:`EngineStream`) or a batch
(:class:`BatchStream`). Made by :class:`~orin_console.core.engine.inference.Engine`; not built directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from orin_console.core.cancel import Cancelled, CancelToken
from orin_console.core.engine.selection import Selection
from orin_console.core.engine.types import BatchFailure, EngineError, GenerationParams, Result, Route
from orin_console.core.errors import OrinError
from orin_console.core.manager.types import ModelState, ModelUnavailable
from orin_console.core.runner import GenerateRequest, GenerationStats

if TYPE_CHECKING:
    from orin_console.core.engine.inference import Engine
    from orin_console.core.manager.model import ManagedStream

T = TypeVar("T")


def wait_future(future: Future[T], cancel: CancelToken, timeout: float | None, what: str) -> T:
    """``future.result(timeout)``, except that cancelling ``cancel`` ends the wait at once
    (the work behind the future goes on: a load may be shared with other requests).

    Raises:
        Cancelled: ``cancel`` was cancelled first.
        ModelUnavailable: the work was cancelled by someone else (a load stopped by an unload).
        EngineError: ``timeout`` passed first (``what`` names the wait).
    """
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    remove = cancel.on_cancel(done.set)
    try:
        done.wait(timeout)
    finally:
        remove()
    if not future.done():
        cancel.raise_if_cancelled()
        raise EngineError(f"{what} did not finish within {timeout:.0f} s; try again, or raise "
                          "the engine's load_timeout")
    try:
        return future.result()
    except Cancelled as exc:
        if cancel.cancelled:
            raise
        # the work was stopped by someone else (an unload won over the load): not this
        # request's cancellation, which front ends report as "the client went away"
        raise ModelUnavailable(f"{what} was stopped ({exc}); ask again to restart it") from None


class EngineStream(Iterator[str]):
    """One routed request: iterate for text pieces; :attr:`result` is set at the end.

    The model is chosen when the stream is made (:attr:`selection`, :attr:`will_load`); a
    load (if needed) and the generation start on the first iteration, which may wait in the
    model's queue. :meth:`cancel` (from any thread) ends a wait for a load or a queue place at
    once and stops a generation within one token; the stream then ends with
    ``finish_reason == "cancelled"``. Closing the stream (or leaving its ``with`` block)
    cancels whatever is still running. A ``KeyboardInterrupt`` while waiting for a token
    cancels the generation too; iterating on collects the rest and the result.

    Attributes:
        request_id: the request's id; the manager's events for it carry it.
        source: who asked (``tui``, ``api``, ``cli``, ``core``).
        route: where the request goes (updated if a failed load fell back to another model).
    """

    def __init__(self, engine: Engine, route: Route, params: GenerationParams, *,
                 prompt: str | None, messages: tuple[dict[str, str], ...] | None,
                 as_chat: bool | None, stream: bool, started: float, request_id: str,
                 source: str) -> None:
        self._engine = engine
        self.request_id = request_id
        self.source = source
        self.route = route
        self._params = params
        self._prompt = prompt
        self._messages = messages
        self._as_chat = as_chat
        self._stream = stream
        self._started = started
        self._lock = threading.Lock()
        self._cancel = CancelToken()
        self._managed: ManagedStream | None = None
        self._begun = self._finished = False
        self._pieces: list[str] = []
        self._load_s: float | None = None
        self._format = "raw"
        self._notes: list[str] = list(route.notes)
        self.result: Result | None = None
        self._check_context()

    @property
    def selection(self) -> Selection:
        """The selection decision (updated if a failed load fell back to another model)."""
        return self.route.selection

    @property
    def model_id(self) -> str:
        """The model that answers."""
        return self.route.selection.model_id

    @property
    def explanation(self) -> str:
        """The route in one line: the selection's explanation and the notes so far."""
        return "; ".join((self.selection.explanation, *self._notes))

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.cancelled

    @property
    def task(self) -> str:
        """The detected task."""
        return self.route.selection.task

    @property
    def will_load(self) -> bool:
        """Whether the model must be loaded first (into :attr:`load_tier`)."""
        return self.route.load_tier is not None

    @property
    def load_tier(self) -> str | None:
        """The tier the model will be loaded into, when it must be."""
        return self.route.load_tier

    def _check_context(self) -> None:
        entry = self._engine.manager.catalog.get(self.model_id)
        self._params.check_context(self.model_id, entry.context)

    # -- iteration ------------------------------------------------------------------------

    def __iter__(self) -> EngineStream:
        return self

    def __next__(self) -> str:
        if self._finished:
            raise StopIteration
        if not self._begun:
            self._begun = True
            try:
                self._start()
            except Cancelled:
                if not self._cancel.cancelled:  # someone else's cancellation: an error here
                    self._finished = True
                    raise
            except BaseException:
                self._finished = True
                raise
        managed = self._managed
        if managed is None:  # cancelled before the generation started
            self._finish(None, "")
            raise StopIteration
        try:
            chunk = next(managed)
        except StopIteration:
            self._finished = True
            raise EngineError(f"the generation on `{self.model_id}` ended without its final report") from None
        except KeyboardInterrupt:
            managed.cancel()  # the caller may read on: the stream ends "cancelled" within a token
            raise
        except BaseException:
            self._finished = True
            raise
        if chunk.done:
            self._finish(chunk.stats, chunk.text)
            if chunk.text:
                return chunk.text
            raise StopIteration
        self._pieces.append(chunk.text)
        return chunk.text

    def _start(self) -> None:
        engine = self._engine
        manager = engine.manager
        if self._cancel.cancelled:
            return
        if self.route.load_tier is not None:
            began = time.perf_counter()
            try:
                self._load(self.route.load_tier)
                self._load_s = time.perf_counter() - began
            except OrinError as exc:
                alternative = engine.fallback(self.route, exc)
                if alternative is None:
                    raise
                self.route = alternative
                self._notes = list(alternative.notes)
                self._check_context()
        else:
            self._wait_if_loading()
        request = self._request()
        self._cancel.raise_if_cancelled()
        managed = manager.generate(self.model_id, request, load_timeout=engine.load_timeout,
                                   request_id=self.request_id, source=self.source, route=self.route,
                                   explanation=self.explanation, cancel=self._cancel)
        with self._lock:
            self._managed = managed
        if self._cancel.cancelled:
            managed.cancel()

    def _load(self, tier: str) -> None:
        engine = self._engine
        wait_future(engine.manager.load(self.model_id, tier), self._cancel, engine.load_timeout,
                    f"loading `{self.model_id}`")

    def _wait_if_loading(self) -> None:
        status = self._engine.manager.model_status(self.model_id)
        if status.state == ModelState.LOADING and status.target_tier is not None:
            self._load(status.target_tier)  # joins the load in progress

    def _request(self) -> GenerateRequest:
        p = self._params
        common: dict[str, Any] = dict(max_tokens=p.max_tokens, temperature=p.temperature,
                                      top_p=p.top_p, stop=p.stop, seed=p.seed, stream=self._stream)
        loaded = self._engine.manager.load_result(self.model_id)
        has_template = bool(loaded and loaded.has_chat_template)
        use_chat = self._as_chat
        if use_chat is None:
            use_chat = has_template and self.task != "completion"
        if not use_chat:
            self._format = "raw"
            return GenerateRequest(prompt=self._prompt, **common)
        self._format = "chat"
        if loaded is not None and not has_template:
            self._notes.append("the model's GGUF has no chat template: llama-cpp-python's default "
                               "chat format was used")
        messages = self._messages or ({"role": "user", "content": self._prompt or ""},)
        return GenerateRequest(messages=messages, **common)

    def _finish(self, stats: GenerationStats | None, final_text: str) -> None:
        self._finished = True
        if final_text:
            self._pieces.append(final_text)
        if stats is None:
            stats = GenerationStats(tokens=0, prompt_tokens=0, ttft_s=None, tok_per_s=None,
                                    total_s=0.0, finish_reason="cancelled")
        load_tier = self.route.load_tier if self._load_s is not None else None
        self.result = Result(
            text="".join(self._pieces), model_id=self.model_id, task=self.task,
            selection=self.selection, ttft_s=stats.ttft_s, tok_per_s=stats.tok_per_s,
            prompt_tokens=stats.prompt_tokens, tokens=stats.tokens,
            finish_reason=stats.finish_reason, total_s=stats.total_s,
            elapsed_s=time.perf_counter() - self._started, load_s=self._load_s,
            loaded_tier=load_tier, prompt_format=self._format, notes=tuple(self._notes),
            request_id=self.request_id,
        )

    # -- control --------------------------------------------------------------------------

    def cancel(self) -> None:
        """End a wait for a load or a queue place at once, or stop the generation within one
        token. Thread-safe; cancelling twice is harmless."""
        self._cancel.cancel("the request was cancelled")
        with self._lock:
            managed = self._managed
        if managed is not None:
            managed.cancel()

    def collect(self) -> Result:
        """Read the rest of the stream and return the result."""
        for _ in self:
            pass
        if self.result is None:  # pragma: no cover - every ending path sets it or raises
            raise EngineError("the generation ended without a result")
        return self.result

    def close(self) -> None:
        """Cancel whatever is still running and give back the model's queue place."""
        if not self._finished:
            self.cancel()
        self._finished = True
        if self._managed is not None:
            self._managed.close()

    def __enter__(self) -> EngineStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class BatchPiece:
    """One step of a streamed batch: a text piece of member ``index``, or its end.

    Attributes:
        index: the member's position in the batch.
        text: a piece of its text (empty at its end).
        result: set on the member's last piece when it succeeded.
        failure: set when it failed (then this is its last piece).
    """

    index: int
    text: str = ""
    result: Result | None = None
    failure: BatchFailure | None = None

    @property
    def done(self) -> bool:
        """Whether this member has ended."""
        return self.result is not None or self.failure is not None


class BatchStream(Iterator[BatchPiece]):
    """The members of a batch one after another; :attr:`results` fills in order.

    :meth:`cancel` stops the member in progress and records the members not yet started as
    cancelled failures, so ``results`` always ends with one entry per member.

    Attributes:
        request_id: the batch's id; member ``i`` has the request id ``"{request_id}/{i}"``.
    """

    def __init__(self, engine: Engine, items: list[Any], options: dict[str, Any], stream: bool,
                 request_id: str) -> None:
        self._engine = engine
        self.request_id = request_id
        self._items = items
        self._options = options
        self._stream = stream
        self._index = 0
        self._current: EngineStream | None = None
        self._cancelled = False
        self.results: list[Result | BatchFailure] = []

    def __iter__(self) -> BatchStream:
        return self

    def _open(self, item: Any) -> EngineStream:
        engine = self._engine
        rid = f"{self.request_id}/{self._index}"
        if isinstance(item, str):
            return engine.stream_quick(item, incremental=self._stream, request_id=rid, **self._options)
        return engine.stream_chat(item, incremental=self._stream, request_id=rid, **self._options)

    def _fail(self, exc: BaseException, model_id: str | None) -> BatchPiece:
        failure = BatchFailure(self._index, str(exc), type(exc).__name__, model_id)
        self.results.append(failure)
        self._index += 1
        self._current = None
        return BatchPiece(failure.index, failure=failure)

    def __next__(self) -> BatchPiece:
        if self._index >= len(self._items):
            raise StopIteration
        if self._cancelled and self._current is None:
            return self._fail(EngineError("cancelled before it started"), None)
        current = self._current
        if current is None:
            try:
                current = self._current = self._open(self._items[self._index])
            except OrinError as exc:
                return self._fail(exc, None)
        try:
            text = next(current)
        except StopIteration:
            result = current.result
            assert result is not None
            self.results.append(result)
            self._index += 1
            self._current = None
            return BatchPiece(self._index - 1, result=result)
        except OrinError as exc:
            current.close()
            return self._fail(exc, current.model_id)
        return BatchPiece(self._index, text=text)

    def cancel(self) -> None:
        """Stop the member in progress; the rest are recorded as cancelled."""
        self._cancelled = True
        if self._current is not None:
            self._current.cancel()

    def close(self) -> None:
        """Cancel and end the member in progress."""
        self.cancel()
        if self._current is not None:
            self._current.close()
