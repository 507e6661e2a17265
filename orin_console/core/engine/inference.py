"""The inference engine: quick, chat and batch generation on top of the manager.

Each request is routed first: the task is detected from the prompt (or the chat's last user
message), a model is selected (``manual``, ``auto`` or ``hybrid``, see
:mod:`orin_console.core.engine.selection`) from the manager's residency and usage, and the choice is
explained. Then the model generates through the manager, which runs one generation at a time
per model and answers a full queue with :class:`~orin_console.core.manager.types.ModelBusy`.

When auto (or hybrid falling back to auto) picks a model that is not loaded, ``on_cold``
decides: ``"load"`` loads it through admission control (the manager publishes the load's
progress events), ``"resident"`` answers with the best loaded model instead and says so. A
load that fails falls back to the best loaded model too, when there is one. A model named in
``manual`` mode is always loaded.

    engine = Engine(manager)
    result = engine.quick("Summarise: ...", max_tokens=64)
    print(result.text, result.summary())
    with engine.stream_chat([{"role": "user", "content": "Hi"}], source="tui") as stream:
        for piece in stream:
            print(piece, end="")
    print(stream.result.summary())

Every request has a ``request_id`` (a new one unless the caller gives one) and a ``source``
(``tui``, ``api``, ``cli``, ``core``); the manager's events carry both, and
``GenerationStarted`` carries the route and its one-line explanation. :meth:`EngineStream.cancel`
ends a request at once while it waits for a load or in the model's queue, and within one token
while it generates. The asyncio adapters are in :mod:`orin_console.core.engine.aio`.

Chat prompts are rendered with the model's own chat template from its GGUF by
llama-cpp-python's sandboxed Jinja environment inside the runner; the engine never renders
a template itself. A quick prompt goes through the template too (as one user message) when
the model has one and the task is not plain text completion; ``as_chat`` overrides that.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from orin_console.core.engine.selection import MODES, Mode, Selection, SelectionError, select
from orin_console.core.engine.streams import BatchPiece, BatchStream, EngineStream
from orin_console.core.engine.tasks import TaskGuess, detect_chat_task, detect_task
from orin_console.core.engine.types import (
    MAX_BATCH,
    MAX_REQUEST_ID_CHARS,
    BatchFailure,
    GenerationParams,
    ParameterError,
    PromptTooLong,
    Result,
    Route,
    check_messages,
    check_prompt,
    check_request_id,
    check_source,
)
from orin_console.core.errors import OrinError
from orin_console.core.manager.manager import new_request_id
from orin_console.core.manager.types import ModelState, ModelStatus, SystemStatus
from orin_console.core.runner import check_request_text
from orin_console.core.tier import LOADED_TIERS, Tier

if TYPE_CHECKING:
    from orin_console.core.manager.manager import Manager

__all__ = ["BatchPiece", "BatchStream", "Engine", "EngineStream", "OnCold", "Route", "residency_of"]

OnCold = Literal["load", "resident"]
_WARM = (*LOADED_TIERS, "loading")
_NOTE_CHARS = 200
MAX_BYTES_PER_TOKEN = 32
"""More text than any tokenizer packs into one token on average: a prompt above this many bytes
per context token cannot fit the model (see :meth:`Engine._check_fits`)."""


def residency_of(models: SystemStatus | Iterable[ModelStatus]) -> dict[str, str]:
    """Model id -> what selection calls its tier: ``ram``, ``swap``, ``loading``, ``failed``.

    Models that are not loaded (or are being unloaded) are left out: they count as ``disk``.
    A model being moved still serves from its old tier, so it counts there.
    """
    residency: dict[str, str] = {}
    for model in models.models if isinstance(models, SystemStatus) else models:
        if model.state in (ModelState.READY, ModelState.MOVING) and model.tier in LOADED_TIERS:
            residency[model.model_id] = model.tier
        elif model.state == ModelState.LOADING:
            residency[model.model_id] = "loading"
        elif model.state == ModelState.FAILED:
            residency[model.model_id] = "failed"
    return residency


def _identity(request_id: str | None, source: str,
              max_chars: int = MAX_REQUEST_ID_CHARS) -> tuple[str, str]:
    """The checked request id (a new one when None) and source."""
    rid = new_request_id() if request_id is None else check_request_id(request_id, max_chars)
    return rid, check_source(source)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= _NOTE_CHARS else text[: _NOTE_CHARS - 1] + "…"


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
              as_chat: bool | None = None, source: str = "core", request_id: str | None = None,
              **fields: Any) -> Result:
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
            source: who asks (``tui``, ``api``, ``cli``, ``core``); the events carry it.
            request_id: the request's id in the events (a new one when left out).

        Raises:
            ParameterError: a parameter or the prompt is invalid (the field is named).
            SelectionError: no model can serve (manual: unknown or inadmissible model).
            ModelBusy: the chosen model's queue is full.
            OrinError: the model could not be loaded, or its runner failed.
        """
        return self.stream_quick(prompt, mode=mode, model=model, preferred=preferred, params=params,
                                 as_chat=as_chat, incremental=False, source=source,
                                 request_id=request_id, **fields).collect()

    def chat(self, messages: Sequence[Mapping[str, str]], *, mode: Mode = "auto",
             model: str | None = None, preferred: str | None = None,
             params: GenerationParams | None = None, source: str = "core",
             request_id: str | None = None, **fields: Any) -> Result:
        """Answer a chat (messages, oldest first) through the model's own chat template.

        Arguments and errors as :meth:`quick`.
        """
        return self.stream_chat(messages, mode=mode, model=model, preferred=preferred,
                                params=params, incremental=False, source=source,
                                request_id=request_id, **fields).collect()

    def stream_quick(self, prompt: str, *, mode: Mode = "auto", model: str | None = None,
                     preferred: str | None = None, params: GenerationParams | None = None,
                     as_chat: bool | None = None, incremental: bool = True, source: str = "core",
                     request_id: str | None = None, **fields: Any) -> EngineStream:
        """Like :meth:`quick`, streamed: iterate the returned stream for text pieces.

        The model is chosen now (``stream.selection``); loading and generation start on the
        first iteration. With ``incremental=False`` the runner sends the whole text as one
        piece at the end (less traffic when nobody watches the tokens arrive).
        """
        started = time.perf_counter()
        rid, who = _identity(request_id, source)
        checked = GenerationParams.build(params, **fields)
        text = check_prompt(prompt)
        check_request_text(text, None, checked.stop)  # encodable and bounded, before any routing
        route = self.route(detect_task(text), mode, model, preferred)
        self._check_fits(route, len(text.encode("utf-8", "replace")))
        return EngineStream(self, route, checked, prompt=text, messages=None, as_chat=as_chat,
                            stream=incremental, started=started, request_id=rid, source=who)

    def stream_chat(self, messages: Sequence[Mapping[str, str]], *, mode: Mode = "auto",
                    model: str | None = None, preferred: str | None = None,
                    params: GenerationParams | None = None, incremental: bool = True,
                    source: str = "core", request_id: str | None = None,
                    **fields: Any) -> EngineStream:
        """Like :meth:`chat`, streamed."""
        started = time.perf_counter()
        rid, who = _identity(request_id, source)
        checked = GenerationParams.build(params, **fields)
        msgs = check_messages(messages)
        check_request_text(None, msgs, checked.stop)
        route = self.route(detect_chat_task(msgs), mode, model, preferred)
        self._check_fits(route, sum(len(m["content"].encode("utf-8", "replace")) for m in msgs))
        return EngineStream(self, route, checked, prompt=None, messages=msgs, as_chat=True,
                            stream=incremental, started=started, request_id=rid, source=who)

    def _check_fits(self, route: Route, size: int) -> None:
        """Refuse, before any runner tokenizes it, a prompt far too long for the chosen model's
        context (a 3 MB prompt kept a runner tokenizing until the watchdog killed it, 120 s).
        No tokenizer packs more than :data:`MAX_BYTES_PER_TOKEN` bytes of text into a token on
        average, so this never refuses a prompt that fits; the runner's exact check stays.

        Raises:
            PromptTooLong: ``size`` bytes exceed that bound for the routed model's context.
        """
        model_id = route.selection.model_id
        context = self.manager.catalog.get(model_id).context
        if size > context * MAX_BYTES_PER_TOKEN:
            raise PromptTooLong(model_id, size, context * MAX_BYTES_PER_TOKEN, context)

    # -- public: batches ------------------------------------------------------------------

    def batch(self, items: Sequence[str | Sequence[Mapping[str, str]]], *, mode: Mode = "auto",
              model: str | None = None, preferred: str | None = None,
              params: GenerationParams | None = None, source: str = "core",
              request_id: str | None = None, **fields: Any) -> list[Result | BatchFailure]:
        """Run several prompts (a string: quick; a list of messages: chat) one after another.

        Each member is routed on its own. A member that fails becomes a :class:`BatchFailure`
        with its error; the rest still run. Results come back in the order given. Member
        ``i`` has the request id ``"{request_id}/{i}"`` (``request_id``: the batch's, a new
        one when left out).

        Raises:
            ParameterError: the batch itself or a shared parameter is invalid.
        """
        stream = self.stream_batch(items, mode=mode, model=model, preferred=preferred,
                                   params=params, incremental=False, source=source,
                                   request_id=request_id, **fields)
        for _ in stream:
            pass
        return stream.results

    def stream_batch(self, items: Sequence[str | Sequence[Mapping[str, str]]], *,
                     mode: Mode = "auto", model: str | None = None, preferred: str | None = None,
                     params: GenerationParams | None = None, incremental: bool = True,
                     source: str = "core", request_id: str | None = None,
                     **fields: Any) -> BatchStream:
        """Like :meth:`batch`, streamed: iterate for :class:`BatchPiece` s."""
        rid, who = _identity(request_id, source, max_chars=MAX_REQUEST_ID_CHARS - len(f"/{MAX_BATCH}"))
        checked = GenerationParams.build(params, **fields)
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) \
                or not 1 <= len(items) <= MAX_BATCH:
            raise ParameterError("prompts", items if not isinstance(items, Sequence) else
                                 f"{len(items)} items", f"a list of 1 to {MAX_BATCH} prompts")
        return BatchStream(self, list(items), dict(mode=mode, model=model, preferred=preferred,
                                                   params=checked, source=who), incremental, rid)

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

        A warm request does no file work: selection runs first without admission checks, and
        when its winner is loaded (or loading) that is the answer, since leaving out models
        that cannot be admitted never unseats a loaded winner (its runner-up is then named on
        merit, unchecked). Only when the winner must load are the cold candidates checked
        (``manager.plan``, which reads their GGUF headers), and selection runs again.

        Raises:
            ParameterError: an unknown mode.
            SelectionError: no model can serve.
        """
        if mode not in MODES:
            raise ParameterError("mode", mode, f"one of {', '.join(MODES)}")
        manager = self.manager
        catalog = manager.catalog
        residency = residency_of(manager.model_statuses())
        usage = manager.usage.snapshot()
        selection = select(mode, guess, catalog, residency, usage, model=model, preferred=preferred)
        if residency.get(selection.model_id) in _WARM:
            return Route(selection)
        cache: dict[str, str | None] = {}
        if mode != "manual":  # a manual model is always loaded: no check, nothing to redo
            selection = select(mode, guess, catalog, residency, usage, model=model, preferred=preferred,
                               admissible=lambda mid: self._cold_tier(mid, cache) is not None)
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
                                        residency_of(manager.model_statuses()), manager.usage.snapshot())
        if alternative is None or alternative.model_id == selection.model_id:
            return None
        note = f"`{selection.model_id}` could not be loaded ({_short(error)}); the best loaded model answered"
        return Route(alternative, None, (*route.notes, note))

    def _default_tier(self, model_id: str) -> str:
        return self.manager.tier_for(model_id).value  # the one rule (disk-tier models: swap)

    def _cold_tier(self, model_id: str, cache: dict[str, str | None]) -> str | None:
        """The tier a cold model would be admitted into now (its preferred tier; a RAM-tier
        model may fall back to swap; a disk-tier model loads into swap), or None. Only ever
        asked about models that are not loaded (see :meth:`route`)."""
        if model_id in cache:
            return cache[model_id]
        preferred = self.manager.catalog.get(model_id).tier
        order = LOADED_TIERS if preferred == Tier.RAM else (Tier.SWAP,)
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
