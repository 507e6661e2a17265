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

:class:`Runner` is put together from three parts: the requests' plumbing and the two threads
are in :mod:`.channel`, the start and its load in :mod:`.loading`, what a loaded runner serves
(generate, cancel, stats, ping) in :mod:`.requests`. This module owns the state and the
process: spawning it, shutting it down, killing it.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orin_console.core.runner.channel import (
    START_MARK,
    Waiter,
    kill_dropped,
    read_loop,
    stderr_loop,
)
from orin_console.core.runner.generation import Inbox
from orin_console.core.runner.loading import RunnerLoading
from orin_console.core.runner.messages import LoadResult, RunnerDied
from orin_console.core.runner.protocol import ChannelClosed, FrameWriter
from orin_console.core.runner.requests import RunnerRequests
from orin_console.core.runner.spares import SpareRunners, launch_child
from orin_console.core.runner.tiers import RunnerConfig

ExitCallback = Callable[["Runner", RunnerDied | None], None]


class Runner(RunnerLoading, RunnerRequests):
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
        self._heard = 0.0  # when the process last sent anything (the load's watchdog reads it)
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

    # -- the process --------------------------------------------------------------------

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
