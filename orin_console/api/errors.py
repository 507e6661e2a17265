"""One error shape for the seed routes, and the core's errors mapped to HTTP statuses.

Every error answer of the seed routes is ``{"error": {"type": ..., "message": ..., "field":
...}}`` (``field`` only for validation errors), the message in the operator's words and run
through the sanitiser. The OpenAI-compatible routes answer in OpenAI's own error shape
(``openai_errors`` converts). No traceback ever reaches a client: an unexpected exception is a 500
with a one-line message, logged in full on the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orin_console.core.cancel import Cancelled
from orin_console.core.engine.selection import SelectionError
from orin_console.core.engine.types import EngineError, PromptTooLong
from orin_console.core.errors import CatalogError, GGUFError, OrinError
from orin_console.core.files import DiskFull
from orin_console.core.manager.types import ContextAboveTrained, ManagerClosed, ModelBusy, ModelUnavailable
from orin_console.core.memory.admission import AdmissionRefused
from orin_console.core.runner import RunnerError, RunnerInputError
from orin_console.core.text import sanitize

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides.
STATUS_OF: tuple[tuple[type[BaseException], int], ...] = (
    (AdmissionRefused, 409),   # would not fit: the body itemises why and what would help
    (DiskFull, 507),           # a catalog edit found its file system full: free space there
    (ModelBusy, 429),          # the model's queue is full: retry shortly
    (ManagerClosed, 503),      # shutting down
    (ModelUnavailable, 503),   # failed / removed while asked
    (RunnerInputError, 422),   # text a runner cannot take
    (PromptTooLong, 413),      # a prompt far beyond the model's context: shorten it
    (EngineError, 422),        # bad generation parameters
    (SelectionError, 404),     # no model can serve / unknown model named
    (GGUFError, 422),          # the file is not a valid GGUF
    (ContextAboveTrained, 422),  # the entry's context is above the model's trained one
    (CatalogError, 404),       # unknown model id (and catalog edit errors: see routes)
    (Cancelled, 499),          # the client went away
    (RunnerError, 502),        # the runner died or failed to load
    (OrinError, 400),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status for a core error."""
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(kind: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """``{"error": {...}}`` with the message sanitised."""
    error: dict[str, Any] = {"type": kind, "message": sanitize(message, multiline=True)}
    if field is not None:
        error["field"] = field
    error.update(extra)
    return {"error": error}


def _field_of(loc: Sequence[Any]) -> str:
    # only the first item is where the value came from: a body field may be called "path"
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc)]
    return ".".join(parts) or "body"


async def _on_orin_error(_request: Request, exc: Exception) -> JSONResponse:
    extra: dict[str, Any] = {}
    if isinstance(exc, AdmissionRefused):
        decision = exc.decision
        extra = {"reasons": list(decision.reasons),
                 "suggestions": [s.text for s in decision.suggestions]}
    return JSONResponse(error_body(type(exc).__name__, str(exc), **extra), status_code=status_for(exc))


_ID_PATTERNS = {
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$": "is not a catalog id (1 to 64 of letters, digits, '.', '_', '-', "
                                         "starting with a letter or digit)",
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$": "is not a request id (letters, digits, '.', '_', ':', '/', '-', "
                                       "starting with a letter or digit)",
}


def _explain(error: Mapping[str, Any]) -> str:
    """Pydantic's message, in the operator's words where it would quote a regular expression."""
    ctx = error.get("ctx") or {}
    if error.get("type") == "string_pattern_mismatch" and ctx.get("pattern") in _ID_PATTERNS:
        given = error.get("input")
        shown = repr(given[:40]) + ("…" if len(given) > 40 else "") if isinstance(given, str) else "the value"
        return f"{shown} {_ID_PATTERNS[ctx['pattern']]}"
    return str(error.get("msg", "invalid"))


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = _field_of(first.get("loc", ("body",)))
    message = f"{field}: {_explain(first)}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return JSONResponse(error_body("ValidationError", message, field=field), status_code=422)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    path = request.url.path
    if path == "/v1" or path.startswith("/v1/"):
        # the router's own 404 / 405 under /v1 (no OpenAIRoute ran): OpenAI's shape there too
        from orin_console.api.openai_errors import OpenAIError, _type_for

        answer = OpenAIError(exc.status_code, str(exc.detail), type=_type_for(exc.status_code)).response()
        answer.headers.update(headers or {})
        return answer
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"Not Found: no route {request.method} {path[:120]} (GET /docs lists the routes)"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        allowed = (headers or {}).get("allow") or (headers or {}).get("Allow") or "see GET /docs"
        detail = f"{request.method} is not allowed on {path[:120]} (allowed: {allowed})"
    return JSONResponse(error_body("HTTPError", detail), status_code=exc.status_code, headers=headers)


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error while serving a request")
    return JSONResponse(error_body("InternalError", f"internal error: {type(exc).__name__}; see the server log"),
                        status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(OrinError, _on_orin_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
