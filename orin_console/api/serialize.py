"""The core's values as JSON: events, model status, tier usage, decisions, telemetry, results.

Every front end over HTTP (the seed routes, ``/events``, the OpenAI-compatible routes, the
metrics) turns core objects into JSON here, so one model looks the same everywhere.

Rules:
- Every text that can hold outside text (names, notes, errors, explanations, reasons) goes
  through :func:`orin_console.core.text.sanitize` (multi-line kept). Generated text
  (``TokenGenerated.text``, ``Result.text``) is data: JSON escapes it, and it is left as the
  model wrote it.
- Floats that are not finite become ``None`` (JSON has no NaN).
- Enums become their values; tuples become lists; mapping keys become strings.

Public functions (others import them): :func:`event_to_dict` (``(kind, data)`` for SSE: the
class name and its fields), :func:`model_status_to_dict`, :func:`model_info`,
:func:`tier_usage_to_dict`, :func:`system_status_to_dict`, :func:`decision_to_dict`,
:func:`sample_to_dict`, :func:`result_to_dict`, :func:`usage_to_dict`, :func:`to_jsonable`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

from orin_console.core.events.kinds import (
    Event,
    GenerationStarted,
    ModelStateChanged,
    PlanChanged,
    Snapshot,
    TelemetrySample,
    TierUsageChanged,
    TokenGenerated,
)
from orin_console.core.manager.types import ModelStatus, SystemStatus, TierUsage
from orin_console.core.memory.admission import Decision
from orin_console.core.placement.optimiser import MoveOutcome
from orin_console.core.placement.plan import Move, Plan
from orin_console.core.telemetry.base import Sample
from orin_console.core.text import sanitize, sanitize_path

if TYPE_CHECKING:
    from orin_console.core.catalog.store import CatalogEntry
    from orin_console.core.manager.preview import Verdict
    from orin_console.core.placement.usage import UsageRecord

__all__ = [
    "decision_to_dict", "event_to_dict", "model_info", "model_status_to_dict", "outcome_to_dict", "plan_to_dict",
    "preview_to_dict", "result_to_dict", "sample_to_dict", "system_status_to_dict", "tier_usage_to_dict", "to_jsonable",
    "usage_to_dict",
]

_MAX_DEPTH = 12


def _text(value: str) -> str:
    return sanitize(value, multiline=True)


def to_jsonable(value: Any, *, _depth: int = 0) -> Any:
    """A JSON-ready form of any core value (dataclasses, pydantic models, enums, mappings,
    sequences); strings sanitised, non-finite floats as None; anything else as sanitised
    ``str``. Bounded depth (deeper values become their ``str``)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Enum):
        return to_jsonable(value.value, _depth=_depth)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if _depth >= _MAX_DEPTH:
        return _text(str(value))
    depth = _depth + 1
    if isinstance(value, ModelStatus):
        return model_status_to_dict(value)
    if isinstance(value, TierUsage):
        return tier_usage_to_dict(value)
    if isinstance(value, SystemStatus):
        return system_status_to_dict(value)
    if isinstance(value, Decision):
        return decision_to_dict(value)
    if isinstance(value, Sample):
        return sample_to_dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name), _depth=depth)
                for f in dataclasses.fields(value) if not f.name.startswith("_")}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return to_jsonable(model_dump(), _depth=depth)
    if isinstance(value, Mapping):
        return {_text(str(k)): to_jsonable(v, _depth=depth) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v, _depth=depth) for v in value]
    return _text(str(value))


def model_status_to_dict(status: ModelStatus) -> dict[str, Any]:
    """A model's status: every field of :class:`ModelStatus` (``model_id``, ``state``, ``tier``,
    ``target_tier``, ``progress``, ``predicted_bytes``, ``measured_bytes``, ``error``,
    ``notes``...)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(status):
        out[f.name] = to_jsonable(getattr(status, f.name), _depth=1)
    return out


def tier_usage_to_dict(usage: TierUsage) -> dict[str, Any]:
    """``{"tier", "budget_bytes", "used_bytes", "free_bytes", "models", "in_flight"}``."""
    return {"tier": usage.tier, "budget_bytes": usage.budget, "used_bytes": usage.used,
            "free_bytes": usage.free, "models": [_text(m) for m in usage.models],
            "in_flight": [_text(m) for m in usage.in_flight]}


def system_status_to_dict(status: SystemStatus) -> dict[str, Any]:
    """``{"models": [status], "tiers": [usage], "memory": {...}}``."""
    return {"models": [model_status_to_dict(m) for m in status.models],
            "tiers": [tier_usage_to_dict(t) for t in status.tiers],
            "memory": {"available_bytes": status.mem_available, "swap_free_bytes": status.swap_free,
                       "reserve_bytes": status.reserve}}


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """A plan's verdict, itemised: ``{"ok", "model_id", "tier", "action", "summary",
    "explanation", "reasons", "suggestions", "together", "pinned", "needed", "free", "limits",
    "strategy", "frees", "from_tier"}``. ``suggestions`` are objects ``{"action", "model_id",
    "from_tier", "to_tier", "helps", "text"}``."""
    return {
        "ok": decision.ok,
        "model_id": _text(decision.model_id),
        "tier": decision.tier,
        "action": decision.action,
        "summary": _text(decision.summary),
        "explanation": _text(decision.explain()),
        "reasons": [_text(r) for r in decision.reasons],
        "suggestions": [{"action": s.action, "model_id": _text(s.model_id), "from_tier": s.from_tier,
                         "to_tier": s.to_tier, "helps": s.helps, "text": _text(s.text)}
                        for s in decision.suggestions],
        "together": [_text(m) for m in decision.together],
        "pinned": [_text(m) for m in decision.pinned],
        "needed": {str(k): int(v) for k, v in decision.needed.items()},
        "free": {str(k): int(v) for k, v in decision.free.items()},
        "limits": [{"name": lim.name, "needed": lim.needed, "available": lim.available, "ok": lim.ok,
                    "text": _text(lim.text)} for lim in decision.limits],
        "strategy": decision.strategy,
        "frees": decision.frees,
        "from_tier": decision.from_tier,
    }


def move_to_dict(move: Move) -> dict[str, Any]:
    """``{"model_id", "kind", "from_tier", "to_tier", "reason", "text"}`` (``text``: the move's
    one-line ``describe()``)."""
    return {"model_id": _text(move.model_id), "kind": move.kind, "from_tier": move.from_tier,
            "to_tier": move.to_tier, "reason": _text(move.reason), "text": _text(move.describe())}


def plan_to_dict(plan: Plan, current: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A placement plan: ``{"placements", "reasons", "moves", "used", "budgets", "fits", "created",
    "policy", "explanation"}`` plus ``"current"`` (model id -> tier now) when given. ``moves`` are
    :func:`move_to_dict` objects in the order they are safe to make."""
    out: dict[str, Any] = {
        "placements": {_text(k): v for k, v in plan.placements.items()},
        "reasons": {_text(k): _text(v) for k, v in plan.reasons.items()},
        "moves": [move_to_dict(m) for m in plan.moves],
        "used": {str(k): int(v) for k, v in plan.used.items()},
        "budgets": {str(k): int(v) for k, v in plan.budgets.items()},
        "fits": {str(k): bool(v) for k, v in plan.fits.items()},
        "created": to_jsonable(plan.created),
        "policy": _text(plan.policy.describe()),
        "explanation": _text(plan.explain()),
    }
    if current is not None:
        out["current"] = {_text(k): v for k, v in current.items()}
    return out


def outcome_to_dict(outcome: MoveOutcome) -> dict[str, Any]:
    """What happened to one move: the move's fields (:func:`move_to_dict`) with ``status``
    (``done``, ``skipped``, ``refused`` or ``failed``), ``ok``, ``detail``, ``seconds`` and
    ``outcome`` (the outcome's one-line ``describe()``)."""
    return {**move_to_dict(outcome.move), "status": outcome.status, "ok": outcome.ok,
            "detail": _text(outcome.detail), "seconds": to_jsonable(round(outcome.seconds, 3)),
            "outcome": _text(outcome.describe())}


def preview_to_dict(verdict: Verdict) -> dict[str, Any]:
    """What adding a path would do (``Manager.preview_add``): ``{"dry_run": true, "path",
    "addable", "entries": [ProposedModel], "refused": [{"path", "reason"}]}``; each entry is its
    proposed catalog fields, ``file``, ``load_tier``, ``header``, ``prediction``, ``problem``,
    ``admission`` (tier -> :func:`decision_to_dict`) and ``fits`` (tier -> bool)."""
    entries = []
    for item in verdict.accepted:
        entry, info, pred = item.entry, item.info, item.prediction
        entries.append({
            "id": _text(entry.id), "path": sanitize_path(entry.path), "file": sanitize_path(item.file),
            "tasks": [str(t) for t in entry.tasks], "tier": str(entry.tier), "context": entry.context,
            "load_tier": pred.tier if pred is not None else str(entry.tier),
            "header": {"version": info.version, "architecture": _text(info.architecture),
                       "quantization": _text(info.quantization), "n_params": info.n_params,
                       "file_size": info.file_size, "context_length": info.context_length,
                       "chat_template": info.chat_template is not None},
            "prediction": None if pred is None else {"tier": pred.tier, "total_bytes": pred.total,
                                                     "text": _text(pred.describe())},
            "problem": _text(item.problem) if item.problem else None,
            "admission": {tier: decision_to_dict(d) for tier, d in item.decisions.items()},
            "fits": {tier: d.ok for tier, d in item.decisions.items()},
        })
    return {"dry_run": True, "path": sanitize_path(verdict.path), "addable": verdict.addable, "entries": entries,
            "refused": [{"path": sanitize_path(r.path), "reason": _text(r.reason)} for r in verdict.refused]}


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    """A telemetry sample (:meth:`Sample.to_dict`, with ``age_s`` and ``stale``), JSON-safe."""
    out: dict[str, Any] = to_jsonable(sample.to_dict(), _depth=1)
    return out


def usage_to_dict(record: UsageRecord) -> dict[str, Any]:
    """A model's usage figures: ``{"requests", "tokens", "recent", "last_used", "ttft_s",
    "tok_per_s"}`` (``recent``: requests decayed with the usage half-life)."""
    return {"requests": record.requests, "tokens": record.tokens, "recent": to_jsonable(round(record.count, 3)),
            "last_used": record.last_used or None, "ttft_s": to_jsonable(record.ttft_s),
            "tok_per_s": to_jsonable(record.tok_per_s)}


def model_info(status: ModelStatus, entry: CatalogEntry | None, usage: UsageRecord | None = None,
               facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The API's ModelInfo: ``{"id", "file", "tasks", "preferred_tier", "tier", "state",
    "pin", "progress", "predicted_bytes", "measured_bytes", "resident", "error", "requests",
    "tok_per_s", "notes"}`` plus ``target_tier``, ``busy``, ``queued``, ``context``, ``facts``.

    Args:
        status: the manager's status of the model.
        entry: its catalog entry (None: ``file``/``tasks`` unknown, e.g. just removed).
        usage: its usage record (None: no requests yet).
        facts: its file's header facts (:func:`orin_console.api.facts.facts_to_dict`; None:
            unknown, e.g. the entry was just removed).
    """
    return {
        "id": _text(status.model_id),
        "file": _text(entry.path) if entry is not None else None,
        "tasks": [str(t) for t in entry.tasks] if entry is not None else [],
        "context": entry.context if entry is not None else None,
        "preferred_tier": status.preferred_tier,
        "tier": status.tier,
        "target_tier": status.target_tier,
        "state": status.state.value,
        "pin": status.pin,
        "progress": to_jsonable(status.progress),
        "predicted_bytes": status.predicted_bytes,
        "measured_bytes": status.measured_bytes,
        "resident": status.resident,
        "error": _text(status.error) if status.error else None,
        "busy": status.busy,
        "queued": status.queued,
        "requests": usage.requests if usage is not None else 0,
        "tok_per_s": to_jsonable(usage.tok_per_s) if usage is not None else None,
        "notes": [_text(n) for n in status.notes],
        "facts": dict(facts) if facts is not None else None,
    }


def result_to_dict(result: Any) -> dict[str, Any]:
    """A generation's answer: the engine's ``Result.to_dict()`` (``model`` names the model),
    with ``model_id`` too (the same value), texts sanitised except the generated ``text``."""
    raw: dict[str, Any] = result.to_dict()
    text = raw.pop("text", None)
    out: dict[str, Any] = to_jsonable(raw, _depth=1)
    out["text"] = text
    if "model" in out and "model_id" not in out:
        out["model_id"] = out["model"]
    return out


def event_to_dict(event: Event) -> tuple[str, dict[str, Any]]:
    """``(kind, data)`` for an SSE frame: the event's class name and its fields as JSON.

    ``ModelStateChanged.status`` is a model status dict; ``TierUsageChanged.tiers`` a list of
    tier usages; ``Snapshot.status`` a system status; ``TelemetrySample.sample`` a sample;
    ``GenerationStarted.route`` is dropped (``explanation`` says it in one line);
    ``PlanChanged.plan`` is :func:`plan_to_dict` (moves with their ``text``);
    ``TokenGenerated.text`` is the model's text as written. Every event has ``ts``.
    """
    kind = type(event).__name__
    data: dict[str, Any]
    if isinstance(event, TokenGenerated):
        data = {"request_id": event.request_id, "model_id": _text(event.model_id), "text": event.text}
    elif isinstance(event, ModelStateChanged):
        data = {"model_id": _text(event.model_id), "status": model_status_to_dict(event.status)}
    elif isinstance(event, TierUsageChanged):
        data = {"tiers": [tier_usage_to_dict(t) for t in event.tiers]}
    elif isinstance(event, TelemetrySample):
        data = {"sample": sample_to_dict(event.sample)}
    elif isinstance(event, Snapshot):
        status = event.status
        data = {"status": system_status_to_dict(status) if isinstance(status, SystemStatus)
                else to_jsonable(status, _depth=1),
                "reason": event.reason, "dropped": event.dropped,
                "error": _text(event.error) if event.error else None}
    elif isinstance(event, GenerationStarted):
        data = {"request_id": event.request_id, "source": event.source, "model_id": _text(event.model_id),
                "explanation": _text(event.explanation) if event.explanation else None}
    elif isinstance(event, PlanChanged):
        plan = event.plan
        data = {"plan": plan_to_dict(plan) if isinstance(plan, Plan) else
                {name: to_jsonable(getattr(plan, name, None), _depth=1)
                 for name in ("placements", "reasons", "moves", "used", "budgets", "created")}}
    else:
        data = {f.name: to_jsonable(getattr(event, f.name), _depth=1)
                for f in dataclasses.fields(event) if f.name != "ts"}
    data["ts"] = to_jsonable(event.ts)
    return kind, data
