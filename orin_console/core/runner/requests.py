"""The requests a loaded runner serves: generate (streamed or whole), cancel, stats, ping.

:class:`RunnerRequests` is the half of :class:`~.client.Runner` that uses a runner once it is
loaded; :mod:`.client` starts, loads and stops it. One generation at a time: a second is
refused with :class:`RunnerBusy`, unless the one in progress was cancelled or abandoned (then
it gets :attr:`RunnerRequests.cancel_grace_s` to end). The watchdog (:meth:`_stalled`) kills a
runner that stops sending frames mid-generation; its death is reported like any other.

The state is :class:`~.client.Runner`'s (declared on :class:`~.channel.RunnerChannel`).
"""

from __future__ import annotations

import time
from dataclasses import replace

from orin_console.core.runner.channel import RunnerChannel, Waiter
from orin_console.core.runner.generation import Generation, Inbox
from orin_console.core.runner.messages import (
    Chunk,
    GenerateRequest,
    GenerationStats,
    RunnerBusy,
    RunnerDied,
    RunnerError,
    RunnerHealth,
    RunnerInputError,
    check_request_text,
)
from orin_console.core.runner.protocol import MAX_FRAME, ChannelClosed, encode_json
from orin_console.core.units import format_size


class RunnerRequests(RunnerChannel):
    """Generation and the small requests of :class:`~.client.Runner` (a mixin)."""

    cancel_grace_s = 2.0
    """How long :meth:`generate` waits for a cancelled generation to end before "busy"."""

    first_token_timeout_s: float | None
    token_gap_timeout_s: float | None

    def generate(self, request: GenerateRequest) -> Generation:
        """Start a generation; return the stream of its chunks.

        Iterate the result for :class:`Chunk` s; the last has ``done=True`` and the stats.
        Closing the stream early (or dropping it) cancels the generation.

        Raises:
            RunnerInputError: the request's text cannot be sent (nothing was sent; the
                runner stays usable).
            RunnerBusy: another generation is in progress.
            RunnerDied: the runner died (the error carries the reason); also raised by the
                stream's iteration if it dies mid-stream.
            RunnerError: not started or not loaded.
        """
        with self._lock:
            self._check_ready()
            current = self._gen
        if current is not None and (current.cancel_requested or current.abandoned):
            current.cancel()
            current.wait(self.cancel_grace_s)
        gen_id = next(self._ids)
        frame = self._generate_frame(gen_id, request)  # before the runner is marked busy
        with self._lock:
            self._check_ready()
            if self._gen is not None:
                raise RunnerBusy(
                    self.model_id, f"`{self.model_id}` is already generating (one generation at a time)"
                )
            inbox = Inbox(gen_id, self._send_cancel, first_frame_s=self.first_token_timeout_s,
                          frame_gap_s=self.token_gap_timeout_s, on_stall=self._stalled)
            self._gen = inbox
            writer = self._writer
        try:
            assert writer is not None
            writer.send_bytes(frame)
        except ChannelClosed:
            pass  # the reader thread reports the death to the stream
        except BaseException:
            # Not sent (or not whole): the runner must not stay busy with a generation it
            # never started. A partial frame breaks the channel, which the reader reports.
            with self._lock:
                if self._gen is inbox:
                    self._gen = None
            raise
        return Generation(self.model_id, inbox)

    def _generate_frame(self, gen_id: int, request: GenerateRequest) -> bytes:
        """Encode the ``generate`` command; refuse text that cannot be sent whole."""
        try:
            gap = self.token_gap_timeout_s
            tick_s = min(1.0, gap / 4) if gap is not None else 0.0  # frames while no text comes
            frame = encode_json({"op": "generate", "id": gen_id, "request": request.to_wire(), "tick_s": tick_s})
        except (UnicodeEncodeError, TypeError, ValueError) as exc:
            # Only a request changed after it was made gets here: name the bad text.
            check_request_text(request.prompt, request.messages, request.stop)
            raise RunnerInputError(f"`{self.model_id}`: the request cannot be sent to the runner: {exc}") from None
        if len(frame) > MAX_FRAME:
            size = check_request_text(request.prompt, request.messages, request.stop)
            raise RunnerInputError(
                f"`{self.model_id}`: the request is too big for the runner's channel: "
                f"{format_size(len(frame), unit='MB')} encoded ({format_size(size, unit='MB')} of text), "
                f"the limit is {format_size(MAX_FRAME, unit='MB')}; send a shorter prompt"
            )
        return frame

    def _stalled(self, gen_id: int, limit: float) -> RunnerDied:
        """The watchdog: generation ``gen_id`` got no frame for ``limit`` seconds; kill."""
        reason = (f"stopped answering for {limit:g} s (stopped? swapped out?); it was killed, "
                  "ask again to restart it")
        with self._lock:
            proc, gen = self._proc, self._gen
            current = gen is not None and gen.id == gen_id and not self._exited.is_set()
            if current and self._stall_reason is None:
                self._stall_reason = reason
        if current and proc is not None:
            self._logger.error("runner for `%s` %s", self.model_id, reason)
            proc.kill()  # the reader reports the end to the stream and to on_exit
        return RunnerDied(self.model_id, reason, None, "SIGKILL")

    def complete(self, request: GenerateRequest) -> Chunk:
        """Generate without streaming; return the final chunk (whole text and stats)."""
        with self.generate(replace(request, stream=False)) as gen:
            for chunk in gen:
                if chunk.done:
                    return chunk
        raise RunnerError(self.model_id, f"`{self.model_id}`: the generation ended without a result")

    def cancel(self) -> bool:
        """Cancel the generation in progress; return whether there was one."""
        gen = self._gen
        if gen is None:
            return False
        gen.cancel()
        return True

    def stats(self, timeout: float = 5.0) -> GenerationStats | None:
        """Return the runner's stats of its last finished generation (None before any)."""
        reply = self._checked(self._call("stats", {}, timeout=timeout))
        wire = reply.get("stats")
        return GenerationStats.from_wire(wire) if wire else None

    def ping(self, timeout: float = 5.0) -> RunnerHealth:
        """Check the runner answers; served at once, even mid-generation or mid-load.

        Raises:
            RunnerDied: it is dead.
            RunnerError: no answer within ``timeout`` seconds.
        """
        started = time.perf_counter()
        result = self._checked(self._call("ping", {}, timeout=timeout))
        return RunnerHealth(
            rtt_s=time.perf_counter() - started,
            pid=int(result["pid"]),
            state=str(result["state"]),
            tokens=int(result.get("tokens", 0)),
        )

    def test_hook(self, op: str, code: int = 1, timeout: float = 5.0) -> None:
        """Send a test-only command (``"abort"`` or ``"exit"``) to the runner.

        The runner obeys only with ``ORIN_RUNNER_TEST_HOOKS=1`` in its environment (pass it
        in ``env``); then it dies and this returns once it is gone (the death is reported
        like any other). Otherwise the refusal is raised as a :class:`RunnerError`.
        """
        with self._lock:
            self._check_running()
            rid = next(self._ids)
            waiter = Waiter(None)
            self._pending[rid] = waiter
            writer = self._writer
        try:
            assert writer is not None
            writer.send({"op": op, "id": rid, "code": code})
        except ChannelClosed:
            pass
        waiter.event.wait(timeout)
        if waiter.reply is not None:
            self._checked(waiter.reply)
