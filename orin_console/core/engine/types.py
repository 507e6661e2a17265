"""The inference engine's value types: generation parameters, results, failures, errors.

Parameters are validated when they are built, with errors that name the field and the
allowed range; the one bound that depends on the model (``max_tokens`` up to its context)
is checked once the model is chosen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from orin_console.core.engine.selection import Selection
from orin_console.core.errors import OrinError

MAX_TOKENS_LIMIT: Final = 131072
"""The largest ``max_tokens`` anywhere (the largest context a catalog entry may have)."""
TEMPERATURE_MAX: Final = 2.0
MAX_STOP: Final = 4
MAX_STOP_CHARS: Final = 64
SEED_MAX: Final = 2**32 - 2
"""llama.cpp's seed is 32-bit; 2**32 - 1 means "random" there, so it is not offered."""
MAX_BATCH: Final = 64
MAX_MESSAGES: Final = 256
CHAT_ROLES: Final = ("system", "user", "assistant")
MAX_REQUEST_ID_CHARS: Final = 80
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")
_SOURCE: Final = re.compile(r"[a-z][a-z0-9_-]{0,15}")


class EngineError(OrinError):
    """A generation request is invalid or cannot be served as asked."""


class ParameterError(EngineError):
    """A generation parameter is out of range.

    Attributes:
        field: the parameter (``"max_tokens"``, ``"temperature"``, ``"messages[1].role"``...).
        allowed: the allowed values in words (``"an integer from 1 to 2048"``).
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.allowed = allowed
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        super().__init__(f"{field} = {shown}: must be {allowed}")


class PromptTooLong(EngineError):
    """A prompt far longer than the chosen model's context can hold, refused before any runner
    tokenizes it (the API answers 413; the OpenAI-compatible routes 400
    ``context_length_exceeded``, as OpenAI does).

    Attributes:
        model_id: the model the prompt was routed to.
        size: the prompt's bytes (UTF-8).
        bound: the most bytes that model's context could hold.
        context: the model's context in tokens (its catalog entry's ``context``).
    """

    def __init__(self, model_id: str, size: int, bound: int, context: int) -> None:
        self.model_id = model_id
        self.size = size
        self.bound = bound
        self.context = context
        super().__init__(f"the prompt is {size} bytes, far more than {model_id}'s context of {context} tokens "
                         f"can hold (at most about {bound} bytes); shorten it, or use a model with a larger "
                         f"context (or raise `context` in {model_id}'s entry in models.toml, up to the model's "
                         "trained context)")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GenerationParams:
    """How to generate; every field is checked when the object is built.

    Attributes:
        max_tokens: most tokens to generate, 1 to the model's context (checked against the
            chosen model's ``context`` once it is known).
        temperature: 0 (greedy, deterministic) to 2.
        top_p: nucleus sampling mass, greater than 0 and at most 1.
        stop: up to 4 strings of 1 to 64 characters that end the generation.
        seed: 0 to 2**32 - 2 for reproducible sampling; None for a random seed.

    Raises:
        ParameterError: a field is out of range or of the wrong type.
    """

    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.max_tokens) or not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise ParameterError("max_tokens", self.max_tokens,
                                 f"an integer from 1 to {MAX_TOKENS_LIMIT} (and the model's context)")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= TEMPERATURE_MAX:
            raise ParameterError("temperature", self.temperature,
                                 f"a number from 0 to {TEMPERATURE_MAX:g} (0 is greedy)")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ParameterError("top_p", self.top_p, "a number greater than 0 and at most 1")
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, Sequence) or len(stop) > MAX_STOP or not all(
            isinstance(s, str) and 1 <= len(s) <= MAX_STOP_CHARS for s in stop
        ):
            raise ParameterError("stop", self.stop,
                                 f"at most {MAX_STOP} strings of 1 to {MAX_STOP_CHARS} characters")
        object.__setattr__(self, "stop", tuple(stop))
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= SEED_MAX):
            raise ParameterError("seed", self.seed,
                                 f"an integer from 0 to {SEED_MAX}, or left out for a random seed")

    @classmethod
    def build(cls, base: GenerationParams | None = None, **changes: Any) -> GenerationParams:
        """``base`` (or the defaults) with ``changes`` applied; None values are ignored.

        Raises:
            ParameterError: an unknown field, or a value out of range.
        """
        known = {f.name for f in fields(cls)}
        for name in changes:
            if name not in known:
                raise ParameterError(name, changes[name], f"one of the fields {', '.join(sorted(known))}")
        given = {k: v for k, v in changes.items() if v is not None}
        return replace(base, **given) if base is not None else cls(**given)

    def check_context(self, model_id: str, n_ctx: int) -> None:
        """Check ``max_tokens`` against the chosen model's context.

        Raises:
            ParameterError: ``max_tokens`` is over ``n_ctx``.
        """
        if self.max_tokens > n_ctx:
            raise ParameterError("max_tokens", self.max_tokens,
                                 f"an integer from 1 to {n_ctx} (the context of `{model_id}`)")


def check_prompt(prompt: object, field: str = "prompt") -> str:
    """A prompt must be a non-empty string.

    Raises:
        ParameterError: it is not.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParameterError(field, prompt, "a non-empty string")
    return prompt


def check_messages(messages: object) -> tuple[dict[str, str], ...]:
    """Chat messages: 1 to 256 of ``{"role": system|user|assistant, "content": str}``.

    Raises:
        ParameterError: naming the message and key that is wrong.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ParameterError("messages", messages, "a non-empty list of {role, content} messages")
    if len(messages) > MAX_MESSAGES:
        raise ParameterError("messages", f"{len(messages)} messages", f"at most {MAX_MESSAGES} messages")
    checked = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise ParameterError(f"messages[{i}]", msg, "a mapping with 'role' and 'content'")
        role, content = msg.get("role"), msg.get("content")
        if role not in CHAT_ROLES:
            raise ParameterError(f"messages[{i}].role", role, f"one of {', '.join(CHAT_ROLES)}")
        if not isinstance(content, str):
            raise ParameterError(f"messages[{i}].content", content, "a string")
        checked.append({"role": str(role), "content": content})
    if not any(m["role"] == "user" for m in checked):
        raise ParameterError("messages", "no user message", "a list with at least one user message")
    return tuple(checked)


def check_request_id(value: object, max_chars: int = MAX_REQUEST_ID_CHARS) -> str:
    """A request id: 1 to ``max_chars`` letters, digits and ``. _ : / -``, starting with a
    letter or digit (it ends up in events, logs and HTTP headers, so nothing else).

    Raises:
        ParameterError: it is not.
    """
    if not isinstance(value, str) or len(value) > max_chars or not _REQUEST_ID.fullmatch(value):
        raise ParameterError("request_id", value, f"1 to {max_chars} letters, digits or . _ : / - "
                             "starting with a letter or digit (or left out for a new id)")
    return value


def check_source(value: object) -> str:
    """Who asks (``tui``, ``api``, ``cli``, ``core``...): a short lower-case word.

    Raises:
        ParameterError: it is not.
    """
    if not isinstance(value, str) or not _SOURCE.fullmatch(value):
        raise ParameterError("source", value, "a lower-case word of 1 to 16 letters, digits, _ or - "
                             "(tui, api, cli or core)")
    return value


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


@dataclass(frozen=True)
class Result:
    """One finished generation and everything an operator asks about it.

    Attributes:
        text: the generated text.
        model_id: the model that answered.
        task: the task detected from the prompt (or the chat's last user message).
        selection: the selection decision (model, reasons, runner-up, candidates).
        ttft_s: request received by the runner → first token (prompt evaluation included).
        tok_per_s: decode speed after the first token (None with fewer than two tokens).
        prompt_tokens: tokens in the evaluated prompt (after the chat template).
        tokens: tokens generated.
        finish_reason: ``stop``, ``length`` or ``cancelled``.
        total_s: the runner's time for the generation.
        elapsed_s: the caller's wall time: selection, any load, queueing and generation.
        load_s: seconds spent loading the model first (None: it was already loaded).
        loaded_tier: the tier it was loaded into when ``load_s`` is set.
        prompt_format: ``"chat"`` (the model's own chat template) or ``"raw"``.
        notes: plain sentences that qualify the selection (fallbacks, defaults used).
        request_id: the request's id (the one its events carry).
    """

    text: str
    model_id: str
    task: str
    selection: Selection
    ttft_s: float | None
    tok_per_s: float | None
    prompt_tokens: int
    tokens: int
    finish_reason: str
    total_s: float
    elapsed_s: float
    load_s: float | None = None
    loaded_tier: str | None = None
    prompt_format: str = "raw"
    notes: tuple[str, ...] = ()
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        """Always True (a :class:`BatchFailure` says False)."""
        return True

    @property
    def explanation(self) -> str:
        """The selection's one-line explanation, with the notes."""
        return "; ".join((self.selection.explanation, *self.notes))

    def summary(self) -> str:
        """One line: model and why, TTFT, speed, tokens, finish reason.

        ``smollm2 (auto: chat, fits chat, resident in ram; runner-up gemma3) · TTFT 45 ms ·
        77.1 tok/s · 32 tokens · stop``
        """
        sel = self.selection
        why = sel.candidates[0].why if sel.candidates else ""
        inner = f"{sel.mode}: {self.task}" + (f", {why}" if why else "")
        if sel.runner_up:
            inner += f"; runner-up {sel.runner_up}"
        parts = [f"{self.model_id} ({inner})"]
        if self.load_s is not None:
            parts.append(f"loaded into {self.loaded_tier} in {self.load_s:.1f} s")
        speed = f"{self.tok_per_s:.1f} tok/s" if self.tok_per_s else "– tok/s"
        parts += [f"TTFT {_ms(self.ttft_s)}", speed, f"{self.tokens} tokens", self.finish_reason]
        parts += list(self.notes)
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the API and ``--json`` use it)."""
        sel = self.selection
        return {
            "text": self.text, "model": self.model_id, "task": self.task, "mode": sel.mode,
            "explanation": self.explanation, "reasons": list(sel.reasons),
            "runner_up": sel.runner_up, "task_reasons": list(sel.guess.reasons),
            "task_confidence": round(sel.guess.confidence, 3),
            "ttft_s": self.ttft_s, "tok_per_s": self.tok_per_s,
            "prompt_tokens": self.prompt_tokens, "tokens": self.tokens,
            "finish_reason": self.finish_reason, "total_s": self.total_s,
            "elapsed_s": self.elapsed_s, "load_s": self.load_s, "loaded_tier": self.loaded_tier,
            "prompt_format": self.prompt_format, "notes": list(self.notes),
            "request_id": self.request_id,
        }


@dataclass(frozen=True)
class BatchFailure:
    """A batch member that failed; the rest of the batch still ran.

    Attributes:
        index: its position in the batch.
        error: the error in operator words.
        kind: the error's class name (``ModelBusy``, ``ParameterError``, ``RunnerDied``...).
        model_id: the model it was routed to, when it got that far.
    """

    index: int
    error: str
    kind: str
    model_id: str | None = None

    @property
    def ok(self) -> bool:
        """Always False (a :class:`Result` says True)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"index": self.index, "error": self.error, "kind": self.kind, "model": self.model_id}


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

    @property
    def explanation(self) -> str:
        """The route in one line: the selection's explanation, then the notes."""
        return "; ".join((self.selection.explanation, *self.notes))
