"""The runner process: hosts one ``llama_cpp.Llama`` and serves the console over one socket.

This module is the process's plumbing (arguments, the parent-death signal, the read loop, the
commands served at once, the test hooks); the llama.cpp side, load and generate, is
:class:`~.host.LlamaHost`.

Started by :class:`~orin_console.core.runner.client.Runner` as::

    python -m orin_console.core.runner.child --fd N --model-id ID

``N`` is this process's end of a socketpair (see :mod:`.protocol`). Two threads:

- the main thread does the slow work, in order: ``load`` and ``generate``;
- a reader thread reads every command as it arrives, so ``cancel``, ``ping`` and ``stats``
  are served at once, even in the middle of a generation or a load. ``cancel`` sets a mark
  that the token hook checks after each token is sampled: generation stops within one token.

llama.cpp's log goes to this process's stderr through our own log callback (never to the
terminal: the console reads stderr through a pipe). A runner never outlives its console: the
console's end of the socket closing means the console is gone, and the reader thread exits at
once (idle, loading, generating, or as a spare); and the kernel SIGKILLs the runner when the
console dies (``PR_SET_PDEATHSIG``, set first thing), which also covers a console killed while
something else still holds its end of the socket.

Test hooks: only with ``ORIN_RUNNER_TEST_HOOKS=1`` in the environment, ``abort`` calls
:func:`os.abort` and ``exit`` calls :func:`os._exit` with a given code (otherwise they are
refused), ``ORIN_RUNNER_TEST_TOKEN_DELAY_S`` slows every token down and
``ORIN_RUNNER_TEST_LOAD_DELAY_S`` every load, to stand in for a model slower than the tiny test
models, and ``ORIN_RUNNER_TEST_BALLAST_MB`` (``id=MB,...``) makes a model hold more memory than
predicted once loaded.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import queue
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from orin_console.core.runner.host import NO_GENERATION, LlamaHost
from orin_console.core.runner.limits import read_oom_score_adj, set_oom_score_adj
from orin_console.core.runner.protocol import ChannelClosed, FrameError, FrameReader, FrameWriter, Message
from orin_console.core.runner.tiers import child_oom_score_adj

TEST_HOOKS_ENV = "ORIN_RUNNER_TEST_HOOKS"
TEST_TOKEN_DELAY_ENV = "ORIN_RUNNER_TEST_TOKEN_DELAY_S"
"""With test hooks on: seconds to sleep per sampled token, to stand in for a slow model."""
TEST_LOAD_DELAY_ENV = "ORIN_RUNNER_TEST_LOAD_DELAY_S"
"""With test hooks on: seconds a load waits before llama.cpp starts (a shutdown ends it)."""
TEST_BALLAST_ENV = "ORIN_RUNNER_TEST_BALLAST_MB"
"""With test hooks on: ``id=MB[,id=MB...]``: after loading model ``id``, hold MB more memory
(a model that takes more than its prediction)."""
UNLOADED_OOM_SCORE_ADJ = 1000
"""A runner's ``oom_score_adj`` from its start until its load sets the tier's (a spare holds no
model: it is the first process an out-of-memory kernel should take)."""
_CANCEL_ALL = 1 << 62


class RunnerHost(LlamaHost):
    """Serves one console connection and hosts at most one model (:class:`~.host.LlamaHost`).

    Args:
        sock: this process's end of the socketpair.
        model_id: the model's id (used in messages only).
        test_hooks: accept the ``abort`` and ``exit`` test commands.
    """

    def __init__(self, sock: socket.socket, model_id: str, test_hooks: bool) -> None:
        super().__init__(
            FrameWriter(sock), model_id,
            token_delay=_env_seconds(TEST_TOKEN_DELAY_ENV) if test_hooks else 0.0,
            load_delay=_env_seconds(TEST_LOAD_DELAY_ENV) if test_hooks else 0.0,
            ballast=_env_ballast(os.environ.get(TEST_BALLAST_ENV, "")) if test_hooks else {},
        )
        self.test_hooks = test_hooks
        self.reader = FrameReader(sock)
        self.work: queue.SimpleQueue[Message] = queue.SimpleQueue()

    # -- the reader thread ------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while True:
                msg = self.reader.read()
                if msg is None:
                    break
                if isinstance(msg, dict):
                    self._dispatch(msg)
        except (FrameError, ChannelClosed) as exc:
            print(f"orin runner: channel error: {exc}", file=sys.stderr, flush=True)
        # The console is gone (or broke the protocol): nothing left to serve.
        sys.stderr.flush()
        os._exit(0)

    def _dispatch(self, msg: Message) -> None:
        op, rid = msg.get("op"), msg.get("id")
        if op == "cancel":
            self._cancel_upto = max(self._cancel_upto, int(msg.get("gen", NO_GENERATION)))
        elif op == "ping":
            tokens = self._ntok if self.state == "generating" else 0
            self._reply(rid, {"pid": os.getpid(), "state": self.state, "tokens": tokens})
        elif op == "stats":
            self._reply(rid, {"stats": self.last_stats})
        elif op in ("load", "generate"):
            self.work.put(msg)
        elif op == "shutdown":
            self.stopping = True
            self._cancel_upto = _CANCEL_ALL
            self.work.put(msg)
        elif op in ("abort", "exit"):
            self._test_hook(rid, op, msg)
        else:
            self._reply(rid, error=f"unknown command {op!r}")

    def _test_hook(self, rid: Any, op: str, msg: Message) -> None:
        if not self.test_hooks:
            self._reply(rid, error=f"test hooks are off: set {TEST_HOOKS_ENV}=1 in the runner's environment")
            return
        print(f"orin runner: {op} requested by a test hook", file=sys.stderr, flush=True)
        if op == "abort":
            os.abort()
        os._exit(int(msg.get("code", 1)))

    # -- the main thread --------------------------------------------------------------

    def serve(self) -> int:
        """Serve commands until ``shutdown``; return the exit status."""
        threading.Thread(target=self._read_loop, name="runner-reader", daemon=True).start()
        while True:
            msg = self.work.get()
            op, rid = msg.get("op"), msg.get("id")
            try:
                if op == "shutdown":
                    self._reply(rid, {"pid": os.getpid()})
                    return 0
                if op == "load":
                    if isinstance(msg.get("model_id"), str):
                        self.model_id = msg["model_id"]  # a spare learns whose model it hosts
                    self.load(rid, msg.get("config") or {})
                else:
                    self.generate(rid, msg.get("request") or {}, msg.get("tick_s"))
            except ChannelClosed:
                return 0
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                traceback.print_exc()
                self._done(rid, error=f"internal runner error: {type(exc).__name__}: {exc}")


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_console(console_pid: int | None) -> None:
    """Have the kernel SIGKILL this process when the console dies, however it dies.

    ``PR_SET_PDEATHSIG`` covers a console killed with SIGKILL, where nothing else runs; the
    end of file on the channel (the reader thread) covers the rest. The console may have died
    before the call: then the parent is already someone else, and this exits at once.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                problem = os.strerror(ctypes.get_errno())
                print(f"orin runner: could not set the parent-death signal: {problem}", file=sys.stderr, flush=True)
        except (OSError, AttributeError) as exc:
            print(f"orin runner: no prctl, no parent-death signal: {exc}", file=sys.stderr, flush=True)
    if console_pid is None or os.getppid() == console_pid:
        return
    try:  # a launcher between us (its own death signals ours), or the console is gone
        os.kill(console_pid, 0)
    except ProcessLookupError:
        os._exit(0)
    except PermissionError:
        pass


def _env_seconds(name: str) -> float:
    """A test hook's delay from the environment, in seconds (0 when unset)."""
    return float(os.environ.get(name, "0") or 0)


def _env_ballast(text: str) -> dict[str, int]:
    """The ballast test hook's ``id=MB,id=MB`` (malformed parts are ignored)."""
    out = {}
    for part in text.split(","):
        model_id, _, mb = part.partition("=")
        if model_id.strip() and mb.strip().isdigit():
            out[model_id.strip()] = int(mb)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the runner process."""
    parser = argparse.ArgumentParser(prog="orin_console.core.runner.child")
    parser.add_argument("--fd", type=int, required=True, help="this end of the socketpair")
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--console-pid", type=int, default=None,
                        help="the console's pid: exit at once if it is already gone")
    parser.add_argument("--preload", action="store_true",
                        help="import llama_cpp now (a spare runner waiting for its model)")
    args = parser.parse_args(argv)
    _die_with_console(args.console_pid)
    # Until its model is loaded (then the tier's value applies), a runner is the cheapest
    # process to lose: the kernel's OOM killer must take it before the console, which it did
    # not when a spare kept the console's own value (stress.faults found it).
    set_oom_score_adj(child_oom_score_adj(UNLOADED_OOM_SCORE_ADJ, read_oom_score_adj()))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the console decides when a runner ends
    if args.preload:
        import llama_cpp  # noqa: F401 - warm: the later load skips the import
    sock = socket.socket(fileno=args.fd)
    host = RunnerHost(sock, args.model_id, test_hooks=os.environ.get(TEST_HOOKS_ENV) == "1")
    code = host.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the kernel frees the model; no slow interpreter teardown


if __name__ == "__main__":
    sys.exit(main())
