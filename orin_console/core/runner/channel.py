"""The plumbing under :class:`~.client.Runner`: calls over the channel and its reader threads.

:class:`RunnerChannel` is the half of :class:`~.client.Runner` that moves messages. It sends
a request and waits for the reply (a :class:`Waiter` per request). This module also holds the
bodies of the two daemon threads each runner process has (see :mod:`.client` for what they
promise): :func:`stderr_loop`, which keeps the runner's output in the ring buffer and passes it
to the logger, and :func:`read_loop`, which routes every frame and, at the end of the stream,
accounts for the process's exit, fails every waiter and stream, and calls ``on_exit``. They
are functions, not methods, so that a waiting thread holds no reference to its runner: a runner
dropped without shutdown is collected, and its finaliser (:func:`kill_dropped`) ends the process.

:class:`~.client.Runner` owns the state (declared on :class:`RunnerChannel` for the type
checker) and the lock that guards it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import IO, Any, Self

from orin_console.core.runner.exits import describe_exit, log_level_of, pick_tail
from orin_console.core.runner.generation import Inbox
from orin_console.core.runner.messages import RunnerDied, RunnerError, runner_text
from orin_console.core.runner.protocol import ChannelClosed, FrameError, FrameReader, FrameWriter, Message
from orin_console.core.text import sanitize

__all__ = ["START_MARK", "ProgressCallback", "RunnerChannel", "Waiter", "kill_dropped", "read_loop", "stderr_loop"]

ProgressCallback = Callable[[float], None]

START_MARK = "--- runner started:"
"""Starts the line the console logs before each new process's output."""

# The runner's output belongs in the console's log, never on the terminal: without this, an
# application that configured no logging would get WARNING+ lines from logging's last resort.
logging.getLogger("orin_console.runner").addHandler(logging.NullHandler())


def stderr_loop(pipe: IO[bytes], log: deque[str], logger: logging.Logger) -> None:
    """Body of the stderr reader thread: keep each output line and pass it to the logger.

    It holds the ring buffer and the logger, never the runner (see :func:`read_loop`).
    """
    try:
        for raw in iter(lambda: pipe.readline(8192), b""):
            line = sanitize(raw.decode("utf-8", "replace").rstrip())  # llama.cpp quotes model files
            if not line:
                continue
            log.append(line)
            logger.log(log_level_of(line), "%s", line)
    except (OSError, ValueError):
        pass
    finally:
        pipe.close()


def read_loop(
    ref: weakref.ref[RunnerChannel],
    proc: subprocess.Popen[bytes],
    sock: socket.socket,
    err_thread: threading.Thread,
    reported: threading.Event,
    logger: logging.Logger,
) -> None:
    """Body of the channel reader thread: route every frame, then account for the end.

    It holds the runner only while it handles a frame, never while it waits for one, so a
    runner dropped without :meth:`~.client.Runner.shutdown` can be collected; its finaliser
    kills the process, and this thread then cleans up and ends.
    """
    reader = FrameReader(sock)
    problem = None
    runner: RunnerChannel | None = None
    try:
        while True:
            item = reader.read()
            if item is None:
                break
            runner = ref()
            if runner is None:
                break  # dropped: its finaliser has killed the process
            if type(item) is str:
                gen = runner._gen
                if gen is not None:
                    gen.put(item)
                    if gen.abandoned:
                        gen.cancel()
            else:
                assert isinstance(item, dict)
                runner._route(item)
            runner = None
    except FrameError as exc:
        problem = f"broke the protocol ({exc}) and was stopped"
    except Exception as exc:  # never leave callers hanging (logged: not a blind catch)
        logger.exception("runner channel reader failed")
        problem = f"could not be read ({exc}) and was stopped"
    finally:
        runner = ref()
        try:
            if runner is not None:
                runner._finish(proc, sock, reader, err_thread, problem)
            else:
                _reap(proc, sock, reader, err_thread)
        finally:
            reported.set()


def _reap(proc: subprocess.Popen[bytes], sock: socket.socket, reader: FrameReader,
          err_thread: threading.Thread) -> None:
    """End and collect a dropped runner's process."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    err_thread.join(2.0)
    reader.close()
    sock.close()


def kill_dropped(proc: subprocess.Popen[bytes], model_id: str) -> None:
    """The finaliser of a runner dropped (or left at exit) with its process still running."""
    if proc.poll() is None:
        logging.getLogger(f"orin_console.runner.{model_id}").warning(
            "runner for `%s` was dropped without shutdown(); its process %s is killed", model_id, proc.pid)
        proc.kill()


class Waiter:
    """One request waiting for its reply."""

    __slots__ = ("error", "event", "progress", "reply")

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.event = threading.Event()
        self.reply: Message | None = None
        self.error: RunnerError | None = None
        self.progress = progress


class RunnerChannel:
    """Requests, replies and the reader threads of :class:`~.client.Runner` (a mixin).

    The attributes below are :class:`~.client.Runner`'s, set in its ``__init__`` and
    ``_spawn``; ``_lock`` guards them.
    """

    model_id: str
    died: RunnerDied | None
    returncode: int | None
    _on_exit: Callable[[Self, RunnerDied | None], None] | None
    _lock: threading.Lock
    _ids: itertools.count[int]
    _log: deque[str]
    _logger: logging.Logger
    _proc: subprocess.Popen[bytes] | None
    _writer: FrameWriter | None
    _pending: dict[int, Waiter]
    _gen: Inbox | None
    _stopping: bool
    _stall_reason: str | None
    _loaded: bool
    _exited: threading.Event
    _heard: float  # time.monotonic() of the last message from the process (the reader sets it)

    def _lines_since_start(self) -> list[str]:
        lines = list(self._log)
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith(START_MARK):
                return lines[i + 1 :]
        return lines

    def _end_error(self) -> RunnerError:
        died = self.died
        if died is not None:
            return RunnerDied(died.model_id, died.reason, died.returncode, died.signal_name, died.stderr_tail)
        return RunnerError(self.model_id, f"runner for `{self.model_id}` was shut down")

    def _check_running(self) -> None:
        if self._proc is None:
            raise RunnerError(self.model_id, f"runner for `{self.model_id}` was never started")
        if self._exited.is_set():
            raise self._end_error()

    def _check_ready(self) -> None:
        self._check_running()
        if not self._loaded:
            raise RunnerError(self.model_id, f"`{self.model_id}` is not loaded yet")

    def _checked(self, reply: Message) -> dict[str, Any]:
        if not reply.get("ok"):
            raise RunnerError(self.model_id, f"`{self.model_id}`: {runner_text(reply.get('error'))}")
        return reply.get("result") or {}

    def _call(
        self, op: str, fields: dict[str, Any], *, timeout: float | None, progress: ProgressCallback | None = None,
        silence_s: float | None = None,
    ) -> Message:
        """Send ``op`` and wait for its reply (``timeout``: then raise :class:`RunnerError`).

        With ``silence_s``, the wait is watched: the runner is pinged meanwhile, and one that
        sends nothing at all (no reply to a ping, no progress) for ``silence_s`` seconds is
        stuck (stopped by SIGSTOP, frozen, swapped out): it is killed, and the call raises
        :class:`RunnerDied` saying so, instead of waiting forever.
        """
        with self._lock:
            self._check_running()
            rid = next(self._ids)
            waiter = Waiter(progress)
            self._pending[rid] = waiter
            writer = self._writer
        try:
            assert writer is not None
            writer.send({"op": op, "id": rid, **fields})
        except ChannelClosed:
            pass  # the reader thread reports the death to the waiter
        if silence_s is None:
            answered = waiter.event.wait(timeout)
        else:
            answered = self._watched_wait(waiter, op, timeout, silence_s)
        if not answered:
            with self._lock:
                self._pending.pop(rid, None)
            raise RunnerError(self.model_id, f"runner for `{self.model_id}` did not answer `{op}` within {timeout:g} s")
        if waiter.error is not None:
            raise waiter.error
        assert waiter.reply is not None
        return waiter.reply

    def _watched_wait(self, waiter: Waiter, op: str, timeout: float | None, silence_s: float) -> bool:
        """Wait for ``waiter``, pinging the runner; kill it after ``silence_s`` of silence."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(1.0, silence_s / 4)
        self._heard = time.monotonic()
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return waiter.event.is_set()
            if waiter.event.wait(interval if left is None else min(interval, left)):
                return True
            if time.monotonic() - self._heard >= silence_s:
                self._kill_silent(op, silence_s)
                return waiter.event.wait(10.0)  # the reader fails the waiter with the death
            writer = self._writer
            if writer is not None:
                with contextlib.suppress(ChannelClosed):  # a dead runner is reported by the reader
                    writer.send({"op": "ping", "id": next(self._ids)})  # its reply only proves life

    def _kill_silent(self, op: str, silence_s: float) -> None:
        reason = (f"stopped answering for {silence_s:g} s during its {op} (stopped? swapped out?); "
                  "it was killed, ask again to restart it")
        with self._lock:
            proc = self._proc
            if self._exited.is_set() or proc is None:
                return
            if self._stall_reason is None:
                self._stall_reason = reason
        self._logger.error("runner for `%s` %s", self.model_id, reason)
        proc.kill()  # the reader reports the end to the waiter and to on_exit

    def _send_cancel(self, gen_id: int) -> None:
        writer = self._writer
        if writer is None or self._exited.is_set():
            return
        with contextlib.suppress(ChannelClosed):
            writer.send({"op": "cancel", "gen": gen_id})

    def _route(self, item: Message) -> None:
        self._heard = time.monotonic()
        rid = item.get("re")
        ev = item.get("ev")
        if ev == "tick":
            gen = self._gen
            if gen is not None and rid == gen.id:
                gen.touch()
            return
        if ev == "progress":
            waiter = self._pending.get(rid)  # type: ignore[arg-type]
            if waiter is not None and waiter.progress is not None:
                try:
                    waiter.progress(float(item.get("value", 0.0)))
                except Exception:  # a bad callback must not kill the reader
                    self._logger.exception("load progress callback failed")
            return
        gen = self._gen
        if gen is not None and rid == gen.id:
            with self._lock:
                self._gen = None
            gen.put(item)
            return
        with self._lock:
            waiter = self._pending.pop(rid, None)  # type: ignore[arg-type]
        if waiter is not None:
            waiter.reply = item
            waiter.event.set()

    def _finish(  # self: Self, so that on_exit is handed the Runner itself
        self: Self,
        proc: subprocess.Popen[bytes],
        sock: socket.socket,
        reader: FrameReader,
        err_thread: threading.Thread,
        problem: str | None,
    ) -> None:
        """Account for the ended (or broken) process and fail everything waiting on it."""
        if problem is not None and proc.poll() is None:
            proc.kill()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err_thread.join(2.0)  # the last stderr lines explain the death
        with self._lock:
            self.returncode = proc.returncode
            stall = self._stall_reason
            if self._stopping and problem is None and stall is None:
                self.died = None
            else:
                reason, sig = describe_exit(proc.returncode)
                if stall is not None:
                    reason = stall  # killed by the watchdog: not the OOM killer's SIGKILL
                elif problem is not None:
                    reason = f"{problem} ({reason})"
                tail = pick_tail(self._lines_since_start())
                self.died = RunnerDied(self.model_id, reason, proc.returncode, sig, tail)
            died = self.died
            gen, self._gen = self._gen, None
            waiters = list(self._pending.values())
            self._pending.clear()
            self._loaded = False
        for waiter in waiters:
            waiter.error = self._end_error()
            waiter.event.set()
        if gen is not None:
            gen.put(self._end_error())
        reader.close()
        sock.close()
        if died is not None:
            self._logger.error("%s", died)
        else:
            self._logger.info("runner for `%s` ended (status %s)", self.model_id, proc.returncode)
        self._exited.set()
        if self._on_exit is not None:
            try:
                self._on_exit(self, died)
            except Exception:  # the callback's failure is not the runner's
                self._logger.exception("on_exit callback failed")
