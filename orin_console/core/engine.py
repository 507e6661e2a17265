"""The inference engine: quick, chat and batch generation on top of the manager.

Each request is routed first: the task is detected from the prompt (or the chat's last user
message), a model is selected (``manual``, ``auto`` or ``hybrid``, see
:mod:`orin_console.core.selection`) from the manager's residency and usage, and the choice is
explained. Then the model generates through the manager, which runs one generation at a time
per model and answers a full queue with :class:`~orin_console.core.manager_types.ModelBusy`.

When auto (or hybrid falling back to auto) picks a model that is not loaded, ``on_cold``
decides: ``"load"`` loads it through admission control (the manager publishes the load's
progress events), ``"resident"`` answers with the best loaded model instead and says so. A
load that fails falls back to the best loaded model too, when there is one. A model named in
``manual`` mode is always loaded.

    engine = Engine(manager)
    result = engine.quick("Summarise: ...", max_tokens=64)
    print(result.text, result.summary())
    with engine.stream_chat([{"role": "user", "content": "Hi"}]) as stream:
        for piece in stream:
            print(piece, end="")
    print(stream.result.summary())

Chat prompts are rendered with the model's own chat template from its GGUF by
llama-cpp-python's sandboxed Jinja environment inside the runner; the engine never renders
a template itself. A quick prompt goes through the template too (as one user message) when
the model has one and the task is not plain text completion; ``as_chat`` overrides that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .engine_types import (
    MAX_BATCH,
    BatchFailure,
    EngineError,
    GenerationParams,
    ParameterError,
    Result,
    check_messages,
    check_prompt,
)
from .errors import OrinError
from .manager_types import ModelState, SystemStatus
from .runner import GenerateRequest, GenerationStats
from .selection import MODES, Mode, Selection, SelectionError, select
from .tasks import TaskGuess, detect_chat_task, detect_task

if TYPE_CHECKING:
    from .manager import Manager
    from .slot import ManagedStream

OnCold = Literal["load", "resident"]
_WARM = ("ram", "swap", "loading")
_NOTE_CHARS = 200


def residency_of(status: SystemStatus) -> dict[str, str]:
    """Model id -> what selection calls its tier: ``ram``, ``swap``, ``loading``, ``failed``.

    Models that are not loaded (or are being unloaded) are left out: they count as ``disk``.
    A model being moved still serves from its old tier, so it counts there.
    """
    residency: dict[str, str] = {}
    for model in status.models:
        if model.state in (ModelState.READY, ModelState.MOVING) and model.tier in ("ram", "swap"):
            residency[model.model_id] = model.tier
        elif model.state == ModelState.LOADING:
            residency[model.model_id] = "loading"
        elif model.state == ModelState.FAILED:
            residency[model.model_id] = "failed"
    return residency


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= _NOTE_CHARS else text[: _NOTE_CHARS - 1] + "…"


@dataclass(frozen=True)
class Route:
    """Where a request goes.

    Attributes:
        selection: the decision and its explanation.
        load_tier: the tier the model is loaded into first; None when it is loaded (or
            loading) already.
        notes: plain sentences that qualify the decision (a fallback, for instance).
    """

    selection: Selection
    load_tier: str | None = None
    notes: tuple[str, ...] = ()


class Engine:
    """Quick, chat and batch generation, streamed or not, with selection and its explanation.

    Thread-safe: it holds no per-request state; the manager serialises generations per model.

    Args:
        manager: the manager that owns the models.
        on_cold: when auto selection picks a model that is not loaded: ``"load"`` it (through
            admission control) or use the best ``"resident"`` model instead.
        load_timeout: seconds to wait for a load before giving up on the request.
    """

    def __init__(self, manager: Manager, *, on_cold: OnCold = "load", load_timeout: float = 300.0) -> None:
        if on_cold not in ("load", "resident"):
            raise ParameterError("on_cold", on_cold, "'load' or 'resident'")
        self.manager = manager
        self.on_cold: OnCold = on_cold
        self.load_timeout = load_timeout

    # -- public: one request --------------------------------------------------------------

    def quick(self, prompt: str, *, mode: Mode = "auto", model: str | None = None,
              preferred: str | None = None, params: GenerationParams | None = None,
              as_chat: bool | None = None, **fields: Any) -> Result:
        """Generate an answer to one prompt (not streamed) and return it with its figures.

        Args:
            prompt: the prompt text.
            mode: ``auto``, ``manual`` (``model`` is used) or ``hybrid`` (``preferred`` when it
                is loaded and fits the task).
            model: the model for ``manual``.
            preferred: the operator's preferred model for ``hybrid``.
            params: generation parameters; ``fields`` (``max_tokens=64``...) override them.
            as_chat: send the prompt through the model's chat template (None: when it has one
                and the task is not plain completion).

        Raises:
            ParameterError: a parameter or the prompt is invalid (the field is named).
            SelectionError: no model can serve (manual: unknown or inadmissible model).
            ModelBusy: the chosen model's queue is full.
            OrinError: the model could not be loaded, or its runner failed.
        """
        return self.stream_quick(prompt, mode=mode, model=model, preferred=preferred, params=params,
                                 as_chat=as_chat, incremental=False, **fields).collect()

    def chat(self, messages: Sequence[Mapping[str, str]], *, mode: Mode = "auto",
             model: str | None = None, preferred: str | None = None,
             params: GenerationParams | None = None, **fields: Any) -> Result:
        """Answer a chat (messages, oldest first) through the model's own chat template.

        Arguments and errors as :meth:`quick`.
        """
        return self.stream_chat(messages, mode=mode, model=model, preferred=preferred,
                                params=params, incremental=False, **fields).collect()

    def stream_quick(self, prompt: str, *, mode: Mode = "auto", model: str | None = None,
                     preferred: str | None = None, params: GenerationParams | None = None,
                     as_chat: bool | None = None, incremental: bool = True, **fields: Any) -> EngineStream:
        """Like :meth:`quick`, streamed: iterate the returned stream for text pieces.

        The model is chosen now (``stream.selection``); loading and generation start on the
        first iteration. With ``incremental=False`` the runner sends the whole text as one
        piece at the end (less traffic when nobody watches the tokens arrive).
        """
        started = time.perf_counter()
        checked = GenerationParams.build(params, **fields)
        text = check_prompt(prompt)
        route = self.route(detect_task(text), mode, model, preferred)
        return EngineStream(self, route, checked, prompt=text, messages=None, as_chat=as_chat,
                            stream=incremental, started=started)

    def stream_chat(self, messages: Sequence[Mapping[str, str]], *, mode: Mode = "auto",
                    model: str | None = None, preferred: str | None = None,
                    params: GenerationParams | None = None, incremental: bool = True,
                    **fields: Any) -> EngineStream:
        """Like :meth:`chat`, streamed."""
        started = time.perf_counter()
        checked = GenerationParams.build(params, **fields)
        msgs = check_messages(messages)
        route = self.route(detect_chat_task(msgs), mode, model, preferred)
        return EngineStream(self, route, checked, prompt=None, messages=msgs, as_chat=True,
                            stream=incremental, started=started)

    # -- public: batches ------------------------------------------------------------------

    def batch(self, items: Sequence[str | Sequence[Mapping[str, str]]], *, mode: Mode = "auto",
              model: str | None = None, preferred: str | None = None,
              params: GenerationParams | None = None, **fields: Any) -> list[Result | BatchFailure]:
        """Run several prompts (a string: quick; a list of messages: chat) one after another.

        Each member is routed on its own. A member that fails becomes a :class:`BatchFailure`
        with its error; the rest still run. Results come back in the order given.

        Raises:
            ParameterError: the batch itself or a shared parameter is invalid.
        """
        stream = self.stream_batch(items, mode=mode, model=model, preferred=preferred,
                                   params=params, incremental=False, **fields)
        for _ in stream:
            pass
        return stream.results

    def stream_batch(self, items: Sequence[str | Sequence[Mapping[str, str]]], *,
                     mode: Mode = "auto", model: str | None = None, preferred: str | None = None,
                     params: GenerationParams | None = None, incremental: bool = True,
                     **fields: Any) -> BatchStream:
        """Like :meth:`batch`, streamed: iterate for :class:`BatchPiece` s."""
        checked = GenerationParams.build(params, **fields)
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) \
                or not 1 <= len(items) <= MAX_BATCH:
            raise ParameterError("prompts", items if not isinstance(items, Sequence) else
                                 f"{len(items)} items", f"a list of 1 to {MAX_BATCH} prompts")
        return BatchStream(self, list(items), dict(mode=mode, model=model, preferred=preferred,
                                                   params=checked), incremental)

    # -- routing --------------------------------------------------------------------------

    def preview(self, prompt: str | None = None, messages: Sequence[Mapping[str, str]] | None = None,
                *, mode: Mode = "auto", model: str | None = None,
                preferred: str | None = None) -> Route:
        """Which model would answer, and why, without loading or generating anything."""
        if (prompt is None) == (messages is None):
            raise ParameterError("prompt", None, "given exactly once (a prompt or messages)")
        guess = detect_task(check_prompt(prompt)) if prompt is not None \
            else detect_chat_task(check_messages(messages))
        return self.route(guess, mode, model, preferred)

    def route(self, guess: TaskGuess, mode: Mode, model: str | None, preferred: str | None) -> Route:
        """Select the model for a detected task, applying ``on_cold``.

        Raises:
            ParameterError: an unknown mode.
            SelectionError: no model can serve.
        """
        if mode not in MODES:
            raise ParameterError("mode", mode, f"one of {', '.join(MODES)}")
        manager = self.manager
        catalog = manager.catalog
        residency = residency_of(manager.status())
        usage = manager.usage.snapshot()
        cache: dict[str, str | None] = {}
        check = None if mode == "manual" else (lambda mid: self._cold_tier(mid, cache) is not None)
        selection = select(mode, guess, catalog, residency, usage, model=model,
                           preferred=preferred, admissible=check)
        chosen = selection.model_id
        if residency.get(chosen) in _WARM:
            return Route(selection)
        tier = self._cold_tier(chosen, cache) or self._default_tier(chosen)
        if mode == "manual" or self.on_cold == "load":
            return Route(selection, tier)
        alternative = self._best_loaded(guess, mode, preferred, residency, usage)
        if alternative is None:
            return Route(selection, tier, (f"no loaded model can serve {guess.task}, so `{chosen}` is loaded",))
        note = (f"{mode} picked `{chosen}`, which is not loaded; on_cold=resident, so the best "
                f"loaded model answers")
        return Route(alternative, None, (note,))

    def _best_loaded(self, guess: TaskGuess, mode: Mode, preferred: str | None,
                     residency: Mapping[str, str], usage: Mapping[str, Any]) -> Selection | None:
        try:
            return select(mode, guess, self.manager.catalog, residency, usage,
                          preferred=preferred, admissible=lambda _mid: False)
        except SelectionError:
            return None

    def fallback(self, route: Route, error: OrinError) -> Route | None:
        """After ``route``'s model failed to load: the best loaded model, or None (manual mode,
        or nothing loaded)."""
        selection = route.selection
        if selection.mode == "manual":
            return None
        manager = self.manager
        alternative = self._best_loaded(selection.guess, selection.mode, None,
                                        residency_of(manager.status()), manager.usage.snapshot())
        if alternative is None or alternative.model_id == selection.model_id:
            return None
        note = f"`{selection.model_id}` could not be loaded ({_short(error)}); the best loaded model answered"
        return Route(alternative, None, (*route.notes, note))

    def _default_tier(self, model_id: str) -> str:
        tier = self.manager.catalog.get(model_id).tier
        return tier if tier in ("ram", "swap") else "swap"

    def _cold_tier(self, model_id: str, cache: dict[str, str | None]) -> str | None:
        """The tier a cold model would be admitted into now (its preferred tier; a RAM-tier
        model may fall back to swap; a disk-tier model loads into swap), or None."""
        if model_id in cache:
            return cache[model_id]
        preferred = self.manager.catalog.get(model_id).tier
        order = ("ram", "swap") if preferred == "ram" else ("swap",)
        chosen = None
        for tier in order:
            try:
                ok = self.manager.plan(model_id, tier).ok
            except OrinError:  # an unreadable file, say: not admissible
                ok = False
            if ok:
                chosen = tier
                break
        cache[model_id] = chosen
        return chosen


class EngineStream(Iterator[str]):
    """One routed request: iterate for text pieces; :attr:`result` is set at the end.

    The model is chosen when the stream is made (:attr:`selection`, :attr:`will_load`); a
    load (if needed) and the generation start on the first iteration, which may wait in the
    model's queue. :meth:`cancel` (from any thread) stops the generation within one token;
    the stream then ends with ``finish_reason == "cancelled"``. Closing the stream (or
    leaving its ``with`` block) cancels whatever is still running. A ``KeyboardInterrupt``
    while waiting for a token cancels the generation too; iterating on collects the rest and
    the result.
    """

    def __init__(self, engine: Engine, route: Route, params: GenerationParams, *,
                 prompt: str | None, messages: tuple[dict[str, str], ...] | None,
                 as_chat: bool | None, stream: bool, started: float) -> None:
        self._engine = engine
        self.route = route
        self._params = params
        self._prompt = prompt
        self._messages = messages
        self._as_chat = as_chat
        self._stream = stream
        self._started = started
        self._lock = threading.Lock()
        self._cancelled = False
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
        if self._cancelled:
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
        with self._lock:
            if self._cancelled:
                return
        managed = manager.generate(self.model_id, request, load_timeout=engine.load_timeout)
        with self._lock:
            self._managed = managed
            cancelled = self._cancelled
        if cancelled:
            managed.cancel()

    def _load(self, tier: str) -> None:
        try:
            self._engine.manager.load(self.model_id, tier).result(self._engine.load_timeout)
        except FutureTimeout:
            raise EngineError(f"`{self.model_id}` did not load within {self._engine.load_timeout:.0f} s") from None

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
        )

    # -- control --------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the generation within one token (or before it starts). Thread-safe."""
        with self._lock:
            self._cancelled = True
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
    """

    def __init__(self, engine: Engine, items: list[Any], options: dict[str, Any], stream: bool) -> None:
        self._engine = engine
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
        if isinstance(item, str):
            return engine.stream_quick(item, incremental=self._stream, **self._options)
        return engine.stream_chat(item, incremental=self._stream, **self._options)

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
