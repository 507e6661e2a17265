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
  through :class:`~orin_console.api.openai_errors.OpenAIRoute`; the seed routes keep their
  own shape.
- A client that goes away (mid-stream, or while waiting for a non-streamed answer) cancels
  the generation: the runner stops within one token and its queue place is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from orin_console import __version__
from orin_console.api.deps import CoreDep
from orin_console.api.disconnect import ClientGone, unless_gone
from orin_console.api.openai_errors import ERRORS, OpenAIError, OpenAIRoute, from_core
from orin_console.api.openai_schemas import (
    AUTO,
    ChatCompletionRequest,
    CompletionRequest,
    _check_model,
    _max_tokens,
    _messages,
    _options,
    _refuse_unsupported,
    _Sampling,
)
from orin_console.api.routes.events import shutdown_of
from orin_console.core.engine.aio import AsyncEngineStream, astream_chat, astream_quick
from orin_console.core.engine.types import Result
from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize

OWNER = "orin-console"
SELECTION_HEADER = "X-Orin-Selection"
REQUEST_ID_HEADER = "X-Orin-Request-Id"
MAX_HEADER_CHARS = 1024
FINGERPRINT = f"orin-console-{__version__}"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)

_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"description": "The completion; with `\"stream\": true`, server-sent chunks as OpenAI sends "
                         "them, ending with `data: [DONE]`",
          # each event: `data:` only, a chunk's JSON (or, after a failure, an error's), then `[DONE]`
          "content": {"text/event-stream": {"schema": {
              "type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}, "example":
              'data: {"id":"chatcmpl-1a2b","object":"chat.completion.chunk","model":"smollm2",'
              '"choices":[{"index":0,"delta":{"content":" Hello"},"finish_reason":null}]}\n\n'
              "data: [DONE]\n\n"}}},
    **ERRORS,
}


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


async def _unless_gone(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client goes first, cancel it (which cancels the generation) and
    raise a 499 (nobody reads it, but the request is counted so)."""
    try:
        return await unless_gone(request, work)
    except ClientGone:
        raise OpenAIError(499, "the client closed the request", code="client_closed_request") from None


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


@router.get("/models", summary="The catalog, as OpenAI's model list (plus `auto`)", responses=ERRORS)
def list_models(core: CoreDep) -> dict[str, Any]:
    """Every catalog model, and `auto`. Each card's `orin` holds its state, tier, tasks and
    context."""
    return {"object": "list", "data": _cards(core)}


@router.get("/models/{model_id}", summary="One model card", responses=ERRORS)
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
