"""The stream of one generation, as the console's caller sees it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from orin_console.core.runner.messages import Chunk, GenerationStats, RunnerError, RunnerInputError, runner_text

StallHandler = Callable[[int, float], BaseException]
"""Called with the generation id and the limit passed; ends the runner and returns the error
to raise should its end not be reported in time."""

STALL_REPORT_S = 15.0
"""How long a stalled stream waits for the runner's end to be reported after the kill."""


class Inbox:
    """Where the runner's reader thread delivers one generation's output.

    The runner holds the inbox, the caller holds the :class:`Generation` around it, so a
    stream the caller drops is noticed (and cancelled) although the runner still delivers.

    The watchdog lives here, on the caller's side: :meth:`get` waits for the next item at
    most until ``first_frame_s`` (before the first frame) or ``frame_gap_s`` (after it) have
    passed since the last frame arrived, counting the runner's ``tick`` frames, which it sends
    while tokens come without text. Past that, ``on_stall`` ends the runner. A slow consumer is
    never blamed: the gap is measured from frame arrivals, not from the consumer's calls.

    Attributes:
        id: the request id on the runner's channel.
        cancel_requested: a cancel was sent for it.
        abandoned: the caller dropped its :class:`Generation` unfinished. The finaliser only
            sets this flag (a finaliser may run at any point, even inside a send); the
            runner sends the cancel from a safe place: its reader thread on the next token,
            or the next :meth:`Runner.generate`.
    """

    def __init__(
        self,
        gen_id: int,
        send_cancel: Callable[[int], None],
        *,
        first_frame_s: float | None = None,
        frame_gap_s: float | None = None,
        on_stall: StallHandler | None = None,
    ) -> None:
        self.id = gen_id
        self.cancel_requested = False
        self.abandoned = False
        self._send_cancel = send_cancel
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._finished = threading.Event()
        self._first_frame_s = first_frame_s
        self._frame_gap_s = frame_gap_s
        self._on_stall = on_stall
        self._last_frame = time.monotonic()  # the request was sent now
        self._framed = False

    def put(self, item: Any) -> None:
        """Deliver a text piece, the final reply (a dict) or an error (called by the reader)."""
        self._last_frame = time.monotonic()
        self._framed = True
        if type(item) is not str:
            self._finished.set()
        self.queue.put(item)

    def touch(self) -> None:
        """A frame with no text (the runner's ``tick``) arrived: the runner is generating."""
        self._last_frame = time.monotonic()
        self._framed = True

    def get(self) -> Any:
        """Return the next item (text, final reply or error); end the runner if it stalls."""
        if self._on_stall is None:
            return self.queue.get()
        while True:
            limit = self._frame_gap_s if self._framed else self._first_frame_s
            if limit is None:
                return self.queue.get()
            left = self._last_frame + limit - time.monotonic()
            try:
                return self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                if left > 0:
                    continue  # a frame came meanwhile: measure again from it
            fallback = self._on_stall(self.id, limit)
            try:
                return self.queue.get(timeout=STALL_REPORT_S)
            except queue.Empty:
                return fallback

    @property
    def finished(self) -> bool:
        """True once the runner has ended this generation (or died)."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the runner has ended this generation; return whether it has."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Send the cancel once, unless the generation has already ended."""
        if self._finished.is_set() or self.cancel_requested:
            return
        self.cancel_requested = True
        self._send_cancel(self.id)


class Generation(Iterator[Chunk]):
    """An iterator of :class:`Chunk` s for one generation on one runner.

    Made by :meth:`Runner.generate`. Text chunks arrive as the runner produces them; the last
    chunk has ``done=True`` and the stats. If the runner dies, iteration raises
    :class:`RunnerDied` at once. Leaving early cancels the generation: use it as a context
    manager or call :meth:`close` (dropping it unfinished cancels it too, a little later).

    Attributes:
        model_id: the runner's model.
        stats: the final stats, once the last chunk has been read.
    """

    def __init__(self, model_id: str, inbox: Inbox) -> None:
        self.model_id = model_id
        self.stats: GenerationStats | None = None
        self._inbox = inbox
        self._consumed = False

    @property
    def id(self) -> int:
        """The request id on the runner's channel."""
        return self._inbox.id

    @property
    def finished(self) -> bool:
        """True once the runner has ended this generation (or died)."""
        return self._inbox.finished

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the runner has ended this generation; return whether it has."""
        return self._inbox.wait(timeout)

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> Chunk:
        if self._consumed:
            raise StopIteration
        item = self._inbox.get()
        if type(item) is str:
            return Chunk(item)
        self._consumed = True
        if isinstance(item, BaseException):
            raise item
        if not item.get("ok"):
            message = f"`{self.model_id}`: {runner_text(item.get('error'))}"
            if item.get("input"):  # the request did not fit the model (the runner is fine)
                raise RunnerInputError(message)
            raise RunnerError(self.model_id, message)
        result = item.get("result") or {}
        self.stats = GenerationStats.from_wire(result["stats"])
        return Chunk(result.get("text", ""), done=True, stats=self.stats)

    def cancel(self) -> None:
        """Ask the runner to stop this generation; it stops within one token.

        The stream then ends normally with ``finish_reason == "cancelled"`` (text already
        on its way may still arrive first).
        """
        self._inbox.cancel()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel if unfinished, wait (bounded) for the runner to end it, and stop iterating."""
        if not self._inbox.finished:
            self._inbox.cancel()
            self._inbox.wait(timeout)
        self._consumed = True

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._inbox.abandoned = True  # no I/O here: see Inbox.abandoned
