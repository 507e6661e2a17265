"""Request and response shapes of the placement routes (``/placement/plan``, ``/placement/apply``);
the conventions are :mod:`orin_console.api.schemas`'."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orin_console.api.schemas import ModelId, Strict

__all__ = ["ApplyRequest", "ApplyResponse", "MoveOutcome", "PlacementMove", "PlacementPlan"]


class ApplyRequest(Strict):
    """Apply the placement plan: all its moves, or only those of the models named."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{}, {"model_ids": ["qwen-0.5b"]}]})

    model_ids: list[ModelId] | None = Field(None, min_length=1, max_length=256,
                                            description="Apply only these models' moves (default: every move). "
                                                        "A model without a move in the plan is a 422.")


class PlacementMove(BaseModel):
    """One move of the placement plan."""

    model_id: str
    kind: Literal["unload", "demote", "promote", "load"]
    from_tier: str
    to_tier: str
    reason: str
    text: str = Field(description="The move in one line (`promote beta swap → ram: ...`).")


class PlacementPlan(BaseModel):
    """Where the usage-based plan puts every model, why, and the moves from where they are now."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "placements": {"alpha": "ram", "beta": "disk"},
        "reasons": {"alpha": "3.00 recent requests; fits ram (120 MB; ram then holds 120 MB of 4.0 GB)",
                    "beta": "0.00 recent requests (decayed); 0.5 needed to be loaded"},
        "moves": [{"model_id": "alpha", "kind": "load", "from_tier": "disk", "to_tier": "ram",
                   "reason": "3.00 recent requests; fits ram (120 MB; ram then holds 120 MB of 4.0 GB)",
                   "text": "load alpha disk → ram: 3.00 recent requests; fits ram (...)"}],
        "used": {"ram": 120000000, "swap": 0}, "budgets": {"ram": 4000000000, "swap": 8000000000},
        "fits": {"ram": True, "swap": True}, "created": 1767225600.0,
        "policy": "loaded from 0.5 recent requests, kept down to 0.25; incumbents +25% +1; dwell 10 min",
        "explanation": "Placement plan (...)", "current": {"alpha": "disk", "beta": "disk"}}]})

    placements: dict[str, str] = Field(description="Model id -> `ram`, `swap` or `disk`.")
    reasons: dict[str, str] = Field(description="Model id -> why, in operator words.")
    moves: list[PlacementMove] = Field(description="In the order they are safe to make.")
    used: dict[str, int] = Field(description="Bytes the placements occupy per loaded tier.")
    budgets: dict[str, int] = Field(description="Each loaded tier's budget, bytes.")
    fits: dict[str, bool] = Field(description="Whether each tier's placements fit (false only through pins).")
    created: float | None
    policy: str
    explanation: str = Field(description="The whole plan as text.")
    current: dict[str, str] = Field(description="Model id -> where it is now (a load in progress counts as done).")


class MoveOutcome(PlacementMove):
    """What happened to one move."""

    status: Literal["done", "skipped", "refused", "failed"]
    ok: bool
    detail: str
    seconds: float | None
    outcome: str = Field(description="The outcome in one line.")


class ApplyResponse(BaseModel):
    """The plan that was applied (its moves narrowed to those named) and each move's outcome."""

    plan: PlacementPlan
    outcomes: list[MoveOutcome]
    done: int = Field(description="Moves made.")
    total: int = Field(description="Moves tried.")
