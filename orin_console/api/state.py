"""What a console needs besides the manager's status, as JSON: the telemetry source and its
fallback note, the budgets, the catalog entries, usage per model, and the extras a ``Snapshot``
on ``GET /events`` carries so a console that attaches late can draw everything at once.

``GET /system/status`` and ``GET /events?snapshot=1`` both use these, so the two agree.
"""

from __future__ import annotations

from typing import Any

from orin_console.api.facts import catalog_facts
from orin_console.api.serialize import plan_to_dict, sample_to_dict, to_jsonable, usage_to_dict
from orin_console.core import Core
from orin_console.core.text import sanitize

__all__ = ["SNAPSHOT_HISTORY", "budgets_of", "catalog_of", "snapshot_extras", "telemetry_source", "usage_of"]

SNAPSHOT_HISTORY = 120
"""Telemetry samples a snapshot carries for the sparklines (the newest last)."""


def telemetry_source(core: Core) -> dict[str, Any]:
    """``{"active", "preferred", "fallback", "note", "stale", "sources"}``.

    ``active``: the source the newest sample came from (None before the first, or with telemetry
    off); ``preferred``: the first source in the order of preference; ``fallback``: true when a
    better source than the active one is not in use; ``note``: why, with the fix, one line per
    better source (``"jtop: <reason> (fix: <fix>)"``, joined by ``"; "``; empty when not a
    fallback); ``stale``: no sample, or the newest is too old; ``sources``: each source's
    ``{"name", "state", "reason", "fix", "retry_in_s"}`` in order of preference (``state``:
    ``active``, ``standby``, ``retrying``, ``unavailable``, ``closed`` or ``untried``).
    """
    sampler = core.sampler
    if sampler is None:
        return {"active": None, "preferred": None, "fallback": False,
                "note": "telemetry is off (the server was started without a sampler)", "stale": True, "sources": []}
    statuses = sampler.status()
    active = sampler.active_source
    names = [s.name for s in statuses]
    rank = names.index(active) if active in names else len(names)
    better = [s for s in statuses[:rank] if s.state != "active"]
    note = "; ".join(f"{s.name}: {s.reason or s.state}" + (f" (fix: {s.fix})" if s.fix else "") for s in better)
    return {
        "active": active, "preferred": names[0] if names else None, "fallback": bool(better),
        "note": sanitize(note), "stale": sampler.is_stale(),
        "sources": [{"name": s.name, "state": s.state, "reason": sanitize(s.reason) if s.reason else None,
                     "fix": sanitize(s.fix) if s.fix else None, "retry_in_s": to_jsonable(s.retry_in_s)}
                    for s in statuses],
    }


def budgets_of(core: Core) -> dict[str, int]:
    """``{"ram", "swap", "max_model", "reserve"}`` in bytes."""
    budgets = core.manager.budgets
    return {"ram": budgets.ram, "swap": budgets.swap, "max_model": budgets.max_model, "reserve": budgets.reserve}


def catalog_of(core: Core) -> list[dict[str, Any]]:
    """Every catalog entry with all its fields (``id``, ``path``, ``tasks``, ``tier``,
    ``context``, ``priority``, ``pin``, ``sha256``...) and ``facts``, its file's header facts
    (:func:`~orin_console.api.facts.facts_to_dict`), in catalog order."""
    catalog = core.manager.catalog
    facts = catalog_facts(core, catalog)
    out: list[dict[str, Any]] = to_jsonable([{**entry.model_dump(mode="json"), "facts": facts.get(entry.id)}
                                             for entry in catalog])
    return out


def usage_of(core: Core) -> dict[str, dict[str, Any]]:
    """Model id -> its usage figures (:func:`~orin_console.api.serialize.usage_to_dict`)."""
    return {sanitize(mid): usage_to_dict(record) for mid, record in core.manager.usage.snapshot().items()}


def snapshot_extras(core: Core) -> dict[str, Any]:
    """What a ``Snapshot`` carries besides the system status: ``catalog``, ``usage``,
    ``budgets``, ``telemetry`` (the newest sample or None), ``telemetry_history`` (up to
    :data:`SNAPSHOT_HISTORY` samples, oldest first), ``telemetry_source`` and ``plan`` (the
    optimiser's latest plan, or None before its first round)."""
    sampler = core.sampler
    latest = sampler.latest() if sampler is not None else None
    history = sampler.history(SNAPSHOT_HISTORY) if sampler is not None else []
    plan = core.optimiser.latest if core.optimiser is not None else None
    return {
        "catalog": catalog_of(core), "usage": usage_of(core), "budgets": budgets_of(core),
        "telemetry": sample_to_dict(latest) if latest is not None else None,
        "telemetry_history": [sample_to_dict(s) for s in history],
        "telemetry_source": telemetry_source(core),
        "plan": plan_to_dict(plan) if plan is not None else None,
    }
