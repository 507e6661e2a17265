"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/chat/completions``,
``POST /v1/completions`` (streamed or not), so the official ``openai`` package and the tools
built on it work unchanged.

- ``model`` is a catalog id (manual selection: that model answers, loaded first if needed) or
  ``auto`` (the engine picks by task, residency and speed). The answer's ``model`` names the
  model that answered; the ``X-Orin-Selection`` header carries the selection's one-line
  explanation (ASCII), ``X-Orin-Request-Id`` the request's id in the console's events.
- Parameters: ``max_tokens`` / ``max_completion_tokens`` (default: the engine's 256),
  ``temperature``, ``top_p``, ``stop`` (a string or up to 4), ``seed``, ``stream`` (with
  ``stream_options.include_usage``), ``n`` (only 1). ``user`` is accepted and ignored; the
  penalties, ``logprobs``, ``logit_bias``, ``response_format`` and the like are accepted only
  with their neutral value, tools never: anything else is a 400 naming the field.
- ``/v1/completions`` sends the prompt as it is (no chat template); ``/v1/chat/completions``
  renders the messages with the model's own template (``developer`` counts as ``system``;
  text content parts are joined).
- Errors are OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, for every
  failure of these routes, request validation included (400 as OpenAI answers, not 422),
  through :class:`OpenAIRoute`; the seed routes keep their own shape.
- A client that goes away (mid-stream, or while waiting for a non-streamed answer) cancels
  the generation: the runner stops within one token and its queue place is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from orin_console import __version__
from orin_console.api.deps import CoreDep
from orin_console.api.errors import status_for
from orin_console.api.routes.events import shutdown_of
from orin_console.api.security import BodyTooLarge
from orin_console.core.engine.aio import AsyncEngineStream, astream_chat, astream_quick
from orin_console.core.engine.selection import SelectionError
from orin_console.core.engine.types import ParameterError, Result
from orin_console.core.errors import OrinError
from orin_console.core.runner import RunnerInputError
from orin_console.core.text import sanitize

log = logging.getLogger(__name__)

SOURCE = "api"
AUTO = "auto"
OWNER = "orin-console"
SELECTION_HEADER = "X-Orin-Selection"
REQUEST_ID_HEADER = "X-Orin-Request-Id"
MAX_HEADER_CHARS = 1024
FINGERPRINT = f"orin-console-{__version__}"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

T = TypeVar("T")


# -- errors in OpenAI's shape --------------------------------------------------------------------


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


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
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


_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"description": "The completion; with `\"stream\": true`, server-sent chunks as OpenAI sends "
                         "them, ending with `data: [DONE]`",
          # each event: `data:` only, a chunk's JSON (or, after a failure, an error's), then `[DONE]`
          "content": {"text/event-stream": {"schema": {
              "type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}, "example":
              'data: {"id":"chatcmpl-1a2b","object":"chat.completion.chunk","model":"smollm2",'
              '"choices":[{"index":0,"delta":{"content":" Hello"},"finish_reason":null}]}\n\n'
              "data: [DONE]\n\n"}}},
    **_ERRORS,
}


# -- requests --------------------------------------------------------------------------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage and no choices."""

    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool | None = None


Number = StrictFloat | StrictInt


class _Sampling(BaseModel):
    """What both generation routes take (strict types: ``"5"`` is not 5, ``true`` not 1)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr = Field(description="A catalog id (that model answers) or `auto` (selected for "
                             "the task).", examples=["auto"])
    max_tokens: StrictInt | None = Field(None, description="Most tokens to generate (default 256; "
                                         "at most the model's context).", examples=[64])
    temperature: Number | None = Field(None, description="0 (greedy) to 2.", examples=[0.7])
    top_p: Number | None = Field(None, description="Nucleus mass, > 0 and <= 1.")
    stop: StrictStr | list[StrictStr] | None = Field(None, description="Up to 4 strings of 1 to 64 "
                                                     "characters that end the answer.")
    seed: StrictInt | None = Field(None, description="0 to 4294967294 for reproducible sampling.")
    n: StrictInt | None = Field(None, description="Only 1.")
    stream: StrictBool | None = Field(None, description="Server-sent chunks as OpenAI sends them, "
                                      "ending with `data: [DONE]`.")
    stream_options: StreamOptions | None = None
    user: StrictStr | None = Field(None, description="Accepted and ignored.")
    # accepted with their neutral value only
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logit_bias: dict[str, Any] | None = None
    logprobs: Any = None
    top_logprobs: Any = None


class ChatMessage(_Open):
    """One message: a role and its text (a string, or text parts)."""

    role: Any = Field(description="system, developer (as system), user or assistant.")
    content: Any = Field(None, description="A string, or a list of `{\"type\": \"text\", \"text\": ...}` parts.")


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "auto", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64}]})

    messages: list[ChatMessage] = Field(description="Oldest first; at least one user message.")
    max_completion_tokens: StrictInt | None = Field(None, description="The newer name of `max_tokens`.")
    response_format: dict[str, Any] | None = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    parallel_tool_calls: StrictBool | None = None
    store: StrictBool | None = None
    metadata: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "auto", "prompt": "The future of AI is", "max_tokens": 32}]})

    prompt: StrictStr | list[StrictStr] = Field(description="The text to continue (as it is: no chat "
                                                "template); a list of exactly one string is accepted.")
    echo: StrictBool | None = None
    best_of: StrictInt | None = None
    suffix: StrictStr | None = None


def _refuse_unsupported(body: _Sampling) -> None:
    """Fields the engine does not offer, accepted only with the value that means "off"."""
    if body.n not in (None, 1):
        raise OpenAIError(400, f"Invalid value for 'n': {body.n}; only n = 1 is supported (one "
                          "answer per request).", param="n", code="invalid_value")
    neutral: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("presence_penalty", body.presence_penalty, (None, 0)),
        ("frequency_penalty", body.frequency_penalty, (None, 0)),
        ("logprobs", body.logprobs, (None, False, 0)),
        ("top_logprobs", body.top_logprobs, (None, 0)),
    ]
    if body.logit_bias:
        neutral.append(("logit_bias", body.logit_bias, ({},)))
    if isinstance(body, ChatCompletionRequest):
        neutral += [("tools", body.tools, (None, [])), ("functions", body.functions, (None, [])),
                    ("tool_choice", body.tool_choice, (None, "none")),
                    ("function_call", body.function_call, (None, "none"))]
        fmt = body.response_format
        if fmt is not None and fmt.get("type") != "text":
            neutral.append(("response_format", fmt, ({"type": "text"},)))
    if isinstance(body, CompletionRequest):
        neutral += [("echo", body.echo, (None, False)), ("best_of", body.best_of, (None, 1)),
                    ("suffix", body.suffix, (None, ""))]
    for name, value, allowed in neutral:
        if not _neutral(value, allowed):
            raise OpenAIError(400, f"'{name}' is not supported by this server (leave it out).",
                              param=name, code="unsupported_parameter")


def _neutral(value: Any, allowed: tuple[Any, ...]) -> bool:
    """``value`` is one of ``allowed`` (``false`` is not 0, 0.0 is 0)."""
    for ok in allowed:
        if value is ok:
            return True
        if not isinstance(value, bool) and not isinstance(ok, bool) and value == ok:
            return True
    return False


def _options(body: _Sampling, max_tokens: int | None) -> dict[str, Any]:
    """The engine's keyword arguments (None values leave the engine's defaults)."""
    options: dict[str, Any] = {"source": SOURCE, "max_tokens": max_tokens, "temperature": body.temperature,
                               "top_p": body.top_p, "seed": body.seed}
    if body.stop is not None:
        options["stop"] = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop)
    if body.model == AUTO:
        options["mode"] = "auto"
    else:
        options.update(mode="manual", model=body.model)
    return {k: v for k, v in options.items() if v is not None}


def _check_model(core: Any, model: str) -> None:
    if model != AUTO and model not in core.manager.catalog:
        known = ", ".join([AUTO, *(entry.id for entry in core.manager.catalog)])
        raise OpenAIError(404, f"The model `{model[:80]}` does not exist (known: {known}).",
                          param="model", code="model_not_found")


def _text_of(i: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise OpenAIError(400, f"Invalid content part messages[{i}].content[{j}]: only text parts "
                                  "(`{\"type\": \"text\", \"text\": ...}`) are supported.",
                                  param=f"messages[{i}].content", code="invalid_value")
            texts.append(part["text"])
        return "".join(texts)
    raise OpenAIError(400, f"Invalid value for 'messages[{i}].content': must be a string or a list of "
                      "text parts.", param=f"messages[{i}].content", code="invalid_value")


def _messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(body.messages):
        role = "system" if message.role == "developer" else message.role
        out.append({"role": role, "content": _text_of(i, message.content)})  # the engine checks roles
    return out


def _max_tokens(body: _Sampling) -> tuple[int | None, dict[str, str]]:
    """The token limit and, when it came as ``max_completion_tokens``, the name to report."""
    newer = getattr(body, "max_completion_tokens", None)
    if newer is not None and body.max_tokens is not None and newer != body.max_tokens:
        raise OpenAIError(400, "max_tokens and max_completion_tokens differ: give one of them.",
                          param="max_tokens", code="invalid_value")
    if newer is not None:
        return newer, {"max_tokens": "max_completion_tokens"}
    return body.max_tokens, {}


# -- answers ---------------------------------------------------------------------------------------

_ASCII = str.maketrans({"\u2014": "-", "\u2013": "-", "\u00b7": "|", "\u2026": "...", "\u2018": "'",
                        "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2192": "->", "\u2265": ">=",
                        "\u2264": "<="})


def header_text(text: str) -> str:
    """One line of printable ASCII for a header value (a few typographic marks spelled out, the
    rest escaped), cut to :data:`MAX_HEADER_CHARS`."""
    line = sanitize(text, replacement="?").translate(_ASCII)
    line = line.encode("ascii", "backslashreplace").decode("ascii")
    line = "".join(ch if " " <= ch <= "~" else "?" for ch in line)
    return line if len(line) <= MAX_HEADER_CHARS else line[: MAX_HEADER_CHARS - 3] + "..."


def _headers(stream: AsyncEngineStream) -> dict[str, str]:
    return {SELECTION_HEADER: header_text(stream.explanation), REQUEST_ID_HEADER: stream.request_id}


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _usage(result: Result | None) -> dict[str, int]:
    prompt = result.prompt_tokens if result is not None else 0
    completion = result.tokens if result is not None else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def _event(data: Any) -> bytes:
    return b"data: " + _json(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is read: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_gone(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client goes first, cancel it (which cancels the generation) and
    raise a 499 (nobody reads it, but the request is counted so)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise OpenAIError(499, "the client closed the request", code="client_closed_request")


class _Shape:
    """The object shapes of one request: chat completion or text completion."""

    def __init__(self, chat: bool, model: str, request_id: str, include_usage: bool) -> None:
        self.chat = chat
        self.model = model
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id.removeprefix("oai-")
        self.created = int(time.time())
        self.include_usage = include_usage

    def complete(self, result: Result) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": _finish(result.finish_reason)}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": result.text, "refusal": None}
        else:
            choice["text"] = result.text
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "system_fingerprint": FINGERPRINT,
                "choices": [choice], "usage": _usage(result)}

    def chunk(self, text: str | None = None, *, role: bool = False, finish: str | None = None) -> bytes:
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        choice["logprobs"] = None
        choice["finish_reason"] = finish
        data: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                                "created": self.created, "model": self.model,
                                "system_fingerprint": FINGERPRINT, "choices": [choice]}
        if self.include_usage:
            data["usage"] = None
        return _event(data)

    def usage_chunk(self, result: Result | None) -> bytes:
        return _event({"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                       "created": self.created, "model": self.model, "system_fingerprint": FINGERPRINT,
                       "choices": [], "usage": _usage(result)})


_END = object()


async def _first(stream: AsyncEngineStream) -> Any:
    """The first piece, or :data:`_END` (load and queue errors are raised here, before any
    byte is sent, so they are proper HTTP errors: a 429 the client retries)."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return _END


def _error_event(exc: BaseException) -> bytes:
    error = from_core(exc) if isinstance(exc, OrinError) else OpenAIError(
        500, f"internal error: {type(exc).__name__}; see the server log", type="server_error")
    return _event(error.body())


SHUTTING_DOWN = OpenAIError(503, "the server is shutting down; retry against the next instance",
                            type="server_error", code="shutting_down")


async def _chunks(request: Request, stream: AsyncEngineStream, shape: _Shape, first: Any,
                  renamed: Mapping[str, str]) -> AsyncIterator[bytes]:
    """The streamed answer; Starlette cancels this generator when the client goes away, which
    cancels the generation."""
    shutdown = shutdown_of(request.app)
    unregister = shutdown.on_shutdown(stream.cancel)
    try:
        if shape.chat:
            yield shape.chunk("", role=True)
        if first is not _END:
            yield shape.chunk(first)
            try:
                async for piece in stream:
                    yield shape.chunk(piece)
            except Exception as exc:  # noqa: BLE001 - the client gets it as the last event
                yield _event(SHUTTING_DOWN.body()) if shutdown.is_set else _error_event(exc)
                return
        result = stream.result
        if shutdown.is_set or (result is not None and result.finish_reason == "cancelled"):
            yield _event(SHUTTING_DOWN.body())
            return
        yield shape.chunk(None if shape.chat else "", finish=_finish(result.finish_reason if result else "stop"))
        if shape.include_usage:
            yield shape.usage_chunk(result)
        yield DONE
    finally:
        unregister()
        stream.cancel()  # sync, so it happens even while this generator is being cancelled
        with contextlib.suppress(BaseException):
            await asyncio.shield(stream.aclose())


async def _answer(request: Request, stream: AsyncEngineStream, body: _Sampling, chat: bool,
                  renamed: Mapping[str, str]) -> Response:
    shutdown = shutdown_of(request.app)
    if shutdown.is_set:
        raise SHUTTING_DOWN
    try:
        await stream.start()  # routing errors (bad parameter, unknown or inadmissible model) raise here
    except OrinError as exc:
        raise from_core(exc, renamed=renamed) from None
    unregister = shutdown.on_shutdown(stream.cancel)
    handed_over = False
    try:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        shape = _Shape(chat, stream.model_id, stream.request_id, include_usage)
        if body.stream:
            first = await _unless_gone(request, _first(stream))
            handed_over = True
            return StreamingResponse(_chunks(request, stream, shape, first, renamed),
                                     media_type="text/event-stream",
                                     headers={**SSE_HEADERS, **_headers(stream)})
        result = await _unless_gone(request, stream.collect())
        if shutdown.is_set or result.finish_reason == "cancelled":
            raise SHUTTING_DOWN
        return JSONResponse(shape.complete(result), headers=_headers(stream))
    except OrinError as exc:
        raise from_core(exc, renamed=renamed) from None
    finally:
        unregister()
        if not handed_over:
            await stream.aclose()


def _request_id() -> str:
    return "oai-" + uuid.uuid4().hex[:24]


# -- routes ----------------------------------------------------------------------------------------


def _model_card(model_id: str, status: Any = None, entry: Any = None) -> dict[str, Any]:
    card: dict[str, Any] = {"id": model_id, "object": "model", "created": 0, "owned_by": OWNER}
    if entry is not None and status is not None:
        card["orin"] = {"state": status.state.value, "tier": status.tier, "preferred_tier": status.preferred_tier,
                        "tasks": list(entry.tasks), "context": entry.context, "pin": entry.pin}
    else:
        card["orin"] = {"description": "selected per request by task, residency and speed"}
    return card


def _cards(core: Any) -> list[dict[str, Any]]:
    statuses = {s.model_id: s for s in core.manager.model_statuses()}
    return [_model_card(AUTO), *(_model_card(entry.id, statuses.get(entry.id), entry)
                                 for entry in core.manager.catalog if entry.id in statuses)]


@router.get("/models", summary="The catalog, as OpenAI's model list (plus `auto`)", responses=_ERRORS)
def list_models(core: CoreDep) -> dict[str, Any]:
    """Every catalog model, and `auto`. Each card's `orin` holds its state, tier, tasks and
    context."""
    return {"object": "list", "data": _cards(core)}


@router.get("/models/{model_id}", summary="One model card", responses=_ERRORS)
def get_model(model_id: str, core: CoreDep) -> dict[str, Any]:
    """A catalog model (or `auto`); 404 in OpenAI's shape for any other id."""
    _check_model(core, model_id)
    for card in _cards(core):
        if card["id"] == model_id:
            return card
    raise OpenAIError(404, f"The model `{model_id[:80]}` does not exist.", param="model",
                      code="model_not_found")


@router.post("/chat/completions", summary="OpenAI chat completion (streamed or not)", responses=_STREAMED)
async def chat_completions(body: ChatCompletionRequest, request: Request, core: CoreDep) -> Response:
    """Messages through the model's chat template. `model`: a catalog id or `auto`; the answer's
    `model` is the one that answered, `X-Orin-Selection` says why."""
    _refuse_unsupported(body)
    _check_model(core, body.model)
    max_tokens, renamed = _max_tokens(body)
    messages = _messages(body)
    stream = astream_chat(core.engine, messages, request_id=_request_id(), incremental=bool(body.stream),
                          **_options(body, max_tokens))
    return await _answer(request, stream, body, True, renamed)


@router.post("/completions", summary="OpenAI text completion (streamed or not)", responses=_STREAMED)
async def completions(body: CompletionRequest, request: Request, core: CoreDep) -> Response:
    """The prompt continued as it is (no chat template). `model`: a catalog id or `auto`."""
    _refuse_unsupported(body)
    _check_model(core, body.model)
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise OpenAIError(400, "Invalid value for 'prompt': give one prompt (a string, or a list of "
                              "exactly one string).", param="prompt", code="invalid_value")
        prompt = prompt[0]
    max_tokens, renamed = _max_tokens(body)
    stream = astream_quick(core.engine, prompt, request_id=_request_id(), incremental=bool(body.stream),
                           as_chat=False, **_options(body, max_tokens))
    return await _answer(request, stream, body, False, renamed)
