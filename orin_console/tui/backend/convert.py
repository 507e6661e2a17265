"""The API's JSON back into the core's value types, for an attached console's widgets.

The server writes them with :mod:`orin_console.api.serialize`; here they become the same
:class:`ModelStatus`, :class:`SystemStatus`, :class:`Decision`, :class:`Sample`, :class:`Plan`,
:class:`Result` and events the widgets get in process. The JSON comes over the network, so
nothing is trusted: a field of the wrong type is taken as missing (its default), never an
exception that would end the event stream.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orin_console.core.catalog.store import TASKS, Catalog, CatalogEntry
from orin_console.core.engine.selection import Candidate, Selection
from orin_console.core.engine.tasks import TaskGuess
from orin_console.core.engine.types import Result
from orin_console.core.events.kinds import (
    CatalogChanged,
    Event,
    GenerationFinished,
    GenerationStarted,
    LoadProgress,
    ManagerError,
    ModelStateChanged,
    PlanChanged,
    Snapshot,
    TelemetrySample,
    TelemetrySourceChanged,
    TierUsageChanged,
)
from orin_console.core.file_facts import FileFacts as CoreFileFacts
from orin_console.core.manager.types import ModelState, ModelStatus, SystemStatus, TierUsage
from orin_console.core.memory.admission import Decision, Limit, Suggestion
from orin_console.core.placement.optimiser import MoveOutcome
from orin_console.core.placement.plan import Move, Plan
from orin_console.core.placement.usage import UsageRecord
from orin_console.core.telemetry.base import Sample
from orin_console.core.text import sanitize
from orin_console.core.tier import Tier

if TYPE_CHECKING:
    from orin_console.tui.widgets.catalog import FileFacts

__all__ = [
    "catalog", "decision", "event", "facts_from_core", "file_facts", "model_status", "move_outcome", "plan",
    "result", "sample", "system_status", "tier_usage", "usage",
]

MAX_FACT_CHARS = 64
"""The longest quantisation name kept from a server (a real one is under 16 characters)."""
MAX_PROBLEM_CHARS = 500
"""The longest problem text kept from a server."""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> bool:
    """A JSON number that means one: not a bool, not NaN or an infinity (Python's JSON reader
    takes ``NaN`` and ``Infinity``, and ``int()`` of them raises)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _int(value: Any, default: int = 0) -> int:
    return int(value) if _number(value) else default


def _opt_int(value: Any) -> int | None:
    return int(value) if _number(value) else None


def _opt_float(value: Any) -> float | None:
    return float(value) if _number(value) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list | tuple) else ()


def _tier(value: Any, default: str = "disk") -> str:
    return value if value in ("ram", "swap", "disk") else default


def model_status(data: Any) -> ModelStatus:
    """A ``model_status_to_dict`` object (or the API's ModelInfo, which shares its fields)."""
    d = _map(data)
    try:
        state = ModelState(_str(d.get("state")))
    except ValueError:
        state = ModelState.UNLOADED
    return ModelStatus(
        model_id=_str(d.get("model_id"), _str(d.get("id"))), state=state, tier=_tier(d.get("tier")),
        target_tier=_opt_str(d.get("target_tier")), preferred_tier=_tier(d.get("preferred_tier"), "swap"),
        pin=d.get("pin") is True, resident=_opt_str(d.get("resident")), progress=_opt_float(d.get("progress")),
        pid=_opt_int(d.get("pid")), predicted_bytes=_opt_int(d.get("predicted_bytes")),
        prediction=_opt_str(d.get("prediction")), measured_bytes=_opt_int(d.get("measured_bytes")),
        prediction_error=_opt_float(d.get("prediction_error")), load_seconds=_opt_float(d.get("load_seconds")),
        move_seconds_per_gb=_opt_float(d.get("move_seconds_per_gb")), error=_opt_str(d.get("error")),
        busy=d.get("busy") is True, queued=_int(d.get("queued")), notes=_strs(d.get("notes")))


def tier_usage(data: Any) -> TierUsage:
    d = _map(data)
    return TierUsage(tier=_str(d.get("tier")), budget=_int(d.get("budget_bytes")), used=_int(d.get("used_bytes")),
                     models=_strs(d.get("models")), in_flight=_strs(d.get("in_flight")))


def system_status(data: Any) -> SystemStatus:
    """A ``system_status_to_dict`` object (a Snapshot's ``status``)."""
    d = _map(data)
    memory = _map(d.get("memory"))
    models, tiers = _list(d.get("models")), _list(d.get("tiers"))
    return SystemStatus(models=tuple(model_status(m) for m in models if isinstance(m, Mapping)),
                        tiers=tuple(tier_usage(t) for t in tiers if isinstance(t, Mapping)),
                        mem_available=_int(memory.get("available_bytes")),
                        swap_free=_int(memory.get("swap_free_bytes")), reserve=_int(memory.get("reserve_bytes")))


def decision(data: Any) -> Decision:
    """A ``decision_to_dict`` object (``GET /models/{id}/plan``)."""
    d = _map(data)
    limits = tuple(Limit(name=_str(x.get("name")), needed=_int(x.get("needed")),
                         available=_int(x.get("available")), text=_str(x.get("text")))
                   for x in d.get("limits") or () if isinstance(x, Mapping))
    suggestions = tuple(Suggestion(action=_str(x.get("action")), model_id=_str(x.get("model_id")),
                                   from_tier=_str(x.get("from_tier")), to_tier=_opt_str(x.get("to_tier")),
                                   helps=x.get("helps") is True, text=_str(x.get("text")))
                        for x in d.get("suggestions") or () if isinstance(x, Mapping))
    return Decision(
        ok=d.get("ok") is True, model_id=_str(d.get("model_id")), tier=_tier(d.get("tier")),
        action=_str(d.get("action"), "load"),
        needed={str(k): _int(v) for k, v in _map(d.get("needed")).items()},
        free={str(k): _int(v) for k, v in _map(d.get("free")).items()}, limits=limits,
        reasons=_strs(d.get("reasons")), suggestions=suggestions, together=_strs(d.get("together")),
        pinned=_strs(d.get("pinned")), strategy=_opt_str(d.get("strategy")), frees=_int(d.get("frees")),
        from_tier=_opt_str(d.get("from_tier")), summary=_str(d.get("summary")))


_SAMPLE_NUMBERS = ("mem_total", "mem_used", "mem_available", "mem_gpu_shared", "gpu_mem_total", "gpu_mem_used",
                   "swap_total", "swap_used", "gpu_freq_hz", "gpu_freq_max_hz", "emc_freq_hz", "fan_rpm",
                   "nvpmodel_id")
_SAMPLE_FLOATS = ("cpu_percent", "gpu_load", "emc_load", "power_w", "fan_percent")


def sample(data: Any, *, now: float | None = None) -> Sample:
    """A ``sample_to_dict`` object. The server's monotonic clock means nothing here: ``mono``
    is rebuilt from the sample's ``age_s`` against this machine's ``time.monotonic()``."""
    d = _map(data)
    mono_now = time.monotonic() if now is None else now
    age = _opt_float(d.get("age_s")) or 0.0
    fields: dict[str, Any] = {name: _opt_int(d.get(name)) for name in _SAMPLE_NUMBERS}
    fields.update({name: _opt_float(d.get(name)) for name in _SAMPLE_FLOATS})
    cores = _list(d.get("cpu_per_core"))
    procs = d.get("gpu_process_bytes")
    return Sample(
        source=_str(d.get("source"), "?"), mono=mono_now - max(0.0, age), wall=_opt_float(d.get("wall")) or 0.0,
        stale_after_s=_opt_float(d.get("stale_after_s")) or 3.0, **fields,
        cpu_per_core=tuple(_opt_float(c) for c in cores), gpu_name=_opt_str(d.get("gpu_name")),
        temperatures={str(k): float(v) for k, v in _map(d.get("temperatures")).items() if _opt_float(v) is not None},
        power_rails_w={str(k): float(v) for k, v in _map(d.get("power_rails_w")).items()
                       if _opt_float(v) is not None},
        nvpmodel=_opt_str(d.get("nvpmodel")),
        jetson_clocks=d.get("jetson_clocks") if isinstance(d.get("jetson_clocks"), bool) else None,
        gpu_process_bytes=None if not isinstance(procs, Mapping) else
        {int(k): _int(v) for k, v in procs.items() if str(k).isdecimal() and len(str(k)) <= 10},
        notes=_strs(d.get("notes")))


def _move(data: Any) -> Move:
    d = _map(data)
    return Move(model_id=_str(d.get("model_id")), from_tier=_tier(d.get("from_tier")),
                to_tier=_tier(d.get("to_tier")), reason=_str(d.get("reason")))


def plan(data: Any) -> tuple[Plan, dict[str, str]]:
    """A ``plan_to_dict`` object: the plan and ``current`` (where each model is now)."""
    d = _map(data)
    placements = {str(k): _tier(v) for k, v in _map(d.get("placements")).items()}
    tiers = ("ram", "swap")
    used = {t: _int(_map(d.get("used")).get(t)) for t in tiers}
    budgets = {t: _int(_map(d.get("budgets")).get(t)) for t in tiers}
    moves = _list(d.get("moves"))
    built = Plan(placements=placements, reasons={str(k): _str(v) for k, v in _map(d.get("reasons")).items()},
                 moves=tuple(_move(m) for m in moves if isinstance(m, Mapping)), used=used, budgets=budgets,
                 since={}, created=_opt_float(d.get("created")) or 0.0)
    return built, {str(k): _tier(v) for k, v in _map(d.get("current")).items()}


def move_outcome(data: Any) -> MoveOutcome:
    """An ``outcome_to_dict`` object."""
    d = _map(data)
    return MoveOutcome(_move(d), _str(d.get("status"), "failed"), _str(d.get("detail")),
                       _opt_float(d.get("seconds")) or 0.0)


def catalog(models: Any, path: Path) -> Catalog:
    """The catalog as ``GET /models/list`` shows it (its ``file``, tasks, tier, context and pin
    per model; fields it does not show keep their defaults). ``path`` names where it came from."""
    entries = []
    for m in models if isinstance(models, list) else ():
        d = _map(m)
        tasks: Any = tuple(t for t in _strs(d.get("tasks")) if t in TASKS) or ("chat",)  # Task literals
        try:
            entries.append(CatalogEntry(
                id=_str(d.get("id")), path=_str(d.get("file")) or "?", tasks=tasks,
                tier=Tier(_tier(d.get("preferred_tier"), "swap")), context=_int(d.get("context"), 2048),
                pin=d.get("pin") is True))
        except ValueError:  # an id or a context the catalog would refuse: not shown
            continue
    return Catalog(path, entries)


def usage(models: Any) -> dict[str, UsageRecord]:
    """Each model's usage figures as ``GET /models/list`` shows them."""
    out: dict[str, UsageRecord] = {}
    for m in models if isinstance(models, list) else ():
        d = _map(m)
        if isinstance(d.get("id"), str):
            out[d["id"]] = UsageRecord(requests=_int(d.get("requests")), tok_per_s=_opt_float(d.get("tok_per_s")))
    return out


def result(data: Any, *, model_id: str = "", mode: str = "auto") -> Result:
    """A ``result_to_dict`` object (a stream's ``done``)."""
    d = _map(data)
    mid = _str(d.get("model_id"), _str(d.get("model"), model_id))
    task: Any = _str(d.get("task"), "chat")  # a Task literal, as the server named it
    reasons = _strs(d.get("reasons"))
    mode_name: Any = _str(d.get("mode"), mode)
    guess = TaskGuess(task, _opt_float(d.get("task_confidence")) or 0.0,
                      _strs(d.get("task_reasons")), {})
    why = reasons[0] if reasons else ""
    runner_up = _opt_str(d.get("runner_up"))
    selection = Selection(model_id=mid, task=task, mode=mode_name,
                          score=0.0, runner_up=runner_up, runner_up_score=None, reasons=reasons,
                          explanation=_str(d.get("explanation")), candidates=(Candidate(mid, 0.0, why),),
                          guess=guess)
    return Result(text=_str(d.get("text")), model_id=mid, task=task, selection=selection,
                  ttft_s=_opt_float(d.get("ttft_s")), tok_per_s=_opt_float(d.get("tok_per_s")),
                  prompt_tokens=_int(d.get("prompt_tokens")), tokens=_int(d.get("tokens")),
                  finish_reason=_str(d.get("finish_reason"), "stop"), total_s=_opt_float(d.get("total_s")) or 0.0,
                  elapsed_s=_opt_float(d.get("elapsed_s")) or 0.0, load_s=_opt_float(d.get("load_s")),
                  loaded_tier=_opt_str(d.get("loaded_tier")), prompt_format=_str(d.get("prompt_format"), "raw"),
                  notes=_strs(d.get("notes")), request_id=_opt_str(d.get("request_id")))


def event(kind: str, data: Any) -> Event | None:
    """The core event for one ``GET /events`` frame (None: a kind the console does not show)."""
    d = _map(data)
    ts = {"ts": _opt_float(d.get("ts")) or time.time()}
    mid = _str(d.get("model_id"))
    match kind:
        case "ModelStateChanged":
            return ModelStateChanged(mid, model_status(d.get("status")), **ts)
        case "TierUsageChanged":
            tiers = _list(d.get("tiers"))
            return TierUsageChanged(tuple(tier_usage(t) for t in tiers), **ts)
        case "LoadProgress":
            return LoadProgress(mid, _str(d.get("tier")), _opt_float(d.get("fraction")) or 0.0, **ts)
        case "TelemetrySample":
            return TelemetrySample(sample(d.get("sample")), **ts)
        case "TelemetrySourceChanged":
            return TelemetrySourceChanged(_opt_str(d.get("previous")), _opt_str(d.get("current")),
                                          _str(d.get("reason")), _opt_str(d.get("fix")), **ts)
        case "ManagerError":
            return ManagerError(_str(d.get("message")), _opt_str(d.get("model_id")), kind=_opt_str(d.get("kind")), **ts)
        case "PlanChanged":
            return PlanChanged(plan(d.get("plan"))[0], **ts)
        case "CatalogChanged":
            return CatalogChanged(_strs(d.get("model_ids")), **ts)
        case "GenerationStarted":
            return GenerationStarted(_str(d.get("request_id")), _str(d.get("source")), mid,
                                     explanation=_opt_str(d.get("explanation")), **ts)
        case "GenerationFinished":
            return GenerationFinished(_str(d.get("request_id")), mid, _int(d.get("tokens")),
                                      _opt_float(d.get("ttft_s")), _opt_float(d.get("tok_per_s")),
                                      _str(d.get("finish_reason")), _opt_str(d.get("error")), **ts)
        case "Snapshot":
            status = d.get("status")
            return Snapshot(system_status(status) if isinstance(status, Mapping) else None,
                            _str(d.get("reason"), "subscribed"), _int(d.get("dropped")),
                            _opt_str(d.get("error")), **ts)
    return None


def _fact_text(value: Any, limit: int) -> str | None:
    """A text from outside, sanitised and cut to ``limit`` characters (None: not a text, or empty)."""
    if not isinstance(value, str) or not value:
        return None
    text = sanitize(value[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fact_count(value: Any) -> int | None:
    """A size: a non-negative JSON integer (a float, a bool, a string or a negative is unknown)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _widget_facts(size: Any, quantization: Any, problem: Any) -> FileFacts:
    from orin_console.tui.widgets.catalog import FileFacts

    return FileFacts(_fact_count(size), _fact_text(quantization, MAX_FACT_CHARS),
                     _fact_text(problem, MAX_PROBLEM_CHARS))


def facts_from_core(facts: CoreFileFacts) -> FileFacts:
    """The catalog table's facts of one file, from the core's (the in-process console)."""
    return _widget_facts(facts.file_size, facts.quantization, facts.problem)


def file_facts(models: Any) -> dict[str, FileFacts]:
    """Each model's file facts as ``GET /models/list`` shows them (``facts`` of each ModelInfo:
    ``file_size``, ``quantization``, ``problem``), by id. Nothing is trusted: a field of another
    type is a missing fact; a model without ``facts`` (an older server) has none."""
    out: dict[str, FileFacts] = {}
    for m in models if isinstance(models, list) else ():
        d = _map(m)
        mid = d.get("id")
        if isinstance(mid, str):
            f = _map(d.get("facts"))
            out[mid] = _widget_facts(f.get("file_size"), f.get("quantization"), f.get("problem"))
    return out
