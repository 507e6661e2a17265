"""A generation as its caller sees it, and the events that report it.

:class:`ManagedStream` yields the runner's chunks and gives the model's queue place back
exactly once. :class:`GenerationReport` publishes ``GenerationStarted``, ``TokenGenerated``
and ``GenerationFinished`` (with ``error=`` when it failed or was cancelled before its stats)
with the request id, and records usage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from orin_console.core.cancel import Cancelled, CancelToken
from orin_console.core.events.bus import EventBus
from orin_console.core.events.kinds import GenerationFinished, GenerationStarted, TokenGenerated
from orin_console.core.placement.usage import UsageTracker

if TYPE_CHECKING:
    from orin_console.core.manager.model import ModelRuntime
    from orin_console.core.runner import Chunk, Generation

__all__ = ["GenerationReport", "ManagedStream"]


class GenerationReport:
    """The events and usage record of one generation.

    Args:
        bus: where events go.
        usage: the usage tracker (a finished generation is recorded).
        model_id: the model that answers.
        request_id: the request's id (every event carries it).
        after: called when the generation has ended (measure, publish the model's state).
    """

    def __init__(self, bus: EventBus, usage: UsageTracker, model_id: str, request_id: str,
                 after: Callable[[], None]) -> None:
        self._bus = bus
        self._usage = usage
        self.model_id = model_id
        self.request_id = request_id
        self._after = after
        self._watched = bus.wants(TokenGenerated)  # tokens only for a subscriber that reads them
        self._pieces = 0
        self._finished = False

    def started(self, source: str, route: object | None, explanation: str | None) -> None:
        """Publish ``GenerationStarted``."""
        self._bus.publish(GenerationStarted(request_id=self.request_id, source=source, model_id=self.model_id,
                                            route=route, explanation=explanation))

    def on_chunk(self, chunk: Chunk) -> None:
        """A chunk arrived: a token event (when anyone listens); the stats finish it."""
        if chunk.text:
            self._pieces += 1
            if self._watched:
                self._bus.publish(TokenGenerated(request_id=self.request_id, model_id=self.model_id,
                                                 text=chunk.text))
        if chunk.done and chunk.stats is not None:
            stats = chunk.stats
            self._finished = True
            self._usage.record(self.model_id, tokens=stats.tokens, ttft_s=stats.ttft_s, tok_per_s=stats.tok_per_s)
            self._bus.publish(GenerationFinished(request_id=self.request_id, model_id=self.model_id,
                                                 tokens=stats.tokens, ttft_s=stats.ttft_s,
                                                 tok_per_s=stats.tok_per_s, finish_reason=stats.finish_reason))

    def on_end(self, error: BaseException | None) -> None:
        """The stream ended; one that ended without its stats is finished with the error."""
        if error is not None and not self._finished:
            reason = "cancelled" if isinstance(error, Cancelled) else "error"
            self._bus.publish(GenerationFinished(request_id=self.request_id, model_id=self.model_id,
                                                 tokens=self._pieces, ttft_s=None, tok_per_s=None,
                                                 finish_reason=reason, error=str(error) or reason))
        self._after()


class ManagedStream:
    """The caller's view of one generation: chunks, with the queue place released at the end.

    Iterate it for :class:`~orin_console.core.runner.Chunk` s. Closing it early (or leaving a
    ``with`` block) cancels the generation. The place in the model's queue is released exactly
    once, whether the stream finished, failed, or was closed before it started; ``on_end`` is
    called then with the error (None when it finished with its stats). Cancelling ``cancel``
    stops the generation within one token.
    """

    def __init__(self, model: ModelRuntime, generation: Generation,
                 on_chunk: Callable[[Chunk], None], on_end: Callable[[BaseException | None], None],
                 *, cancel: CancelToken | None = None) -> None:
        self.model_id = model.model_id
        self._model = model
        self._gen = generation
        self._on_chunk = on_chunk
        self._on_end = on_end
        self._released = False
        self._release_lock = threading.Lock()
        self._forget_cancel = cancel.on_cancel(self.cancel) if cancel is not None else None

    def _release(self, error: BaseException | None) -> None:
        with self._release_lock:
            if self._released:
                return
            self._released = True
        if self._forget_cancel is not None:
            self._forget_cancel()
        self._model.queue.release()
        self._on_end(error)

    def __iter__(self) -> ManagedStream:
        return self

    def __next__(self) -> Chunk:
        try:
            chunk = next(self._gen)
        except StopIteration as stop:
            self._release(Cancelled("the generation ended without its stats"))
            raise stop
        except BaseException as exc:
            self._release(exc)
            raise
        self._on_chunk(chunk)
        if chunk.done:
            self._release(None)
        return chunk

    def cancel(self) -> None:
        """Ask the runner to stop this generation (it ends within one token)."""
        self._gen.cancel()

    def close(self) -> None:
        """Cancel if still running and release the queue place."""
        try:
            self._gen.close()
        finally:
            self._release(Cancelled("the stream was closed before it finished"))

    def __enter__(self) -> ManagedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_released", True):
            self.close()
