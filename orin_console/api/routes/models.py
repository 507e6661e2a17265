"""Model routes: list, show, add (from the configured folders only), load, move, unload, pin,
the dry-run plan and per-model stats; and ``GET /operations/{op_id}``.

Load, move and unload return 202 at once with an operation to follow (``GET
/operations/{id}``, or ``LoadProgress`` / ``ModelStateChanged`` on ``GET /events``). A load
or move the scheduler would refuse is answered 409 at once with the itemised reasons (the
plan is the scheduler's own decision at that moment; the load re-checks when it runs). The
recent operations are kept in a bounded table in the app's state, not in the core.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import stat
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse

from orin_console.api.deps import CoreDep, app_state
from orin_console.api.errors import error_body, status_for
from orin_console.api.facts import catalog_facts, entry_facts
from orin_console.api.schemas import (
    EDIT_RESPONSES,
    ERROR_RESPONSES,
    MODEL_ID_PATTERN,
    AddModelRequest,
    AddPreview,
    AddResponse,
    ErrorResponse,
    LoadRequest,
    LoadTier,
    ModelInfo,
    ModelList,
    ModelStats,
    MoveRequest,
    OperationResponse,
    PinRequest,
    PlanResponse,
)
from orin_console.api.schemas import Operation as OperationModel
from orin_console.api.serialize import (
    decision_to_dict,
    model_info,
    model_status_to_dict,
    preview_to_dict,
    usage_to_dict,
)
from orin_console.core import Core
from orin_console.core.cancel import Cancelled
from orin_console.core.errors import CatalogError
from orin_console.core.manager.types import ModelStatus
from orin_console.core.memory.admission import AdmissionRefused
from orin_console.core.text import sanitize, sanitize_path

router = APIRouter(tags=["models"])

MAX_OPERATIONS = 256
"""Operations remembered (oldest finished ones forgotten first)."""

ADD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AddPreview, "description": "`dry_run`: what would be added (nothing is written)"},
    **EDIT_RESPONSES,
    403: {"model": ErrorResponse, "description": "The path is outside the configured model folders"},
}

ModelIdPath = Annotated[str, Path(pattern=MODEL_ID_PATTERN, description="A catalog id.", examples=["qwen-0.5b"])]


# -- operations ---------------------------------------------------------------------------------


class Operations:
    """A bounded, thread-safe table of recent operations (futures of the manager)."""

    def __init__(self, limit: int = MAX_OPERATIONS) -> None:
        self._lock = threading.Lock()
        self._ops: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._limit = limit
        self._counter = itertools.count(1)

    def track(self, core: Core, model_id: str, action: str, tier: str | None,
              future: Future[ModelStatus]) -> dict[str, Any]:
        op_id = f"op-{next(self._counter)}-{secrets.token_hex(4)}"
        op: dict[str, Any] = {"id": op_id, "model_id": model_id, "action": action, "tier": tier,
                              "state": "running", "error": None, "progress": None,
                              "created": time.time(), "finished": None, "status": None}
        with self._lock:
            self._ops[op_id] = op
            while len(self._ops) > self._limit:
                oldest = next((k for k, v in self._ops.items() if v["state"] != "running"), None)
                self._ops.pop(oldest if oldest is not None else next(iter(self._ops)))

        def finished(done: Future[ModelStatus]) -> None:
            update: dict[str, Any] = {"finished": time.time()}
            if done.cancelled():
                update.update(state="cancelled", error={"type": "Cancelled", "message": "cancelled"})
            elif (exc := done.exception()) is not None:
                body = error_body(type(exc).__name__, str(exc), status=status_for(exc))["error"]
                if isinstance(exc, AdmissionRefused):
                    body["reasons"] = [sanitize(r) for r in exc.decision.reasons]
                    body["suggestions"] = [sanitize(s.text) for s in exc.decision.suggestions]
                update.update(state="cancelled" if isinstance(exc, Cancelled) else "failed", error=body)
            else:
                update.update(state="done", progress=1.0 if action != "unload" else None,
                              status=model_status_to_dict(done.result()))
            with self._lock:
                op.update(update)

        future.add_done_callback(finished)
        return self.get(core, op_id)

    def get(self, core: Core, op_id: str) -> dict[str, Any]:
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                raise CatalogError(f"no operation `{sanitize(op_id[:80])}` (operations are kept for the "
                                   f"last {self._limit} loads, moves and unloads)")
            out = dict(op)
        if out["state"] == "running":
            with contextlib.suppress(CatalogError):
                out["progress"] = core.manager.model_status(out["model_id"]).progress
        return out


def operations_of(app: FastAPI) -> Operations:
    """The app's operations table (made on first use)."""
    return app_state(app, "orin_operations", Operations)


# -- helpers ------------------------------------------------------------------------------------


def _info(core: Core, model_id: str, status: ModelStatus | None = None) -> dict[str, Any]:
    manager = core.manager
    status = status or manager.model_status(model_id)
    try:
        entry = manager.catalog.get(model_id)
    except CatalogError:
        entry = None
    facts = entry_facts(core, entry) if entry is not None else None
    return model_info(status, entry, manager.usage.get(model_id), facts)


def _refuse(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(kind, message, field="path", **extra), status_code=status)


def _start(request: Request, core: Core, model_id: str, action: str, tier: str | None) -> JSONResponse:
    manager = core.manager
    manager.model_status(model_id)  # an unknown id is a 404 (CatalogError), whatever the action
    if action == "unload":
        future = manager.unload(model_id)
    else:
        decision = manager.plan(model_id, tier)  # refused now: 409 with the itemised reasons
        if not decision.ok:
            raise AdmissionRefused(decision)
        future = manager.load(model_id, tier)
        tier = tier or decision.tier
    op = operations_of(request.app).track(core, model_id, action, tier, future)
    return JSONResponse({"operation": op}, status_code=202)


# -- routes -------------------------------------------------------------------------------------


@router.get("/models/list", response_model=ModelList, summary="Every catalog model")
def list_models(core: CoreDep) -> dict[str, Any]:
    """Each model's entry, state, tier, memory (predicted and measured), usage and file facts
    (size, quantisation...: each file's header is read once and cached by path, size and mtime)."""
    manager = core.manager
    statuses = {s.model_id: s for s in manager.model_statuses()}
    usage = manager.usage.snapshot()
    facts = catalog_facts(core)
    models = [model_info(statuses[entry.id], entry, usage.get(entry.id), facts.get(entry.id))
              for entry in manager.catalog if entry.id in statuses]
    return {"models": models}


# before /models/{model_id}: Starlette answers a wrong method with the first route whose path
# matches, so OPTIONS /models/add must find this one (Allow: POST), not GET /models/{model_id}
@router.post("/models/add", status_code=201, response_model=AddResponse, responses=ADD_RESPONSES,
             summary="Add a .gguf file from a configured model folder")
def add_model(body: AddModelRequest, core: CoreDep) -> Any:
    """Only a regular `.gguf` file whose real path (symlinks resolved) lies inside one of the
    configured `model_folders` (403 otherwise), validated by the bounded GGUF reader (422 with
    the reason when it is not a valid GGUF). An `id` already in the catalog is a 422 `IdTaken`. With
    `"dry_run": true` the same checks run and the answer is a 200 AddPreview (the entry it would
    write, the header, the predicted memory and admission's verdict per tier); nothing is written."""
    folders = [os.path.realpath(os.path.expanduser(str(f))) for f in core.settings.model_folders]
    raw = body.path
    if "\x00" in raw or not os.path.isabs(os.path.expanduser(raw)):
        return _refuse(422, "InvalidPath", "path: give the file's absolute path, inside one of the model folders")
    real = os.path.realpath(os.path.expanduser(raw))
    if not any(os.path.commonpath([real, folder]) == folder for folder in folders):
        shown = ", ".join(sanitize_path(f) for f in folders) or "none configured"
        return _refuse(403, "PathNotAllowed",
                       f"{sanitize_path(raw)} is outside the configured model folders ({shown}); the API "
                       "adds models only from those (set `model_folders` in the settings)")
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        return _refuse(422, "InvalidPath", f"{sanitize_path(raw)}: {sanitize(exc.strerror or 'cannot be read')}")
    if not stat.S_ISREG(mode):
        return _refuse(422, "NotARegularFile", f"{sanitize_path(raw)} is not a regular file")
    if not real.lower().endswith(".gguf"):
        return _refuse(422, "NotGGUF", f"{sanitize_path(raw)} is not a .gguf file")
    if body.id is not None and body.id in core.manager.catalog:
        return JSONResponse(error_body("IdTaken", f"a model called '{body.id}' is already in the catalog; "
                                       "choose another `id`", field="id"), status_code=422)
    options: dict[str, Any] = {"model_id": body.id, "tasks": body.tasks, "tier": body.tier,
                               "context": body.context}
    if body.dry_run:
        verdict = core.manager.preview_add(real, **options)
        if verdict.error is not None:
            return _refuse(422, "ModelRefused", verdict.error)
        return JSONResponse(preview_to_dict(verdict), status_code=200)
    try:
        result = core.manager.add_models(real, **options)
    except CatalogError as exc:  # the id was taken meanwhile, or the file was refused as a whole
        return _refuse(422, "ModelRefused", str(exc))
    refused = [{"path": sanitize_path(r.path), "reason": sanitize(r.reason)} for r in result.refused]
    if not result.added:
        reason = refused[0]["reason"] if refused else "nothing was added"
        return _refuse(422, "ModelRefused", f"{sanitize_path(raw)}: {reason}", refused=refused)
    added = [_info(core, entry.id) for entry in result.added]
    return JSONResponse({"added": added, "refused": refused}, status_code=201)


@router.get("/models/{model_id}", response_model=ModelInfo, responses=ERROR_RESPONSES, summary="One model")
def show_model(model_id: ModelIdPath, core: CoreDep) -> dict[str, Any]:
    """The model's entry, state, tier, memory, usage and file facts (404 for an unknown id)."""
    return _info(core, model_id)


@router.post("/models/{model_id}/load", status_code=202, response_model=OperationResponse,
             responses=ERROR_RESPONSES, summary="Load into a tier (returns at once)")
def load_model(model_id: ModelIdPath, request: Request, core: CoreDep,
               body: LoadRequest | None = None) -> JSONResponse:
    """202 with an operation to follow; 409 with the itemised reasons when it would not fit."""
    tier = body.tier if body is not None else None
    return _start(request, core, model_id, "load", tier)


@router.post("/models/{model_id}/move", status_code=202, response_model=OperationResponse,
             responses=ERROR_RESPONSES, summary="Move to another tier (returns at once)")
def move_model(model_id: ModelIdPath, body: MoveRequest, request: Request, core: CoreDep) -> JSONResponse:
    """Make-before-break when both fit; `disk` unloads. 202 with an operation to follow."""
    if body.tier == "disk":
        return _start(request, core, model_id, "unload", "disk")
    return _start(request, core, model_id, "move", body.tier)


@router.post("/models/{model_id}/unload", status_code=202, response_model=OperationResponse,
             responses=ERROR_RESPONSES, summary="Stop the model's runner (returns at once)")
def unload_model(model_id: ModelIdPath, request: Request, core: CoreDep) -> JSONResponse:
    """The runner process ends, so its memory really comes back. A load in progress is cancelled."""
    return _start(request, core, model_id, "unload", "disk")


@router.post("/models/{model_id}/pin", response_model=ModelInfo, responses=EDIT_RESPONSES,
             summary="Pin or unpin")
def pin_model(model_id: ModelIdPath, body: PinRequest, core: CoreDep) -> dict[str, Any]:
    """A pinned model keeps its tier when the usage-based plan is applied."""
    status = core.manager.pin(model_id, body.pinned)
    return _info(core, model_id, status)


@router.get("/models/{model_id}/plan", response_model=PlanResponse, responses=ERROR_RESPONSES,
            summary="Dry run: would a load or move be admitted, and why")
def plan_model(model_id: ModelIdPath, core: CoreDep,
               tier: Annotated[LoadTier | None, Query(description="`ram` or `swap` (default: the "
                                                      "model's catalog tier)")] = None) -> dict[str, Any]:
    """The scheduler's verdict now, itemised; nothing is loaded or reserved. `ok: false` is
    still a 200: the refusal is the answer."""
    return decision_to_dict(core.manager.plan(model_id, tier))


@router.get("/models/{model_id}/stats", response_model=ModelStats, responses=ERROR_RESPONSES,
            summary="Usage and speed figures")
def model_stats(model_id: ModelIdPath, core: CoreDep) -> dict[str, Any]:
    """Requests and tokens ever, moving averages of TTFT and tokens/s, the last load's time,
    and memory predicted against measured."""
    manager = core.manager
    status = manager.model_status(model_id)
    return {"id": model_id, **usage_to_dict(manager.usage.get(model_id)),
            "load_seconds": status.load_seconds, "move_seconds_per_gb": status.move_seconds_per_gb,
            "measured_bytes": status.measured_bytes, "predicted_bytes": status.predicted_bytes,
            "prediction_error": status.prediction_error}


@router.get("/operations/{op_id}", response_model=OperationModel, responses=ERROR_RESPONSES,
            summary="A load, move or unload in the background")
def get_operation(op_id: Annotated[str, Path(max_length=80)], request: Request, core: CoreDep) -> dict[str, Any]:
    """`state` is `running`, `done`, `failed` (with `error`) or `cancelled`; `progress` 0..1
    while a load or move runs; `status` the model's status once it ended."""
    return operations_of(request.app).get(core, op_id)
