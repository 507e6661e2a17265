"""The placement plan as a front end shows it, and applying all of it or the moves named.

Every console (the TUI in process, the API for attached consoles and the SDK) asks here, so they
show the same plan and apply it the same way:

- :func:`current_plan`: the plan to show now and where each model is. With no optimiser, a fresh
  :func:`~orin_console.core.placement.optimiser.plan_for`; with an optimiser that is not applying
  by itself, one round of it (computes and publishes :class:`PlanChanged` when it changed; applies
  nothing); with auto-optimise on, its latest plan (a round would apply it unasked), else a fresh one.
- :func:`apply_plan`: carry out the whole plan or the moves of the models named, one move at a time
  through :func:`~orin_console.core.placement.optimiser.apply` (which re-checks each move and asks
  admission), reporting each outcome as it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from orin_console.core.errors import OrinError
from orin_console.core.placement.optimiser import MoveOutcome, apply, current_tier, plan_for
from orin_console.core.placement.plan import Plan
from orin_console.core.text import sanitize

__all__ = ["NoSuchMove", "apply_plan", "current_plan", "select_moves"]


class NoSuchMove(OrinError):
    """A model named for applying has no move in the plan (it is where the plan wants it)."""


def current_plan(core: Any) -> tuple[Plan, dict[str, str]]:
    """The plan to show and where each model is now (``current_tier``: a load or move in
    progress counts as done). Blocking (reads GGUF headers once per file): run it off a UI loop.

    Args:
        core: a :class:`~orin_console.core.Core` (its ``manager`` and ``optimiser``).
    """
    optimiser = core.optimiser
    if optimiser is None:
        plan = plan_for(core.manager)
    elif not optimiser.enabled:
        plan, _ = optimiser.run_once()  # computes and publishes; applies nothing
    else:
        plan = optimiser.latest or plan_for(core.manager, policy=optimiser.policy)
    now = {status.model_id: current_tier(status) for status in core.manager.model_statuses()}
    return plan, now


def select_moves(plan: Plan, model_ids: Iterable[str] | None) -> Plan:
    """``plan`` with only the moves of ``model_ids`` (in the plan's safe order); all of them for None.

    Raises:
        NoSuchMove: a named model has no move in the plan (the message names them and the
            models that do).
    """
    if model_ids is None:
        return plan
    wanted = list(dict.fromkeys(model_ids))
    movable = {move.model_id for move in plan.moves}
    missing = [mid for mid in wanted if mid not in movable]
    if missing:
        shown = ", ".join(f"'{sanitize(m[:64])}'" for m in missing[:5])
        have = ", ".join(f"'{sanitize(m)}'" for m in sorted(movable)[:10]) or "none: every model is where it belongs"
        raise NoSuchMove(f"the plan has no move for {shown} (moves in the plan now: {have}); "
                         "fetch the plan again and name models from its moves")
    return replace(plan, moves=tuple(move for move in plan.moves if move.model_id in wanted))


def apply_plan(manager: Any, plan: Plan, *, timeout: float = 300.0,
               on_move: Callable[[int, MoveOutcome | None], None] | None = None) -> list[MoveOutcome]:
    """Carry out ``plan``'s moves one at a time, in order; one outcome per move.

    Args:
        manager: the manager.
        plan: the plan (see :func:`select_moves` to apply some of its moves).
        timeout: seconds to wait for each load or move.
        on_move: called with ``(index, None)`` as move ``index`` starts and ``(index, outcome)``
            as it ends (from this thread).
    """
    outcomes: list[MoveOutcome] = []
    for index, move in enumerate(plan.moves):
        if on_move is not None:
            on_move(index, None)
        (outcome,) = apply(manager, replace(plan, moves=(move,)), timeout=timeout)
        outcomes.append(outcome)
        if on_move is not None:
            on_move(index, outcome)
    return outcomes
