"""The llama.cpp side of a runner: one hosted ``llama_cpp.Llama``, its load and its generations.

:class:`LlamaHost` is the half of :class:`~.child.RunnerHost` that runs llama.cpp: it loads
the model (progress sent as it goes, the weight lock checked honestly), runs one generation
at a time with a per-token hook (cancel, length, watchdog ticks, timing), and passes
llama.cpp's log to stderr. The process around it (the read loop, the commands served at once,
the parent-death signal, the entry point) is :mod:`.child`.

``llama_cpp`` is imported on the first load, never at import time: a spare runner waits
without it unless asked to warm it.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

from orin_console.core.runner.limits import memlock_soft_limit, raise_memlock, set_oom_score_adj
from orin_console.core.runner.messages import GenerateRequest
from orin_console.core.runner.protocol import ChannelClosed, FrameWriter
from orin_console.core.runner.tiers import CPU_ONLY_NOTE, RunnerConfig, assess_pin, locked_bytes_from_status

NO_GENERATION = 0
"""The generation id while none runs (real ids start at 1)."""
_GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5


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


class LlamaHost:
    """Hosts at most one model and runs its generations, one at a time (the main thread).

    Args:
        writer: the channel to the console (replies, progress, ticks, streamed text).
        model_id: the model's id (used in messages only).
        token_delay: test hook: seconds to sleep per sampled token.
        load_delay: test hook: seconds a load waits before llama.cpp starts.
        ballast: test hook: MB of memory to hold after loading, per model id (a model that
            takes more memory than predicted).
    """

    def __init__(self, writer: FrameWriter, model_id: str, *, token_delay: float = 0.0,
                 load_delay: float = 0.0, ballast: dict[str, int] | None = None) -> None:
        self.model_id = model_id
        self.writer = writer
        self.llm: Any = None
        self.state = "idle"
        self.stopping = False
        self.mlock_failed = False
        self.error_log: list[str] = []  # llama.cpp's error-level messages, for load failures
        self.last_stats: dict[str, Any] | None = None
        self._gen_id = NO_GENERATION
        self._cancel_upto = NO_GENERATION
        self._keep: list[Any] = []  # ctypes callbacks must outlive their use
        self._t0 = self._first = self._last = 0.0
        self._ntok = self._prompt_tokens = 0
        self._max_tokens = 0
        self._tick_s = self._last_tick = 0.0
        self._is_eog: Any = None
        self.token_delay = token_delay
        self.load_delay = load_delay
        self.ballast = dict(ballast or {})
        self._ballast: bytes = b""

    def _reply(self, rid: Any, result: Any = None, error: str | None = None) -> None:
        if error is None:
            self.writer.send({"re": rid, "ok": True, "result": result})
        else:
            self.writer.send({"re": rid, "ok": False, "error": error})

    def _done(self, rid: Any, result: Any = None, error: str | None = None) -> None:
        """Reply to a main-thread command, idle first (a ping right after sees "idle")."""
        self.state = "idle"
        self._reply(rid, result, error)

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

    def _install_abort_callback(self, llama_cpp: Any, llm: Any) -> None:
        """Let a cancel stop llama.cpp inside a decode (the prompt's evaluation, which may take
        seconds on a long prompt), not only between tokens: ``llama_decode`` then returns
        "aborted" and the generation ends as cancelled (the runner is free at once)."""
        set_abort = getattr(llama_cpp, "llama_set_abort_callback", None)
        if set_abort is None:
            return  # an older llama-cpp-python: cancels wait for the next token

        def abort(_data: Any) -> bool:
            return self.state == "generating" and self._cancel_upto >= self._gen_id

        callback = llama_cpp.ggml_abort_callback(abort)
        self._keep.append(callback)
        set_abort(llm.ctx, callback, None)

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

    # -- the main thread's commands -------------------------------------------------

    def load(self, rid: Any, wire: dict[str, Any]) -> None:
        """Load the model ``wire`` (a :class:`RunnerConfig`) describes; reply to ``rid``."""
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
        oom_value, oom_problem = set_oom_score_adj(cfg.oom_score_adj)
        memlock_note = raise_memlock(cfg.memlock_limit)
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
        self._install_abort_callback(llama_cpp, llm)
        if self.ballast.get(self.model_id):
            self._ballast = b"\x01" * (self.ballast[self.model_id] * 2**20)  # written: resident
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            status = f.read()
        locked = locked_bytes_from_status(status)
        model_bytes = int(llm._model.size())
        limit = memlock_soft_limit()
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

    def _generation_failed(self, rid: Any, exc: Exception) -> None:
        if isinstance(exc, ValueError) and "exceed context window" in str(exc):
            # llama-cpp's check of prompt + max_tokens against n_ctx: the request is at fault
            self.state = "idle"
            self.writer.send({"re": rid, "ok": False, "input": True,
                              "error": f"the prompt and max_tokens do not fit the model's context: {exc}"})
            return
        self._done(rid, error=f"generation failed: {exc}")

    def _test_load_delay(self) -> bool:
        """Wait :attr:`load_delay` seconds, or less if a shutdown comes; whether it did not."""
        deadline = time.monotonic() + self.load_delay
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.stopping

    def generate(self, rid: Any, wire: dict[str, Any], tick_s: Any = None) -> None:
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
            if self._cancel_upto >= self._gen_id and "llama_decode returned 2" in str(exc):
                finish = "cancelled"  # the abort callback stopped a decode: a cancel, not a failure
            else:
                self._gen_id = NO_GENERATION
                self._generation_failed(rid, exc)
                return
        self._gen_id = NO_GENERATION
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

