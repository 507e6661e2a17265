"""``client.placement``: the usage-based placement plan, and applying it.

::

    plan = await client.placement.plan()
    for move in plan.moves:
        print(move.text)                      # "promote beta swap → ram: ..."
    result = await client.placement.apply()   # or apply(model_ids=["beta"])
    print(f"{result.done} of {result.total} moves made")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orin_console.client import checks
from orin_console.client._http import Http
from orin_console.client.types import Record, _dict, _list, _opt_float, _opt_str

__all__ = ["ApplyResult", "MoveOutcome", "PlacementAPI", "PlacementMove", "PlacementPlan"]

MAX_MODEL_IDS = 256


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items()}


def _int_map(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in _dict(value).items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


@dataclass(frozen=True)
class PlacementMove(Record):
    """One move of the plan: ``kind`` is ``unload``, ``demote``, ``promote`` or ``load``;
    ``text`` the move in one line (the core's ``Move.describe()``)."""

    model_id: str
    kind: str
    from_tier: str
    to_tier: str
    reason: str
    text: str

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> PlacementMove:
        return cls(model_id=str(data.get("model_id", "")), kind=str(data.get("kind", "")),
                   from_tier=str(data.get("from_tier", "")), to_tier=str(data.get("to_tier", "")),
                   reason=str(data.get("reason", "")), text=str(data.get("text", "")), raw=data)


@dataclass(frozen=True)
class PlacementPlan(Record):
    """``GET /placement/plan``: where every model belongs, why, and the moves from where they are.

    Attributes:
        placements: model id -> ``ram``, ``swap`` or ``disk``.
        reasons: model id -> why.
        moves: in the order they are safe to make.
        used: bytes the placements occupy per loaded tier.
        budgets: each loaded tier's budget.
        fits: whether each tier's placements fit its budget.
        current: model id -> where it is now.
        explanation: the whole plan as text.
    """

    placements: dict[str, str]
    reasons: dict[str, str]
    moves: list[PlacementMove]
    used: dict[str, int]
    budgets: dict[str, int]
    fits: dict[str, bool] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)
    created: float | None = None
    policy: str = ""
    explanation: str = ""

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> PlacementPlan:
        return cls(placements=_str_map(data.get("placements")), reasons=_str_map(data.get("reasons")),
                   moves=[PlacementMove.from_dict(m) for m in _list(data.get("moves")) if isinstance(m, Mapping)],
                   used=_int_map(data.get("used")), budgets=_int_map(data.get("budgets")),
                   fits={str(k): bool(v) for k, v in _dict(data.get("fits")).items()},
                   current=_str_map(data.get("current")), created=_opt_float(data.get("created")),
                   policy=str(data.get("policy", "")), explanation=str(data.get("explanation", "")), raw=data)


@dataclass(frozen=True)
class MoveOutcome(PlacementMove):
    """What happened to one move: ``status`` is ``done``, ``skipped``, ``refused`` or ``failed``;
    ``detail`` says why; ``outcome`` is the whole line."""

    status: str = ""
    ok: bool = False
    detail: str = ""
    seconds: float | None = None
    outcome: str = ""

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> MoveOutcome:
        move = PlacementMove._parse(data)
        return cls(model_id=move.model_id, kind=move.kind, from_tier=move.from_tier, to_tier=move.to_tier,
                   reason=move.reason, text=move.text, status=str(data.get("status", "")),
                   ok=data.get("ok") is True, detail=str(data.get("detail", "")),
                   seconds=_opt_float(data.get("seconds")), outcome=_opt_str(data.get("outcome")) or "", raw=data)


@dataclass(frozen=True)
class ApplyResult(Record):
    """``POST /placement/apply``: the plan applied (its moves narrowed to those named) and each
    move's outcome, in the order tried."""

    plan: PlacementPlan
    outcomes: list[MoveOutcome]
    done: int
    total: int

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> ApplyResult:
        outcomes = [MoveOutcome.from_dict(o) for o in _list(data.get("outcomes")) if isinstance(o, Mapping)]
        done, total = data.get("done"), data.get("total")
        return cls(plan=PlacementPlan.from_dict(_dict(data.get("plan"))), outcomes=outcomes,
                   done=done if isinstance(done, int) else sum(o.ok for o in outcomes),
                   total=total if isinstance(total, int) else len(outcomes), raw=data)


def check_model_ids(model_ids: Any) -> list[str] | None:
    """``model_ids`` as the server takes them, or TypeError / ValueError naming the argument."""
    if model_ids is None:
        return None
    ids = checks.strings("model_ids", model_ids, one=False)
    if not ids:
        raise ValueError("model_ids must name at least one model (leave it out to apply every move)")
    if len(ids) > MAX_MODEL_IDS:
        raise ValueError(f"model_ids names {len(ids)} models; at most {MAX_MODEL_IDS}")
    for i, item in enumerate(ids):
        checks.model_id(f"model_ids[{i}]", item)
    return ids


class PlacementAPI:
    """The usage-based placement plan: ``client.placement``."""

    def __init__(self, http: Http) -> None:
        self._http = http

    async def plan(self) -> PlacementPlan:
        """``GET /placement/plan``: the plan now (nothing is changed)."""
        return PlacementPlan.from_dict(await self._http.request("GET", "/placement/plan"))

    async def apply(self, model_ids: Iterable[str] | None = None, *, timeout: float | None = None) -> ApplyResult:
        """``POST /placement/apply``: carry out every move of the plan, or those of ``model_ids``;
        returns when the last move has ended (a move that does not fit now is ``refused``, not
        an error). A named model with no move in the plan is a
        :class:`~orin_console.client.errors.ValidationError`.

        Args:
            model_ids: the models whose moves to make (default: every move).
            timeout: seconds to wait for the answer (default: the client's); each move may take
                as long as a load, so a plan of several loads may need more than one.
        """
        ids = check_model_ids(model_ids)
        if timeout is not None:
            checks.number("timeout", timeout, 0.0, 1e9, low_open=True)
        body: dict[str, Any] = {} if ids is None else {"model_ids": ids}
        answer = await self._http.request("POST", "/placement/apply", json_body=body, timeout=timeout)
        return ApplyResult.from_dict(answer)
