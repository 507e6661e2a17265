"""The console's side of a runner: spawn it, load, stream, cancel, and notice its death.

A :class:`Runner` owns one child process (:mod:`.child`) at a time and talks to it over a
socketpair (:mod:`.protocol`). Two daemon threads per process:

- the channel reader demultiplexes replies: streamed text goes to the generation in
  progress, replies wake the caller waiting for them, load progress goes to the callback;
  end of stream means the process is gone, and every waiter and stream is failed at once;
- the stderr reader keeps the last lines of the runner's output (llama.cpp's log, a
  ``GGML_ASSERT``, Python tracebacks) in a ring buffer and passes each line to the logger
  ``orin_console.runner.<model id>``. Nothing reaches the terminal.

:meth:`Runner.shutdown` and :meth:`Runner.kill` join both threads. A runner dropped without
either is collected (the waiting threads hold no reference to it) and its finaliser kills the
process; the process also ends with the console, however the console ends (:mod:`.child`).

Callbacks (``progress``, ``on_exit``) run on the channel reader thread: keep them short and
never block in them (``on_exit`` may call :meth:`Runner.start` to restart).

The requests' plumbing and the two threads are in :mod:`.channel`.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from orin_console.core.cancel import CancelToken
from orin_console.core.runner.channel import (
    START_MARK,
    ProgressCallback,
    RunnerChannel,
    Waiter,
    kill_dropped,
    read_loop,
    stderr_loop,
)
from orin_console.core.runner.exits import is_notable
from orin_console.core.runner.generation import Generation, Inbox
from orin_console.core.runner.messages import (
    Chunk,
    GenerateRequest,
    GenerationStats,
    LoadResult,
    RunnerBusy,
    RunnerDied,
    RunnerError,
    RunnerHealth,
    RunnerInputError,
    RunnerLoadError,
    RunnerLoadStopped,
    check_request_text,
    runner_text,
)
from orin_console.core.runner.protocol import MAX_FRAME, ChannelClosed, FrameWriter, encode_json
from orin_console.core.runner.spares import SpareRunners, launch_child
from orin_console.core.runner.tiers import RunnerConfig, child_oom_score_adj
from orin_console.core.units import format_size

ExitCallback = Callable[["Runner", RunnerDied | None], None]


def _console_oom_score_adj() -> int | None:
    try:
        with open("/proc/self/oom_score_adj", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class Runner(RunnerChannel):
    """One model's runner process, seen from the console.

    Args:
        model_id: the model's id (messages, logger name).
        config: how to load it (see :func:`~.tiers.tier_config`).
        on_exit: called once whenever the process has ended, with the :class:`RunnerDied`
            error when it ended on its own, or None when the console ended it (shutdown,
            kill, failed load).
        env: extra environment variables for the runner (on top of the console's).
        launcher: a command prefix for the runner (e.g. ``["taskset", "-c", "2,3"]`` or
            ``["systemd-run", "--scope", "-p", "MemoryMax=3G"]``); it must exec the command
            and keep file descriptors open.
        python: the interpreter that runs the runner (default: this one).
        log_lines: how many recent output lines to keep.
        spares: a pool of warm runner processes to start from (faster loads and moves).
        first_token_timeout_s: the watchdog's limit before a generation's first frame
            (prompt evaluation included); None: no limit.
        token_gap_timeout_s: the watchdog's limit between two frames of a generation; None:
            no limit. A generating runner silent for longer (stopped, swapped out, hung) is
            killed and the stream fails with the reason; ``on_exit`` reports it as a death.
    """

    cancel_grace_s = 2.0
    """How long :meth:`generate` waits for a cancelled generation to end before "busy"."""

    def __init__(
        self,
        model_id: str,
        config: RunnerConfig,
        *,
        on_exit: ExitCallback | None = None,
        env: Mapping[str, str] | None = None,
        launcher: Sequence[str] = (),
        python: str | None = None,
        log_lines: int = 200,
        spares: SpareRunners | None = None,
        first_token_timeout_s: float | None = 120.0,
        token_gap_timeout_s: float | None = 30.0,
    ) -> None:
        for name, value in (("first_token_timeout_s", first_token_timeout_s),
                            ("token_gap_timeout_s", token_gap_timeout_s)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds (or None for no limit), got {value}")
        self.model_id = model_id
        self.config = config
        self._on_exit = on_exit
        self._env = dict(env or {})
        self._launcher = list(launcher)
        self._python = python or sys.executable
        self._spares = spares
        self.first_token_timeout_s = first_token_timeout_s
        self.token_gap_timeout_s = token_gap_timeout_s
        self._log: deque[str] = deque(maxlen=log_lines)
        self._logger = logging.getLogger(f"orin_console.runner.{model_id}")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: FrameWriter | None = None
        self._pending: dict[int, Waiter] = {}
        self._gen: Inbox | None = None
        self._stopping = False
        self._loaded = False
        self._starting = False  # start() is between its spawn and the load's end
        self._start_stopped: str | None = None  # why kill/shutdown/cancel stopped that start
        self._stall_reason: str | None = None  # the watchdog killed the process, and why
        self._exited = threading.Event()
        self._exited.set()
        self._reported = threading.Event()  # on_exit has returned (one per process)
        self._reported.set()
        self._reader: threading.Thread | None = None
        self._err_thread: threading.Thread | None = None
        self._finalizer: weakref.finalize[..., Any] | None = None  # kills a dropped runner's process
        self.load_result: LoadResult | None = None
        """The last successful load's report."""
        self.died: RunnerDied | None = None
        """Why the last process ended on its own; None while running or after a shutdown."""
        self.returncode: int | None = None
        """The last process's exit status."""

    # -- state ----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The current (or last) runner process id; None before the first start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """True while the runner process runs."""
        proc = self._proc
        return proc is not None and not self._exited.is_set() and proc.poll() is None

    @property
    def busy(self) -> bool:
        """True while a generation is in progress."""
        return self._gen is not None

    def recent_log(self) -> list[str]:
        """Return the runner's recent output lines (llama.cpp's log included), oldest first."""
        return list(self._log)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the process has ended and ``on_exit`` has returned; return whether so.

        Called from ``on_exit`` itself, it does not wait for ``on_exit``.
        """
        return self._wait_reported(self._reported, timeout)

    def _wait_reported(self, reported: threading.Event, timeout: float | None) -> bool:
        if threading.current_thread() is self._reader:  # inside on_exit: it is running now
            return self._exited.wait(timeout)
        return reported.wait(timeout)

    # -- lifecycle ----------------------------------------------------------------------

    def start(
        self,
        progress: ProgressCallback | None = None,
        *,
        config: RunnerConfig | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
    ) -> LoadResult:
        """Start the runner process and load the model; block until loaded.

        May be called again after the process ended (death, shutdown): a new one starts.
        :meth:`kill` or :meth:`shutdown` from another thread while this waits stops the load:
        the process is ended and this raises :class:`RunnerLoadStopped` promptly.

        Args:
            progress: called with the load fraction (0..1) as llama.cpp reports it.
            config: replace :attr:`config` first (a tier move).
            timeout: seconds to wait for the load; on expiry the runner is killed.
            cancel: cancelling it stops the load like :meth:`kill` (already cancelled: no
                process starts).

        Returns:
            The runner's :class:`LoadResult`.

        Raises:
            RunnerLoadStopped: stopped by :meth:`kill`, :meth:`shutdown` or ``cancel``.
            RunnerLoadError: the model failed to load (the process is ended).
            RunnerDied: the process died while loading.
            RunnerError: already running or starting, could not start, or the load timed out.
        """
        with self._lock:
            if self._starting:
                raise RunnerError(self.model_id, f"runner for `{self.model_id}` is already starting")
            if not self._exited.is_set():
                raise RunnerError(self.model_id, f"runner for `{self.model_id}` is already running")
            if cancel is not None and cancel.cancelled:
                raise self._stopped_error(f"cancelled: {cancel.reason}")
            if config is not None:
                self.config = config
            self._spawn()
            self._starting = True
            self._start_stopped = None
        remove = None
        if cancel is not None:
            token = cancel
            remove = token.on_cancel(lambda: self._stop_start(f"cancelled: {token.reason}"))
        try:
            return self._load(progress, timeout)
        finally:
            if remove is not None:
                remove()
            with self._lock:
                self._starting = False

    def _load(self, progress: ProgressCallback | None, timeout: float | None) -> LoadResult:
        """The load half of :meth:`start`: the process is up, :attr:`_starting` is set."""
        wire = self.config.to_wire()
        wire["oom_score_adj"] = child_oom_score_adj(self.config.oom_score_adj, _console_oom_score_adj())
        try:
            reply = self._call("load", {"config": wire, "model_id": self.model_id},
                               timeout=timeout, progress=progress)
        except RunnerDied:
            self._raise_if_stopped(self._end_start())
            raise
        except RunnerError:
            why = self._end_start()  # from here on, only this start ends its process
            self.kill()
            self._raise_if_stopped(why)
            raise
        if not reply.get("ok"):
            why = self._end_start()
            self.shutdown()
            self._raise_if_stopped(why)  # a shutdown asked during the load ends it with an error
            notable = [line for line in self._lines_since_start() if is_notable(line)]
            raise RunnerLoadError(
                self.model_id, f"`{self.model_id}` failed to load: {runner_text(reply.get('error'))}", notable[-4:]
            )
        result = LoadResult.from_wire(reply["result"])
        with self._lock:  # atomic with kill()'s look at _starting: loaded, or stopped
            stopped = self._start_stopped is not None
            if not stopped:
                self.load_result = result
                self._loaded = True
                self._starting = False
        if stopped:
            why = self._end_start()
            self.kill()  # a stop that raced with the end of the load
            self._raise_if_stopped(why)
        return result

    def _stopped_error(self, why: str) -> RunnerLoadStopped:
        return RunnerLoadStopped(
            self.model_id, f"the load of `{self.model_id}` was stopped ({why}) before it finished; "
            "no runner process is left"
        )

    def _end_start(self) -> str | None:
        """Mark the start as over (a kill now is the start's own); why it was stopped, if so."""
        with self._lock:
            self._starting = False
            return self._start_stopped

    def _raise_if_stopped(self, why: str | None) -> None:
        if why is not None:
            raise self._stopped_error(why)

    def _stop_start(self, why: str) -> None:
        """Stop a start in progress (a ``cancel`` token's callback)."""
        with self._lock:
            if self._starting and self._start_stopped is None:
                self._start_stopped = why
        self.kill()

    def _spawn(self) -> None:
        """Start a process; the caller holds the lock and has checked none is running."""
        launched = None
        if self._spares is not None and self._spares.matches(self._python, self._launcher, self._env):
            launched = self._spares.take()
        if launched is None:
            launched = launch_child(self._python, self._launcher, self._env, self.model_id)
        proc, parent_sock = launched
        self._proc = proc
        self._writer = FrameWriter(parent_sock)
        self._pending = {}
        self._gen = None
        self._stopping = False
        self._loaded = False
        self._stall_reason = None
        self.died = None
        self.returncode = None
        self._exited.clear()
        self._reported = reported = threading.Event()
        self._log.append(f"{START_MARK} pid {proc.pid} ---")
        assert proc.stdout is not None
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, kill_dropped, proc, self.model_id)
        self._err_thread = err_thread = threading.Thread(
            target=stderr_loop, args=(proc.stdout, self._log, self._logger),
            name=f"runner-{self.model_id}-stderr", daemon=True,
        )
        err_thread.start()
        self._reader = threading.Thread(
            target=read_loop,
            args=(weakref.ref(self), proc, parent_sock, err_thread, reported, self._logger),
            name=f"runner-{self.model_id}-reader",
            daemon=True,
        )
        self._reader.start()

    def _join_threads(self, reader: threading.Thread | None, err_thread: threading.Thread | None) -> None:
        """Join the ended process's two threads (not the calling one: ``on_exit`` may stop)."""
        current = threading.current_thread()
        for thread in (reader, err_thread):
            if thread is not None and thread is not current:
                thread.join(10.0)

    def shutdown(self, timeout: float = 5.0) -> int | None:
        """Ask the runner to exit; kill it if it has not within ``timeout`` seconds.

        In-flight calls and streams fail with a "shut down" :class:`RunnerError`.

        Returns:
            The exit status, or None if it was never started.
        """
        with self._lock:
            proc, writer, reported = self._proc, self._writer, self._reported
            threads = self._reader, self._err_thread
            if proc is None:
                return None
            self._stopping = True
            if self._starting and self._start_stopped is None:
                self._start_stopped = "the runner was shut down"
        if not self._exited.is_set():
            try:
                assert writer is not None
                writer.send({"op": "shutdown", "id": next(self._ids)})
            except ChannelClosed:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._wait_reported(reported, 10.0):  # else on_exit is stuck: do not wait twice
            self._join_threads(*threads)
        return proc.returncode

    def kill(self) -> int | None:
        """End the runner at once with SIGKILL (counted as asked, not as a death).

        Safe from any thread; during :meth:`start` it stops the load (``start`` raises
        :class:`RunnerLoadStopped`). Returns the exit status, or None if never started.
        """
        with self._lock:
            proc, reported = self._proc, self._reported
            threads = self._reader, self._err_thread
            if proc is None:
                return None
            self._stopping = True
            if self._starting and self._start_stopped is None:
                self._start_stopped = "the runner was killed"
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if self._wait_reported(reported, 10.0):  # else on_exit is stuck: do not wait twice
            self._join_threads(*threads)
        return proc.returncode

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- requests -------------------------------------------------------------------

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
