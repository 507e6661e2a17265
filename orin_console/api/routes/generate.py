"""Generation: ``POST /quick/generate`` (the seed's quick start), ``POST /generate``,
``POST /chat`` and ``POST /batch``.

Every generation runs through :mod:`orin_console.core.engine.aio`, so routing, queueing,
loading and token waits never block the event loop. Not streamed, the answer is the
engine's result (:func:`~orin_console.api.serialize.result_to_dict`). With ``"stream":
true`` it is Server-Sent Events::

    event: routed   data: {"request_id", "model_id", "explanation", "will_load"}
    event: token    data: {"text"}            (one per piece)
    event: done     data: the result
    event: error    data: {"error": {...}}    (instead of done; also at server shutdown)

A client that goes away cancels its generation, streamed or not (and a batch's member in
progress): the runner stops within one token and its queue place is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse

from orin_console.api.deps import CoreDep
from orin_console.api.disconnect import ClientGone, unless_gone
from orin_console.api.errors import error_body, status_for
from orin_console.api.routes.events import SSE_HEADERS, shutdown_of, shutting_down_frame, sse
from orin_console.api.schemas import (
    ERROR_RESPONSES,
    BatchRequest,
    BatchResponse,
    ChatRequest,
    GenerateRequest,
    GenerationResult,
    QuickRequest,
)
from orin_console.api.serialize import result_to_dict
from orin_console.core.engine.aio import AsyncEngineStream, astream_chat, astream_quick
from orin_console.core.engine.streams import BatchStream
from orin_console.core.engine.types import BatchFailure, Result
from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize

router = APIRouter(tags=["generation"])
T = TypeVar("T")

SOURCE = "api"

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "The result; with `\"stream\": true`, Server-Sent Events "
                         "(`routed`, `token`..., then `done` or `error`)",
          "content": {"text/event-stream": {"example":
              'event: routed\ndata: {"request_id":"api-1a2b","model_id":"qwen-0.5b","explanation":"...",'
              '"will_load":false}\n\n'
              'event: token\ndata: {"text":" Hello"}\n\n'
              'event: done\ndata: {"text":" Hello!","model":"qwen-0.5b","finish_reason":"stop",...}\n\n'}}},
    **ERROR_RESPONSES,
}


def _options(body: QuickRequest | ChatRequest | BatchRequest) -> dict[str, Any]:
    """The engine's keyword arguments from a body (None: the engine's default)."""
    mode = body.mode
    if body.model is not None and "mode" not in body.model_fields_set:
        mode = "manual"  # naming a model without a mode means that model
    options: dict[str, Any] = {"mode": mode, "source": SOURCE}
    if body.model is not None and mode != "auto":
        # manual uses `model`; hybrid prefers it; an explicit auto picks by itself
        options["model" if mode == "manual" else "preferred"] = body.model
    for name in ("max_tokens", "temperature", "top_p", "stop", "seed", "request_id"):
        value = getattr(body, name, None)
        if value is not None:
            options[name] = tuple(value) if name == "stop" else value
    return options


def _gone() -> JSONResponse:
    """499 (nobody reads it; the request is counted so)."""
    return JSONResponse(error_body("Cancelled", "the client closed the request; its generation was cancelled"),
                        status_code=499)


def _error_frame(exc: BaseException) -> bytes:
    if isinstance(exc, OrinError):
        return sse("error", error_body(type(exc).__name__, str(exc), status=status_for(exc)))
    return sse("error", error_body("InternalError", f"internal error: {type(exc).__name__}; see the server log",
                                   status=500))


async def _frames(request: Request, stream: AsyncEngineStream) -> AsyncIterator[bytes]:
    """The SSE frames of a routed stream; cancelled when the client goes away (Starlette
    cancels this generator), which cancels the generation."""
    shutdown = shutdown_of(request.app)
    unregister = shutdown.on_shutdown(stream.cancel)  # thread-safe: ends the stream within a token
    try:
        yield sse("routed", {"request_id": stream.request_id, "model_id": sanitize(stream.model_id),
                             "explanation": sanitize(stream.explanation), "will_load": stream.will_load})
        try:
            async for piece in stream:
                if shutdown.is_set:
                    break
                yield sse("token", {"text": piece})
        except Exception as exc:  # noqa: BLE001 - the client gets it as the last event
            yield shutting_down_frame() if shutdown.is_set else _error_frame(exc)
            return
        if shutdown.is_set:
            yield shutting_down_frame()
        elif stream.result is not None:
            yield sse("done", result_to_dict(stream.result))
    finally:
        unregister()
        stream.cancel()  # sync, so it happens even when this generator is being cancelled
        with contextlib.suppress(BaseException):
            await asyncio.shield(stream.aclose())


async def _answer(request: Request, stream: AsyncEngineStream, streamed: bool) -> Any:
    shutdown = shutdown_of(request.app)
    if shutdown.is_set:
        return JSONResponse(error_body("ShuttingDown", "the server is shutting down"), status_code=503)
    if streamed:
        await stream.start()  # routing errors are HTTP errors, before the stream begins
        return EventSourceResponse(_frames(request, stream), headers=SSE_HEADERS)
    unregister = shutdown.on_shutdown(stream.cancel)
    try:
        async with stream:
            result = await unless_gone(request, stream.collect(), stream.cancel)
    except ClientGone:
        return _gone()
    finally:
        unregister()
    if shutdown.is_set:
        return JSONResponse(error_body("ShuttingDown", "the server shut down during the generation"),
                            status_code=503)
    return result_to_dict(result)


@router.post("/quick/generate", response_model=GenerationResult, responses=_STREAM_DOC,
             summary="The seed's quick start: one prompt, the model chosen for you")
async def quick_generate(body: QuickRequest, request: Request, core: CoreDep) -> Any:
    """Detects the task, picks the model (loading it if needed) and answers.
    `{"prompt": "Hello world", "max_tokens": 50}` is enough."""
    options = _options(body)
    return await _answer(request, astream_quick(core.engine, body.prompt, incremental=body.stream, **options),
                         body.stream)


@router.post("/generate", response_model=GenerationResult, responses=_STREAM_DOC,
             summary="One prompt with every generation parameter")
async def generate(body: GenerateRequest, request: Request, core: CoreDep) -> Any:
    """As `/quick/generate`, with `top_p`, `stop`, `seed` and your own `request_id`."""
    options = _options(body)
    return await _answer(request, astream_quick(core.engine, body.prompt, incremental=body.stream, **options),
                         body.stream)


@router.post("/chat", response_model=GenerationResult, responses=_STREAM_DOC,
             summary="A chat through the model's own chat template")
async def chat(body: ChatRequest, request: Request, core: CoreDep) -> Any:
    """Messages oldest first; at least one from the user."""
    options = _options(body)
    messages = [{"role": m.role, "content": m.content} for m in body.messages]
    return await _answer(request, astream_chat(core.engine, messages, incremental=body.stream, **options),
                         body.stream)


@router.post("/batch", response_model=BatchResponse, responses=ERROR_RESPONSES,
             summary="Several prompts, one after another")
async def batch(body: BatchRequest, request: Request, core: CoreDep) -> Any:
    """Each item is routed on its own (a string: quick; a list of messages: chat). A member
    that fails is `{"ok": false, "index", "error", "kind", "model"}`; the rest still run."""
    items: list[Any] = [item if isinstance(item, str) else [{"role": m.role, "content": m.content} for m in item]
                        for item in body.items]
    options = _options(body)
    shutdown = shutdown_of(request.app)
    if shutdown.is_set:
        return JSONResponse(error_body("ShuttingDown", "the server is shutting down"), status_code=503)
    stream: BatchStream = await asyncio.to_thread(core.engine.stream_batch, items, incremental=False, **options)
    unregister = shutdown.on_shutdown(stream.cancel)
    try:
        results = await unless_gone(request, asyncio.to_thread(_collect_batch, stream), stream.cancel)
    except ClientGone:
        return _gone()
    except BaseException:
        stream.cancel()  # the awaiting task was cancelled: stop the member in progress
        raise
    finally:
        unregister()
    out: list[dict[str, Any]] = []
    for member in results:
        if isinstance(member, BatchFailure):
            failure = member.to_dict()
            out.append({"ok": False, **{k: sanitize(v) if isinstance(v, str) else v for k, v in failure.items()}})
        else:
            out.append({"ok": True, **result_to_dict(member)})
    return {"results": out}



def _collect_batch(stream: BatchStream) -> list[Result | BatchFailure]:
    for _ in stream:
        pass
    return list(stream.results)
