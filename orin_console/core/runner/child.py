"""The runner process: hosts one ``llama_cpp.Llama`` and serves the console over one socket.

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
models.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from orin_console.core.runner.messages import GenerateRequest
from orin_console.core.runner.protocol import ChannelClosed, FrameError, FrameReader, FrameWriter, Message
from orin_console.core.runner.tiers import (
    CPU_ONLY_NOTE,
    RunnerConfig,
    assess_pin,
    format_limit,
    locked_bytes_from_status,
)

TEST_HOOKS_ENV = "ORIN_RUNNER_TEST_HOOKS"
TEST_TOKEN_DELAY_ENV = "ORIN_RUNNER_TEST_TOKEN_DELAY_S"
"""With test hooks on: seconds to sleep per sampled token, to stand in for a slow model."""
TEST_LOAD_DELAY_ENV = "ORIN_RUNNER_TEST_LOAD_DELAY_S"
"""With test hooks on: seconds a load waits before llama.cpp starts (a shutdown ends it)."""
_NO_GENERATION = 0
_GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5
_CANCEL_ALL = 1 << 62


class _Cancelled(Exception):
    """Raised from the token hook to stop a generation between two tokens."""


class _LengthReached(Exception):
    """Raised from the token hook when a generation must end for length.

    llama-cpp-python checks ``max_tokens`` only once the text decodes as complete UTF-8, so a
    model emitting a run of partial multi-byte sequences would otherwise sample on until the
    context is full and ``llama_decode`` fails. The hook enforces ``max_tokens`` and the
    context size itself.
    """


def _hosted_llama_class(llama_cpp: Any) -> Any:
    """Return a ``Llama`` subclass with a load-progress callback and a per-token hook.

    ``Llama.__init__`` builds its ``llama_model_params`` and loads at once, so the progress
    callback is put into the params as they are assigned (a property). ``sample`` is called
    once per generated token by every completion path (plain and chat), so the token hook
    sits there: it counts tokens, times them and raises :class:`_Cancelled` on cancel.
    """

    class HostedLlama(llama_cpp.Llama):  # type: ignore[misc]  # a subclass of Any
        def __init__(self, *, progress: Any, on_token: Any, **kwargs: Any) -> None:
            self._orin_progress = progress
            self._orin_on_token = on_token
            super().__init__(**kwargs)

        @property
        def model_params(self) -> Any:
            return self._orin_model_params

        @model_params.setter
        def model_params(self, params: Any) -> None:
            if self._orin_progress is not None:
                params.progress_callback = self._orin_progress
            self._orin_model_params = params

        def sample(self, *args: Any, **kwargs: Any) -> int:
            token = super().sample(*args, **kwargs)
            self._orin_on_token(self, token)
            return int(token)

    return HostedLlama


def _load_failure(errors: list[str], exc: Exception) -> str:
    """Return llama.cpp's own reason for a failed load, else the exception's text."""
    for line in errors:
        marker = "error loading model:"
        if marker in line:
            return line.split(marker, 1)[1].strip()
    return errors[-1] if errors else str(exc)


def _set_oom_score_adj(value: int) -> tuple[int | None, str | None]:
    """Write ``/proc/self/oom_score_adj``; return the value read back and any problem."""
    problem = None
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as f:
            f.write(str(value))
    except OSError as exc:
        problem = f"could not set oom_score_adj to {value}: {exc.strerror or exc}"
    try:
        with open("/proc/self/oom_score_adj", encoding="ascii") as f:
            return int(f.read().strip()), problem
    except (OSError, ValueError):
        return None, problem or "oom_score_adj is not readable on this system"


def _raise_memlock(target: int | None) -> str | None:
    """Raise ``RLIMIT_MEMLOCK``: to the hard limit, or to ``target`` bytes (-1: unlimited).

    Returns:
        A note for the operator when the requested raise was refused, else None.
    """
    inf = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if target is None:
        if soft != inf and (hard == inf or soft < hard):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        return None
    want = inf if target < 0 else target
    new_hard = hard if hard == inf or (want != inf and want <= hard) else want
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (want, new_hard))
    except (ValueError, OSError) as exc:
        shown = format_limit(None if want == inf else want)
        return f"could not raise RLIMIT_MEMLOCK to {shown} (needs CAP_SYS_RESOURCE): {exc}"
    return None


def _memlock_soft_limit() -> int | None:
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


class RunnerHost:
    """Serves one console connection and hosts at most one model.

    Args:
        sock: this process's end of the socketpair.
        model_id: the model's id (used in messages only).
        test_hooks: accept the ``abort`` and ``exit`` test commands.
    """

    def __init__(self, sock: socket.socket, model_id: str, test_hooks: bool) -> None:
        self.model_id = model_id
        self.test_hooks = test_hooks
        self.writer = FrameWriter(sock)
        self.reader = FrameReader(sock)
        self.work: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.llm: Any = None
        self.state = "idle"
        self.stopping = False
        self.mlock_failed = False
        self.error_log: list[str] = []  # llama.cpp's error-level messages, for load failures
        self.last_stats: dict[str, Any] | None = None
        self._gen_id = _NO_GENERATION
        self._cancel_upto = _NO_GENERATION
        self._keep: list[Any] = []  # ctypes callbacks must outlive their use
        self._t0 = self._first = self._last = 0.0
        self._ntok = self._prompt_tokens = 0
        self._max_tokens = 0
        self._tick_s = self._last_tick = 0.0
        self._is_eog: Any = None
        self.token_delay = _env_seconds(TEST_TOKEN_DELAY_ENV) if test_hooks else 0.0
        self.load_delay = _env_seconds(TEST_LOAD_DELAY_ENV) if test_hooks else 0.0

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

    def _reply(self, rid: Any, result: Any = None, error: str | None = None) -> None:
        if error is None:
            self.writer.send({"re": rid, "ok": True, "result": result})
        else:
            self.writer.send({"re": rid, "ok": False, "error": error})

    def _done(self, rid: Any, result: Any = None, error: str | None = None) -> None:
        """Reply to a main-thread command, idle first (a ping right after sees "idle")."""
        self.state = "idle"
        self._reply(rid, result, error)

    def _dispatch(self, msg: Message) -> None:
        op, rid = msg.get("op"), msg.get("id")
        if op == "cancel":
            self._cancel_upto = max(self._cancel_upto, int(msg.get("gen", _NO_GENERATION)))
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

    # -- llama.cpp callbacks ----------------------------------------------------------

    def _install_log_callback(self, llama_cpp: Any) -> None:
        def log(level: int, text: bytes | None, _user_data: Any) -> None:
            if not text:
                return
            try:
                if b"failed to mlock" in text:
                    self.mlock_failed = True
                if level == _GGML_LOG_LEVEL_ERROR and len(self.error_log) < 64:
                    self.error_log.append(text.decode("utf-8", "replace").strip())
                os.write(2, text)
            except Exception:  # noqa: BLE001 - a log line must never break llama.cpp
                pass

        callback = llama_cpp.llama_log_callback(log)
        self._keep.append(callback)
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))

    def _progress_callback(self, llama_cpp: Any, rid: Any) -> Any:
        last = [-1.0]

        def progress(value: float, _user_data: Any) -> bool:
            try:
                if value >= 1.0 or value - last[0] >= 0.01:
                    last[0] = value
                    self.writer.send({"ev": "progress", "re": rid, "value": round(float(value), 4)})
            except Exception:  # noqa: BLE001 - the console is gone; stop loading
                return False
            return not self.stopping

        callback = llama_cpp.llama_progress_callback(progress)
        self._keep.append(callback)
        return callback

    def _on_token(self, llm: Any, token: int) -> None:
        if self.token_delay:
            time.sleep(self.token_delay)
        if self._cancel_upto >= self._gen_id:
            raise _Cancelled
        if self._ntok >= self._max_tokens or int(llm.n_tokens) >= int(llm.n_ctx()):
            raise _LengthReached
        now = time.perf_counter()
        if self._tick_s and now - self._last_tick >= self._tick_s:
            # The console's watchdog counts frames; tokens may come without text for a while
            # (held-back UTF-8, a possible stop string, a non-streamed request).
            self._last_tick = now
            self.writer.send({"ev": "tick", "re": self._gen_id, "tokens": self._ntok})
        if not self._first:
            self._first = now
            self._prompt_tokens = int(llm.n_tokens)
        if not self._is_eog(llm._model.vocab, token):
            self._ntok += 1
            self._last = now

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
                    self._load(rid, msg.get("config") or {})
                else:
                    self._generate(rid, msg.get("request") or {}, msg.get("tick_s"))
            except ChannelClosed:
                return 0
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                traceback.print_exc()
                self._done(rid, error=f"internal runner error: {type(exc).__name__}: {exc}")

    def _load(self, rid: Any, wire: dict[str, Any]) -> None:
        if self.llm is not None:
            self._done(rid, error="a model is already loaded in this runner")
            return
        self.state = "loading"
        if self.load_delay and not self._test_load_delay():
            self._done(rid, error="load cancelled by shutdown")
            return
        try:
            cfg = RunnerConfig.from_wire(wire)
        except (TypeError, ValueError) as exc:
            self._done(rid, error=f"bad runner config: {exc}")
            return
        notes: list[str] = []
        oom_value, oom_problem = _set_oom_score_adj(cfg.oom_score_adj)
        memlock_note = _raise_memlock(cfg.memlock_limit)
        notes += [n for n in (oom_problem, memlock_note) if n]

        import llama_cpp

        self._install_log_callback(llama_cpp)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        supported = bool(llama_cpp.llama_supports_gpu_offload())
        gpu_layers = cfg.n_gpu_layers if supported else 0
        if cfg.n_gpu_layers != 0 and not supported:
            notes.append(CPU_ONLY_NOTE)
        if not os.path.isfile(cfg.model_path):
            self._done(rid, error=f"model file not found: {cfg.model_path}")
            return
        kwargs: dict[str, Any] = {
            "model_path": cfg.model_path,
            "n_gpu_layers": gpu_layers,
            "use_mlock": cfg.use_mlock,
            "use_mmap": cfg.use_mmap,
            "n_ctx": cfg.n_ctx,
            "n_batch": cfg.n_batch,
            "n_threads": cfg.n_threads,
            "verbose": True,  # output goes to our stderr pipe, never to the terminal
        }
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        started = time.perf_counter()
        try:
            llm = _hosted_llama_class(llama_cpp)(
                progress=self._progress_callback(llama_cpp, rid), on_token=self._on_token, **kwargs
            )
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, not fatal
            why = "load cancelled by shutdown" if self.stopping else _load_failure(self.error_log, exc)
            self._done(rid, error=f"llama.cpp could not load {cfg.model_path}: {why}")
            return
        load_seconds = time.perf_counter() - started
        self.llm = llm
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            status = f.read()
        locked = locked_bytes_from_status(status)
        model_bytes = int(llm._model.size())
        limit = _memlock_soft_limit()
        pinned, pin_problem = assess_pin(
            requested=cfg.use_mlock,
            locked_bytes=locked,
            model_bytes=model_bytes,
            gpu_layers=gpu_layers,
            mlock_failed=self.mlock_failed,
            memlock_limit=limit,
        )
        self._done(
            rid,
            {
                "pid": os.getpid(),
                "load_seconds": load_seconds,
                "gpu_offload_supported": supported,
                "gpu_layers": gpu_layers,
                "n_layers": int(llama_cpp.llama_model_n_layer(llm._model.model)),
                "mlock_requested": cfg.use_mlock,
                "pinned": pinned,
                "pin_problem": pin_problem,
                "locked_bytes": locked,
                "model_bytes": model_bytes,
                "memlock_limit": limit,
                "oom_score_adj": oom_value,
                "n_ctx": int(llm.n_ctx()),
                "n_ctx_train": int(llm._model.n_ctx_train()),
                "n_threads": int(llm.n_threads),
                "has_chat_template": "tokenizer.chat_template" in llm.metadata,
                "notes": notes,
            },
        )

    def _test_load_delay(self) -> bool:
        """Wait :attr:`load_delay` seconds, or less if a shutdown comes; whether it did not."""
        deadline = time.monotonic() + self.load_delay
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.stopping

    def _generate(self, rid: Any, wire: dict[str, Any], tick_s: Any = None) -> None:
        """Run one generation; ``tick_s``: send a ``tick`` frame at least this often."""
        if self.llm is None:
            self._done(rid, error="no model is loaded in this runner")
            return
        try:
            req = GenerateRequest.from_wire(wire)
        except (TypeError, ValueError) as exc:
            self._done(rid, error=f"bad generate request: {exc}")
            return
        self.state = "generating"
        self._gen_id = int(rid)
        self._t0 = time.perf_counter()
        self._first = self._last = 0.0
        self._ntok = self._prompt_tokens = 0
        self._max_tokens = req.max_tokens
        self._tick_s = float(tick_s) if isinstance(tick_s, (int, float)) and tick_s > 0 else 0.0
        self._last_tick = 0.0  # the first token sends one: the console's first-token wait ends
        kwargs: dict[str, Any] = {
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stop": list(req.stop),
            "stream": True,
        }
        if req.seed is not None:
            kwargs["seed"] = req.seed
        pieces: list[str] = []
        finish = "stop"
        send_text = self.writer.send_text
        chat = req.messages is not None
        try:
            if self._cancel_upto >= self._gen_id:
                raise _Cancelled
            if chat:
                parts = self.llm.create_chat_completion(messages=list(req.messages or ()), **kwargs)
            else:
                parts = self.llm.create_completion(prompt=req.prompt, **kwargs)
            for part in parts:
                choice = part["choices"][0]
                text = choice["delta"].get("content") if chat else choice["text"]
                if text:
                    if req.stream:
                        send_text(text)
                    else:
                        pieces.append(text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        except _Cancelled:
            finish = "cancelled"
        except _LengthReached:
            finish = "length"
        except ChannelClosed:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a prompt longer than the context
            self._gen_id = _NO_GENERATION
            self._done(rid, error=f"generation failed: {exc}")
            return
        self._gen_id = _NO_GENERATION
        span = self._last - self._first
        stats = {
            "tokens": self._ntok,
            "prompt_tokens": self._prompt_tokens,
            "ttft_s": (self._first - self._t0) if self._first else None,
            "tok_per_s": (self._ntok - 1) / span if self._ntok >= 2 and span > 0 else None,
            "total_s": time.perf_counter() - self._t0,
            "finish_reason": finish,
        }
        self.last_stats = stats
        self._done(rid, {"text": "".join(pieces), "stats": stats})


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
