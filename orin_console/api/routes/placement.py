"""The usage-based placement plan: ``GET /placement/plan`` and ``POST /placement/apply``.

The plan is the one every console shows (:func:`orin_console.core.placement.current.current_plan`):
the optimiser's latest, or a fresh one. Applying recomputes it the same way, keeps the moves
named (all of them by default) and carries them out one at a time through the core's own apply
(each re-checked and asked of admission; a move that does not fit now is ``refused`` and the rest
go on). One apply at a time per server: a second while one runs is a 409.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from orin_console.api.deps import CoreDep, app_state
from orin_console.api.errors import error_body
from orin_console.api.placement_schemas import ApplyRequest, ApplyResponse, PlacementPlan
from orin_console.api.schemas import ERROR_RESPONSES
from orin_console.api.serialize import outcome_to_dict, plan_to_dict
from orin_console.core.placement.current import NoSuchMove, apply_plan, current_plan, select_moves

router = APIRouter(prefix="/placement", tags=["placement"])

APPLY_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: ERROR_RESPONSES[status] for status in (400, 401, 409, 413, 422, 503)}


@router.get("/plan", response_model=PlacementPlan, responses={s: ERROR_RESPONSES[s] for s in (400, 401, 503)},
            summary="The usage-based placement plan and its moves")
def get_plan(core: CoreDep) -> dict[str, Any]:
    """Where the plan puts every model and why, each tier's use against its budget, the moves from
    where the models are now (each with its one-line `text`), and `current` (where each is now).
    Nothing is changed; the optimiser may publish `PlanChanged` on `/events`."""
    plan, now = current_plan(core)
    return plan_to_dict(plan, now)


@router.post("/apply", response_model=ApplyResponse, responses=APPLY_RESPONSES,
             summary="Apply the plan: every move, or the moves of the models named")
def apply(request: Request, core: CoreDep, body: ApplyRequest | None = None) -> Any:
    """Moves run one after another in the plan's safe order (unloads, demotions, promotions,
    loads); each outcome is `done`, `skipped` (busy, in transition, stale), `refused` (admission:
    it does not fit now) or `failed`. Returns when the last move has ended. A model named in
    `model_ids` without a move in the plan is a 422; an apply while another runs is a 409."""
    lock = app_state(request.app, "orin_placement_apply", threading.Lock)
    if not lock.acquire(blocking=False):
        return JSONResponse(error_body("ApplyInProgress", "the placement plan is being applied already; wait "
                                       "for it to end (watch ModelStateChanged on /events), then fetch the plan "
                                       "again"), status_code=409)
    try:
        plan, now = current_plan(core)
        try:
            chosen = select_moves(plan, body.model_ids if body is not None else None)
        except NoSuchMove as exc:
            return JSONResponse(error_body("NoSuchMove", str(exc), field="model_ids"), status_code=422)
        outcomes = apply_plan(core.manager, chosen)
    finally:
        lock.release()
    return {"plan": plan_to_dict(chosen, now), "outcomes": [outcome_to_dict(o) for o in outcomes],
            "done": sum(o.ok for o in outcomes), "total": len(outcomes)}
