"""``GET /system/health`` and ``GET /system/status`` (the seed's routes)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from orin_console import __version__
from orin_console.api.deps import CoreDep
from orin_console.api.serialize import sample_to_dict
from orin_console.api.state import budgets_of, telemetry_source

router = APIRouter(prefix="/system", tags=["system"])

_STARTED = time.monotonic()


class Health(BaseModel):
    """The server is up (no token needed)."""

    status: str = Field(examples=["ok"])
    version: str = Field(examples=[__version__])


@router.get("/health", response_model=Health, summary="Is the server up?")
def health() -> Health:
    """Always answers while the server runs; needs no token (for probes and load balancers)."""
    return Health(status="ok", version=__version__)


@router.get("/status", summary="Models, tiers, budgets, telemetry, uptime")
def status(core: CoreDep) -> dict[str, object]:
    """Everything the console shows at once. ``models.total`` counts the catalog; ``tiers``
    holds each tier's reserved bytes against its budget (loads in flight included);
    ``telemetry_source`` says which telemetry source is in use and, when it is a fallback, why
    and the fix (``active``, ``preferred``, ``fallback``, ``note``, ``stale``, ``sources``);
    ``budgets`` the tier budgets, the per-model maximum and the reserve."""
    system = core.manager.status()
    loaded = {tier.tier: list(tier.models) for tier in system.tiers}
    sample = core.sampler.latest() if core.sampler is not None else None
    return {
        "models": {"total": len(system.models), "loaded": loaded,
                   "states": {m.model_id: m.state.value for m in system.models}},
        "tiers": [{"tier": t.tier, "budget_bytes": t.budget, "used_bytes": t.used, "free_bytes": t.free,
                   "models": list(t.models)} for t in system.tiers],
        "memory": {"available_bytes": system.mem_available, "swap_free_bytes": system.swap_free,
                   "reserve_bytes": system.reserve},
        "telemetry": sample_to_dict(sample) if sample is not None else None,
        "telemetry_source": telemetry_source(core),
        "budgets": budgets_of(core),
        "uptime_s": round(time.monotonic() - _STARTED, 3),
    }
