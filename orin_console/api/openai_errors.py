"""OpenAI's error shape, and the route class that puts every error of the ``/v1`` routes in it.

``{"error": {"message", "type", "param", "code"}}`` for every failure: a core error through
:func:`from_core` (its class as the code, 422 as OpenAI's 400), request validation through
``_from_validation`` (400 naming the field, as OpenAI answers, not 422), and anything else
through :class:`OpenAIRoute`, which the router of ``routes/openai.py`` uses. The seed routes keep
their own shape (``api/errors.py``, which also answers the router's own 404 / 405 under ``/v1``
with :class:`OpenAIError`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from orin_console.api.errors import status_for
from orin_console.api.security import BodyTooLarge
from orin_console.core.engine.selection import SelectionError
from orin_console.core.engine.types import ParameterError, PromptTooLong
from orin_console.core.errors import OrinError
from orin_console.core.runner import RunnerInputError
from orin_console.core.text import sanitize

log = logging.getLogger(__name__)


class OpenAIError(Exception):
    """An error answered in OpenAI's shape.

    Args:
        status: the HTTP status.
        message: what went wrong and what to do (sanitised when sent).
        type: OpenAI's error type (``invalid_request_error``, ``server_error``...).
        param: the request field at fault, when one is.
        code: a short machine-readable code (``model_not_found``, ``model_busy``...).
    """

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": sanitize(self.message, multiline=True), "type": self.type,
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "1"} if self.status in (429, 503) else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def _type_for(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def from_core(exc: OrinError, *, renamed: Mapping[str, str] | None = None) -> OpenAIError:
    """A core error as an OpenAI error: the seed's status (422 becomes OpenAI's 400), the
    error class as the code, a :class:`ParameterError`'s field as ``param``; a selection
    error is a 409 here, like admission's refusal)."""
    if isinstance(exc, PromptTooLong):  # what OpenAI answers (and its clients look for)
        return OpenAIError(400, str(exc), code="context_length_exceeded")
    status = status_for(exc)
    if status == 422:
        status = 400
    elif isinstance(exc, SelectionError):
        status = 409  # unknown ids are caught first (404 model_not_found): the model exists but cannot be admitted
    param = exc.field if isinstance(exc, ParameterError) else None
    if isinstance(exc, RunnerInputError):  # "stop[0] holds a character that..." names the field first
        named = _FIELD_FIRST.match(str(exc))
        param = named.group(1) if named else None
    if param is not None and renamed:
        param = renamed.get(param, param)
    return OpenAIError(status, str(exc), type=_type_for(status), param=param, code=_snake(type(exc).__name__))


_FIELD_FIRST = re.compile(r"^((?:prompt|stop|messages)(?:\[\d+\])?(?:\.[a-z_]+)?) ")


def _param_of(loc: Sequence[Any]) -> str | None:
    """``("body", "messages", 0, "content")`` -> ``messages[0].content``; pydantic's union
    tags (``float``, ``list[str]``...) are left out."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 0:
            out = str(part)
        elif re.fullmatch(r"[a-z_]+", str(part)) and str(part) not in _UNION_TAGS:
            out += f".{part}"
    return out or None


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "function"})


def _from_validation(exc: RequestValidationError) -> OpenAIError:
    errors = exc.errors()
    first: Mapping[str, Any] = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    param = _param_of(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "json_invalid" or param is None:
        return OpenAIError(400, "We could not parse the JSON body of your request: it must be a JSON "
                           f"object ({first.get('msg', 'invalid')}).", param=None, code="invalid_json")
    if kind == "extra_forbidden":
        return OpenAIError(400, f"Unrecognized request argument supplied: {param}", param=param,
                           code="unknown_parameter")
    if kind == "missing":
        return OpenAIError(400, f"Missing required parameter: '{param}'.", param=param,
                           code="missing_required_parameter")
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in the request)"
    return OpenAIError(400, message, param=param, code="invalid_value")


class OpenAIRoute(APIRoute):
    """A route whose every error, request validation included, is in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except OpenAIError as exc:
                return exc.response()
            except RequestValidationError as exc:
                return _from_validation(exc).response()
            except OrinError as exc:
                return from_core(exc).response()
            except BodyTooLarge as exc:
                return OpenAIError(413, str(exc), code="body_too_large").response()
            except StarletteHTTPException as exc:
                return OpenAIError(exc.status_code, str(exc.detail), type=_type_for(exc.status_code)).response()
            except Exception as exc:  # no traceback reaches a client
                log.exception("internal error while serving an OpenAI-compatible request")
                return OpenAIError(500, f"internal error: {type(exc).__name__}; see the server log",
                                   type="server_error").response()

        return openai_handler


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": {"application/json": {"example": {"error": {
        "message": example, "type": _type_for(status), "param": param, "code": code}}}}}
    for status, what, example, param, code in (
        (400, "A bad parameter (named in `param`)", "Invalid value for 'n': only n = 1 is supported.",
         "n", "invalid_value"),
        (404, "Unknown model", "The model `gpt-4` does not exist (known: auto, smollm2, gemma3).",
         "model", "model_not_found"),
        (409, "The model does not fit the free memory (admission's itemised reasons)",
         "cannot load `gemma3` into the RAM tier: needs 0.4 GB ...", None, "admission_refused"),
        (429, "The model's queue is full; retry shortly", "`smollm2` is busy: one generation running and "
         "4 queued (the limit); try again shortly or pick another model", None, "model_busy"),
        (503, "Shutting down, or the model failed", "the server is shutting down", None, "shutting_down"),
    )
}
"""The error answers of every ``/v1`` route, for the OpenAPI document."""
