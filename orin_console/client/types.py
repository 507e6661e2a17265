"""Typed results: each is a frozen dataclass of the fields the SDK knows, and a read-only
mapping over the server's whole JSON answer.

So both styles work, and a field the server adds later is never lost::

    result.text == result["text"]
    status.total == status["models"]["total"]
    status.to_dict()          # a deep copy of the server's JSON

The classes mirror the API's shapes (docs/api.md, ``/docs``); they are the SDK's own, so the SDK
imports nothing from the server's code.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "AddRefusal", "AddResult", "BatchFailure", "BatchItem", "FileFacts", "GenerationResult", "Health", "ModelInfo",
    "ModelStats", "Operation", "PlanVerdict", "Routed", "ServerEvent", "Suggestion", "SystemStatus",
    "TierInfo",
]

R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Record(Mapping[str, Any]):
    """Base of every result: a read-only mapping over ``raw``, the server's JSON object."""

    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the server's JSON object."""
        return copy.deepcopy(dict(self.raw))

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """Build from the server's JSON object (unknown keys kept in ``raw``)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        return cls._parse(data)

    @classmethod
    def _parse(cls: type[R], data: Mapping[str, Any]) -> R:
        raise NotImplementedError  # pragma: no cover - each subclass parses its own shape


def _opt_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _strs(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def _list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (a hostile or broken answer) as empty."""
    return list(value) if isinstance(value, list | tuple) else []


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Health(Record):
    """``GET /system/health``: the server is up."""

    status: str
    version: str

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Health:
        return cls(status=str(data.get("status", "")), version=str(data.get("version", "")), raw=data)


@dataclass(frozen=True)
class TierInfo(Record):
    """One loaded tier: its budget and what is reserved in it (bytes)."""

    tier: str
    budget_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None
    models: list[str]
    in_flight: list[str] = field(default_factory=list)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> TierInfo:
        return cls(tier=str(data.get("tier", "")), budget_bytes=_opt_int(data.get("budget_bytes")),
                   used_bytes=_opt_int(data.get("used_bytes")), free_bytes=_opt_int(data.get("free_bytes")),
                   models=_strs(data.get("models")), in_flight=_strs(data.get("in_flight")), raw=data)


@dataclass(frozen=True)
class SystemStatus(Record):
    """``GET /system/status``: ``status["models"]["total"]`` as in the seed, and typed accessors.

    Attributes:
        total: models in the catalog.
        loaded: tier -> ids of the models loaded there (``{"ram": [...], "swap": [...]}``).
        states: model id -> state (``unloaded``, ``loading``, ``ready``, ``moving``...).
        tiers: each tier's budget and usage.
        memory: the machine's memory figures (``available_bytes``, ``swap_free_bytes``...).
        telemetry: the latest telemetry sample, or None when the sampler is off.
        uptime_s: seconds since the server started.
        telemetry_source: ``{"active", "preferred", "fallback", "note", "stale", "sources"}``:
            the source in use and, on a fallback, why and the fix (``note``).
        budgets: ``{"ram", "swap", "max_model", "reserve"}``, bytes.
    """

    total: int
    loaded: dict[str, list[str]]
    states: dict[str, str]
    tiers: list[TierInfo]
    memory: dict[str, Any]
    telemetry: dict[str, Any] | None
    uptime_s: float | None
    telemetry_source: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, int] = field(default_factory=dict)

    @property
    def telemetry_note(self) -> str:
        """Why telemetry fell back to a lesser source, with the fix (empty when it did not)."""
        return str(self.telemetry_source.get("note") or "") if self.telemetry_source.get("fallback") else ""

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> SystemStatus:
        models = _dict(data.get("models"))
        loaded = {str(k): _strs(v) for k, v in _dict(models.get("loaded")).items()}
        telemetry = data.get("telemetry")
        return cls(total=_opt_int(models.get("total")) or 0, loaded=loaded,
                   states={str(k): str(v) for k, v in _dict(models.get("states")).items()},
                   tiers=[TierInfo.from_dict(t) for t in _list(data.get("tiers")) if isinstance(t, Mapping)],
                   memory=_dict(data.get("memory")),
                   telemetry=dict(telemetry) if isinstance(telemetry, Mapping) else None,
                   uptime_s=_opt_float(data.get("uptime_s")), telemetry_source=_dict(data.get("telemetry_source")),
                   budgets={str(k): v for k, v in _dict(data.get("budgets")).items()
                            if isinstance(v, int) and not isinstance(v, bool)}, raw=data)

    def tier(self, name: str) -> TierInfo | None:
        """The tier called ``name`` (``"ram"``, ``"swap"``), or None."""
        return next((t for t in self.tiers if t.tier == name), None)


def _size(value: Any) -> int | None:
    """A count or a size the server sent: a non-negative JSON integer, else unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any) -> str | None:
    """A text the server sent: a JSON string, else unknown (never ``str()`` of another type)."""
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class FileFacts(Record):
    """What a model file's GGUF header says (``ModelInfo.facts``). Every field is None when the
    server could not read the header (``problem`` says why) or sent something else than the
    documented JSON type (an older or a broken server).

    Attributes:
        file_size: the file's size in bytes.
        quantization: ``Q4_K_M`` and the like.
        architecture: ``general.architecture`` (``llama``...).
        n_params: parameters.
        context_length: the context the model was trained with.
        name: ``general.name``, when the file has one.
        problem: why the header cannot be read, or the entry's context is above the trained one.
    """

    file_size: int | None = None
    quantization: str | None = None
    architecture: str | None = None
    n_params: int | None = None
    context_length: int | None = None
    name: str | None = None
    problem: str | None = None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> FileFacts:
        return cls(file_size=_size(data.get("file_size")), quantization=_text(data.get("quantization")),
                   architecture=_text(data.get("architecture")), n_params=_size(data.get("n_params")),
                   context_length=_size(data.get("context_length")), name=_text(data.get("name")),
                   problem=_text(data.get("problem")), raw=data)


@dataclass(frozen=True)
class ModelInfo(Record):
    """A catalog model and its state (``GET /models/{id}``).

    Attributes:
        id: the catalog id.
        file: the model file (as the catalog names it).
        tasks: what it is for (``chat``, ``code``...).
        preferred_tier: the catalog's tier.
        tier: where it runs now (``ram``, ``swap``; ``disk``: not loaded).
        state: ``unloaded``, ``loading``, ``ready``, ``moving``, ``unloading`` or ``failed``.
        pin: the placement plan keeps it where it is.
        progress: 0..1 while loading or moving.
        predicted_bytes: admission's prediction for its (target) tier.
        measured_bytes: what the runner really uses, once measured.
        resident: ``pinned``, ``resident, not pinned``, ``pageable`` or None.
        error: why it failed, when it did.
        requests: generations served.
        tok_per_s: its recent generation speed.
        notes: plain sentences about it (CPU only, not pinned and why...).
        facts: its file's header facts (size, quantisation...); None from a server that does
            not send them, or for an entry just removed.
    """

    id: str
    file: str | None
    tasks: list[str]
    preferred_tier: str | None
    tier: str | None
    state: str
    pin: bool = False
    progress: float | None = None
    predicted_bytes: int | None = None
    measured_bytes: int | None = None
    resident: str | None = None
    error: str | None = None
    requests: int = 0
    tok_per_s: float | None = None
    notes: list[str] = field(default_factory=list)
    target_tier: str | None = None
    busy: bool = False
    queued: int = 0
    context: int | None = None
    facts: FileFacts | None = None

    @property
    def loaded(self) -> bool:
        """Whether a runner holds it (ready, or moving between tiers)."""
        return self.state in ("ready", "moving")

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> ModelInfo:
        return cls(
            id=str(data.get("id", data.get("model_id", ""))), file=_opt_str(data.get("file")),
            tasks=_strs(data.get("tasks")), preferred_tier=_opt_str(data.get("preferred_tier")),
            tier=_opt_str(data.get("tier")), state=str(data.get("state", "")), pin=bool(data.get("pin", False)),
            progress=_opt_float(data.get("progress")), predicted_bytes=_opt_int(data.get("predicted_bytes")),
            measured_bytes=_opt_int(data.get("measured_bytes")), resident=_opt_str(data.get("resident")),
            error=_opt_str(data.get("error")), requests=_opt_int(data.get("requests")) or 0,
            tok_per_s=_opt_float(data.get("tok_per_s")), notes=_strs(data.get("notes")),
            target_tier=_opt_str(data.get("target_tier")), busy=bool(data.get("busy", False)),
            queued=_opt_int(data.get("queued")) or 0, context=_opt_int(data.get("context")),
            facts=FileFacts.from_dict(facts) if isinstance(facts := data.get("facts"), Mapping) else None, raw=data)


@dataclass(frozen=True)
class AddRefusal(Record):
    """A file ``models.add`` did not add, and why."""

    path: str
    reason: str

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> AddRefusal:
        return cls(path=str(data.get("path", "")), reason=str(data.get("reason", "")), raw=data)


@dataclass(frozen=True)
class AddResult(Record):
    """``POST /models/add``: the models added and the files refused."""

    added: list[ModelInfo]
    refused: list[AddRefusal]

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> AddResult:
        return cls(added=[ModelInfo.from_dict(m) for m in _list(data.get("added")) if isinstance(m, Mapping)],
                   refused=[AddRefusal.from_dict(r) for r in _list(data.get("refused")) if isinstance(r, Mapping)],
                   raw=data)


@dataclass(frozen=True)
class Operation(Record):
    """A load, move or unload in progress or ended (``GET /operations/{id}``).

    Attributes:
        id: the operation id.
        model_id: the model it acts on.
        action: ``load``, ``move`` or ``unload``.
        tier: the target tier (None for an unload).
        state: ``running``, ``done``, ``failed`` or ``cancelled``.
        error: why it failed (the server's error object or text), when it did.
        progress: 0..1 while a load or move runs, when known.
    """

    id: str
    model_id: str
    action: str
    tier: str | None
    state: str
    error: Any = None
    progress: float | None = None

    @property
    def done(self) -> bool:
        """Whether it has ended (done, failed or cancelled)."""
        return self.state != "running"

    @property
    def ok(self) -> bool:
        """Whether it ended well."""
        return self.state == "done"

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Operation:
        return cls(id=str(data.get("id", "")), model_id=str(data.get("model_id", "")),
                   action=str(data.get("action", "")), tier=_opt_str(data.get("tier")),
                   state=str(data.get("state", "")), error=data.get("error"),
                   progress=_opt_float(data.get("progress")), raw=data)


@dataclass(frozen=True)
class Suggestion(Record):
    """What would make a refused plan fit (``text`` says it in the operator's words)."""

    text: str
    action: str | None = None
    model_id: str | None = None
    from_tier: str | None = None
    to_tier: str | None = None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Suggestion:
        return cls(text=str(data.get("text", "")), action=_opt_str(data.get("action")),
                   model_id=_opt_str(data.get("model_id")), from_tier=_opt_str(data.get("from_tier")),
                   to_tier=_opt_str(data.get("to_tier")), raw=data)


@dataclass(frozen=True)
class PlanVerdict(Record):
    """``GET /models/{id}/plan``: would a load (or move) fit, itemised. Read :attr:`ok` (the
    verdict is a mapping, so ``bool(verdict)`` only says it is not empty).

    Attributes:
        ok: it would fit.
        summary: the verdict in one line.
        explanation: the verdict in full.
        reasons: why not, item by item (empty when it fits).
        suggestions: what would make it fit.
        needed: bytes needed per tier.
        free: bytes free per tier.
        strategy: how it would be done (a cold load, a move...).
    """

    ok: bool
    summary: str
    explanation: str
    reasons: list[str]
    suggestions: list[Suggestion]
    needed: dict[str, int]
    free: dict[str, int]
    strategy: str | None
    model_id: str | None = None
    tier: str | None = None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> PlanVerdict:
        suggestions = [Suggestion.from_dict(s) if isinstance(s, Mapping) else Suggestion(text=str(s), raw={"text": s})
                       for s in _list(data.get("suggestions"))]
        return cls(ok=bool(data.get("ok", False)), summary=str(data.get("summary", "")),
                   explanation=str(data.get("explanation", "")), reasons=_strs(data.get("reasons")),
                   suggestions=suggestions,
                   needed={str(k): _opt_int(v) or 0 for k, v in _dict(data.get("needed")).items()},
                   free={str(k): _opt_int(v) or 0 for k, v in _dict(data.get("free")).items()},
                   strategy=_opt_str(data.get("strategy")), model_id=_opt_str(data.get("model_id")),
                   tier=_opt_str(data.get("tier")), raw=data)


@dataclass(frozen=True)
class ModelStats(Record):
    """``GET /models/{id}/stats``: a model's usage figures (the whole answer is in the mapping)."""

    model_id: str
    requests: int
    tokens: int
    ttft_s: float | None
    tok_per_s: float | None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> ModelStats:
        usage = _dict(data.get("usage")) or dict(data)
        return cls(model_id=str(data.get("id", data.get("model_id", ""))),
                   requests=_opt_int(usage.get("requests")) or 0, tokens=_opt_int(usage.get("tokens")) or 0,
                   ttft_s=_opt_float(usage.get("ttft_s")), tok_per_s=_opt_float(usage.get("tok_per_s")), raw=data)


@dataclass(frozen=True)
class GenerationResult(Record):
    """A finished generation (``str(result)`` is its text).

    Attributes:
        text: what the model wrote.
        model_id: the model that answered.
        task: the task detected (or given).
        mode: how the model was chosen (``auto``, ``manual``, ``hybrid``).
        explanation: why this model, in one line.
        request_id: the server's id for the request (on ``/events`` too).
        ttft_s: time to first token, seconds.
        tok_per_s: generation speed.
        prompt_tokens: tokens in the prompt.
        tokens: tokens generated.
        finish_reason: ``stop``, ``length``...
        notes: plain sentences that qualify the answer (a fallback, a load...).
    """

    text: str
    model_id: str
    task: str | None = None
    mode: str | None = None
    explanation: str | None = None
    request_id: str | None = None
    ttft_s: float | None = None
    tok_per_s: float | None = None
    prompt_tokens: int | None = None
    tokens: int = 0
    finish_reason: str | None = None
    total_s: float | None = None
    load_s: float | None = None
    loaded_tier: str | None = None
    notes: list[str] = field(default_factory=list)

    ok = True
    """Always True (a :class:`BatchFailure` says False)."""

    def __str__(self) -> str:
        return self.text

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> GenerationResult:
        return cls(text=str(data.get("text") or ""), model_id=str(data.get("model_id", data.get("model", ""))),
                   task=_opt_str(data.get("task")), mode=_opt_str(data.get("mode")),
                   explanation=_opt_str(data.get("explanation")), request_id=_opt_str(data.get("request_id")),
                   ttft_s=_opt_float(data.get("ttft_s")), tok_per_s=_opt_float(data.get("tok_per_s")),
                   prompt_tokens=_opt_int(data.get("prompt_tokens")), tokens=_opt_int(data.get("tokens")) or 0,
                   finish_reason=_opt_str(data.get("finish_reason")), total_s=_opt_float(data.get("total_s")),
                   load_s=_opt_float(data.get("load_s")), loaded_tier=_opt_str(data.get("loaded_tier")),
                   notes=_strs(data.get("notes")), raw=data)


@dataclass(frozen=True)
class BatchFailure(Record):
    """A batch member that failed (the rest of the batch still ran).

    Attributes:
        index: its position in the batch.
        error: what went wrong, in the operator's words.
        kind: the error's type (``ModelBusy``, ``ParameterError``...).
        model_id: the model it was routed to, when it got that far.
    """

    index: int
    error: str
    kind: str
    model_id: str | None = None

    ok = False
    """Always False (a :class:`GenerationResult` says True)."""

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> BatchFailure:
        error = data.get("error")
        if isinstance(error, Mapping):  # the seed error shape
            kind = str(error.get("type", data.get("kind", "")))
            message = str(error.get("message", ""))
        else:
            kind, message = str(data.get("kind", "")), str(error or "")
        return cls(index=_opt_int(data.get("index")) or 0, error=message, kind=kind,
                   model_id=_opt_str(data.get("model_id", data.get("model"))), raw=data)


BatchItem = GenerationResult | BatchFailure
"""One answer of :meth:`~orin_console.client.InferenceAPI.batch`: check ``item.ok``."""


def batch_item(data: Mapping[str, Any]) -> BatchItem:
    """A batch answer's member: ``ok: false`` (or an ``error`` and no ``text``) is a failure."""
    ok = data.get("ok")
    if ok is False or (ok is None and data.get("error") is not None and "text" not in data):
        return BatchFailure.from_dict(data)
    return GenerationResult.from_dict(data)


@dataclass(frozen=True)
class Routed(Record):
    """A streamed generation's first event: where it went.

    Attributes:
        request_id: the server's id for the request.
        model_id: the model that answers.
        explanation: why this model, in one line.
        will_load: the model is loaded first (expect a slower first token).
    """

    request_id: str | None
    model_id: str
    explanation: str | None
    will_load: bool

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Routed:
        return cls(request_id=_opt_str(data.get("request_id")), model_id=str(data.get("model_id", "")),
                   explanation=_opt_str(data.get("explanation")), will_load=bool(data.get("will_load", False)),
                   raw=data)


@dataclass(frozen=True)
class ServerEvent(Record):
    """One event of ``GET /events``: ``kind`` is the core's event class name
    (``ModelStateChanged``, ``LoadProgress``, ``TierUsageChanged``, ``GenerationStarted``,
    ``TokenGenerated``, ``GenerationFinished``, ``Snapshot``...); the mapping is its fields.
    """

    kind: str
    ts: float | None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> ServerEvent:
        return cls(kind=str(data.get("kind", "")), ts=_opt_float(data.get("ts")), raw=data)

    @classmethod
    def of(cls, kind: str, data: Mapping[str, Any]) -> ServerEvent:
        """The event ``kind`` with the fields ``data``."""
        return cls(kind=kind, ts=_opt_float(data.get("ts")), raw=data)
