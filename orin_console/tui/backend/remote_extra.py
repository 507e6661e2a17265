"""An attached console's operations: models, placement plan, add dialog and file facts (a mixin
of :class:`~orin_console.tui.backend.remote.RemoteBackend`).

- Models: ``client.models.plan`` (admission's dry run; an unload's is made here from the model's
  status, as the core words it: the plan route answers loads and moves), ``load`` (a move too)
  and ``unload`` following the server's operation to its end, ``pin`` (the pin read from the
  server first, never from a status that may lag).
- The plan: ``GET /placement/plan``; one move applied with ``POST /placement/apply`` naming its
  model (the server recomputes the plan and carries out that model's move, re-checked by
  admission).
- Adding: ``POST /models/add`` with ``dry_run`` for the verdict, then without it. The path is
  the server's: it takes files from its configured model folders only.

A server too old for a route answers 404 for it: the screen then says that this needs a newer
server (:class:`~orin_console.tui.backend.NotSupported`), never a bare "not found".
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orin_console.client.errors import NotFoundError, OrinAPIError, OrinClientError
from orin_console.core.catalog.add import AddResult, Refusal
from orin_console.core.catalog.store import Catalog
from orin_console.core.manager.types import ModelStatus
from orin_console.core.memory.admission import Decision
from orin_console.core.placement.optimiser import MoveOutcome
from orin_console.core.placement.plan import Move, Plan
from orin_console.core.text import sanitize
from orin_console.core.tier import Tier
from orin_console.core.units import format_size
from orin_console.tui.backend import NotSupported, convert
from orin_console.tui.backend.remote_chat import core_error

if TYPE_CHECKING:
    from orin_console.client import OrinClient
    from orin_console.tui.screens.add_verdict import Verdict
    from orin_console.tui.widgets.catalog import FileFacts

T = TypeVar("T")

__all__ = ["RemoteCatalogOps"]


def _missing_route(exc: BaseException) -> bool:
    """A 404 that is the router's own (the route does not exist), not "no such model"."""
    cause = exc.__cause__ if not isinstance(exc, OrinAPIError) else exc
    return isinstance(cause, NotFoundError) and cause.type in ("HTTPError", "NotFound") \
        and "not found" in cause.message.lower()


class RemoteCatalogOps:
    """Placement and catalog operations over the SDK (see the module docstring)."""

    url: str
    client: OrinClient
    _catalog: Catalog | None
    _models: dict[str, ModelStatus]
    _facts: dict[str, FileFacts]
    _lock: threading.Lock

    if TYPE_CHECKING:
        def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T: ...

        def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]: ...

        async def _refresh_quietly(self) -> None: ...

    # -- models ---------------------------------------------------------------------------

    def plan(self, model_id: str, tier: str | None) -> Decision:
        if tier == "disk":
            return self._unload_decision(model_id)
        verdict = self.call(self.client.models.plan(model_id, tier))
        return convert.decision(verdict.raw)

    def _unload_decision(self, model_id: str) -> Decision:
        """The API's plan route answers loads and moves; an unload's "plan" is what it frees."""
        status = self._models.get(model_id)
        loaded = status is not None and status.tier in ("ram", "swap")
        frees = max(status.measured_bytes or 0, status.predicted_bytes or 0) if status is not None else 0
        where = status.tier if status is not None else "disk"
        summary = (f"unloading `{model_id}` frees {format_size(frees)} of the {Tier(where).label}" if loaded
                   else f"`{model_id}` is not loaded")
        return Decision(ok=True, model_id=model_id, tier="disk", action="unload" if loaded else "noop",
                        frees=frees, from_tier=where if loaded else None, summary=summary)

    def load(self, model_id: str, tier: str) -> Future[ModelStatus]:
        return self.submit(self._operation(self.client.models.load(model_id, tier), model_id))

    def unload(self, model_id: str) -> Future[ModelStatus]:
        return self.submit(self._operation(self.client.models.unload(model_id), model_id))

    async def _operation(self, started: Coroutine[Any, Any, Any], model_id: str) -> ModelStatus:
        try:
            operation = await started
        except OrinClientError as exc:
            raise core_error(exc) from exc
        status = operation.raw.get("status")
        return convert.model_status(status) if isinstance(status, Mapping) else self._models.get(
            model_id, convert.model_status({"model_id": model_id}))

    def toggle_pin(self, model_id: str) -> ModelStatus:
        async def toggle() -> ModelStatus:
            info = await self.client.models.get(model_id)  # the pin now, not a status that may lag
            after = await self.client.models.pin(model_id, not info.pin)
            await self._refresh_quietly()
            return convert.model_status(after.raw)

        return self.call(toggle())

    def _newer(self, what: str, exc: BaseException) -> NotSupported:
        return NotSupported(f"{what} needs a newer server: {self.url} does not offer it (upgrade "
                            f"orin-console on the server, then attach again): {sanitize(str(exc))}")

    # -- placement ------------------------------------------------------------------------

    def placement_plan(self) -> tuple[Plan, dict[str, str]]:
        try:
            answer = self.call(self.client.placement.plan())
        except Exception as exc:
            if _missing_route(exc):
                raise self._newer("the placement plan", exc) from exc
            raise
        return convert.plan(answer.raw)

    def apply_move(self, plan: Plan, move: Move) -> MoveOutcome:
        try:
            answer = self.call(self.client.placement.apply([move.model_id]))
        except Exception as exc:
            if _missing_route(exc):
                raise self._newer("applying the placement plan", exc) from exc
            cause = exc.__cause__
            if isinstance(cause, OrinAPIError) and cause.type == "NoSuchMove":
                return MoveOutcome(move, "skipped", f"the server's plan no longer has this move: "
                                                    f"{sanitize(cause.message)}")
            raise
        outcomes = [convert.move_outcome(o.raw) for o in answer.outcomes]
        mine = next((o for o in outcomes if o.move.model_id == move.model_id), None)
        return mine or MoveOutcome(move, "skipped", "the server made no move for this model")

    # -- the catalog ----------------------------------------------------------------------

    def add_preview(self, path: Path) -> Verdict:
        from orin_console.tui.screens.add_verdict import Verdict, verdict_from_json

        try:
            answer = self.call(self.client.models.add(str(path), dry_run=True))
        except Exception as exc:
            if _missing_route(exc):
                raise self._newer("checking a file before adding it", exc) from exc
            return Verdict(path, (), (), sanitize(str(exc)))
        return verdict_from_json(answer.raw, path)

    def add(self, path: Path) -> AddResult:
        answer = self.call(self.client.models.add(str(path)))
        raw = [m.to_dict() for m in answer.added]
        added = convert.catalog(raw, Path(self.url)).entries
        refused = tuple(Refusal(Path(r.path), r.reason) for r in answer.refused)
        return AddResult(added, refused, self._catalog or Catalog(Path(self.url), ()))

    def file_facts(self, catalog: Catalog) -> dict[str, FileFacts]:
        """The files are the server's: their facts come with ``GET /models/list`` (the server
        reads each header once), kept by the last catalog refresh; nothing is read here. A model
        the server sent no facts for (an older server) shows them as unknown, not as a problem."""
        from orin_console.tui.widgets.catalog import FileFacts

        with self._lock:
            known = dict(self._facts)
        return {entry.id: known.get(entry.id, FileFacts()) for entry in catalog}
