"""The SDK against scripted answers (``httpx.MockTransport``): requests as the API takes them,
answers parsed into typed results, every error class from the server's answer, SSE, operations
followed to the end, connection failures. tests/test_sdk_live.py drives a real server."""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from orin_console.client import (
    AdmissionRefusedError,
    AuthenticationError,
    BatchFailure,
    BusyError,
    GenerationResult,
    NotFoundError,
    OperationFailedError,
    OrinAPIError,
    OrinClient,
    OrinClientError,
    OrinConnectionError,
    OrinTimeoutError,
    PermissionDeniedError,
    PromptTooLongError,
    ServerError,
    ValidationError,
)

Handler = Callable[[httpx.Request], httpx.Response]

RESULT = {"text": " Hello there", "model": "alpha", "model_id": "alpha", "task": "chat", "mode": "auto",
          "explanation": "chat: greeting; auto picked `alpha`", "ttft_s": 0.01, "tok_per_s": 50.0,
          "prompt_tokens": 3, "tokens": 4, "finish_reason": "length", "request_id": "api-1", "notes": [],
          "something_new": 1}


def run(test: Callable[[OrinClient], Awaitable[Any]], handler: Handler, **options: Any) -> Any:
    async def main() -> Any:
        async with OrinClient(transport=httpx.MockTransport(handler), **options) as client:
            return await test(client)

    return asyncio.run(main())


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def sse(*frames: tuple[str, Any], comment: bool = True) -> httpx.Response:
    text = ": connected\n\n" if comment else ""
    text += "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in frames)
    return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


def error(status: int, kind: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"type": kind, "message": message, **extra}})


# -- requests and results ------------------------------------------------------------------------


def test_quick_generate_sends_the_seed_body_and_reads_the_result_both_ways() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RESULT)

    result = run(lambda c: c.inference.quick_generate("The future of AI is", max_tokens=50), handler)
    assert seen[0].method == "POST" and seen[0].url == "http://127.0.0.1:8000/quick/generate"
    assert body_of(seen[0]) == {"prompt": "The future of AI is", "max_tokens": 50}  # None parameters are not sent
    assert seen[0].headers["user-agent"].startswith("orin-console-sdk/")
    assert "authorization" not in seen[0].headers
    assert isinstance(result, GenerationResult)
    assert result.text == result["text"] == str(result) == " Hello there"
    assert result.model_id == "alpha" and result.tokens == 4 and result.ttft_s == 0.01 and result.ok
    assert result["something_new"] == 1 and result.to_dict() == RESULT  # nothing the server adds is lost


def test_chat_takes_a_string_or_messages_and_model_means_manual() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/chat"
        bodies.append(body_of(request))
        return httpx.Response(200, json=RESULT)

    async def calls(client: OrinClient) -> None:
        await client.inference.chat("Hello!")
        await client.inference.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                                    model="beta", temperature=0, stop="\n", seed=3)
        await client.inference.chat("Hi", model="beta", mode="hybrid")

    run(calls, handler)
    assert bodies[0] == {"messages": [{"role": "user", "content": "Hello!"}]}
    assert bodies[1] == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                         "model": "beta", "mode": "manual", "temperature": 0, "stop": ["\n"], "seed": 3}
    assert bodies[2]["mode"] == "hybrid"


def test_wrong_argument_types_are_refused_before_sending() -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # pragma: no cover - nothing may be sent
        raise AssertionError(f"sent {request.url}")

    cases: list[Callable[[OrinClient], Awaitable[Any]]] = [
        lambda c: c.inference.quick_generate(["not", "a", "str"]),  # type: ignore[arg-type]
        lambda c: c.inference.quick_generate("x", max_tokens="50"),  # type: ignore[arg-type]
        lambda c: c.inference.quick_generate("x", max_tokens=True),
        lambda c: c.inference.chat([{"role": "user"}]),  # type: ignore[list-item]
        lambda c: c.inference.chat(42),  # type: ignore[arg-type]
        lambda c: c.inference.generate("x", stop=[1]),  # type: ignore[list-item]
        lambda c: c.inference.batch("one prompt"),
        lambda c: c.models.load("alpha", tier=1),  # type: ignore[arg-type]
        lambda c: c.models.pin("alpha", pinned="yes"),  # type: ignore[arg-type]
        lambda c: c.models.get(""),
    ]
    for case in cases:
        with pytest.raises(TypeError):
            run(case, handler)
    with pytest.raises(TypeError, match="exactly one"):
        run(lambda c: c.inference.stream(prompt="a", messages="b").text(), handler)
    with pytest.raises(ValueError, match="http"):
        OrinClient("127.0.0.1:8000")


def test_a_token_is_sent_as_bearer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer s3cret"
        return httpx.Response(200, json={"status": "ok", "version": "0.1.0"})

    health = run(lambda c: c.system.health(), handler, token="s3cret")
    assert health.status == "ok" and health["version"] == "0.1.0"


def test_system_status_is_a_mapping_with_typed_accessors() -> None:
    status_json = {
        "models": {"total": 2, "loaded": {"ram": ["alpha"], "swap": []},
                   "states": {"alpha": "ready", "beta": "unloaded"}},
        "tiers": [{"tier": "ram", "budget_bytes": 1000, "used_bytes": 400, "free_bytes": 600, "models": ["alpha"]},
                  {"tier": "swap", "budget_bytes": 2000, "used_bytes": 0, "free_bytes": 2000, "models": []}],
        "memory": {"available_bytes": 5}, "telemetry": None, "uptime_s": 1.5,
    }
    status = run(lambda c: c.system.get_system_status(),
                 lambda r: httpx.Response(200, json=status_json))
    assert status["models"]["total"] == 2 == status.total
    assert status.loaded == {"ram": ["alpha"], "swap": []} and status.states["beta"] == "unloaded"
    ram = status.tier("ram")
    assert ram is not None and ram.free_bytes == 600 and ram["used_bytes"] == 400
    assert status.telemetry is None and status.uptime_s == 1.5 and dict(status) == status_json


def test_models_calls_hit_their_routes() -> None:
    info = {"id": "alpha", "file": "alpha.gguf", "tasks": ["chat"], "preferred_tier": "ram", "tier": "disk",
            "state": "unloaded", "pin": True, "progress": None, "predicted_bytes": 10, "measured_bytes": None,
            "resident": None, "error": None, "requests": 0, "tok_per_s": None, "notes": []}
    verdict = {"ok": False, "model_id": "alpha", "tier": "ram", "action": "load", "summary": "does not fit",
               "explanation": "does not fit; ...", "reasons": ["needs 4 GB"],
               "suggestions": [{"action": "unload", "model_id": "beta", "from_tier": "ram", "to_tier": None,
                                "helps": True, "text": "unloading `beta` frees 1 GB"}],
               "needed": {"total": 4}, "free": {"tier": 1}, "strategy": None}
    routes = {
        ("GET", "/models/list"): {"models": [info]},
        ("GET", "/models/alpha"): info,
        ("POST", "/models/alpha/pin"): info,
        ("GET", "/models/alpha/plan"): verdict,
        ("GET", "/models/alpha/stats"): {"id": "alpha", "requests": 3, "tokens": 30, "ttft_s": 0.1, "tok_per_s": 9.0},
        ("POST", "/models/add"): {"added": [info], "refused": [{"path": "/m/x.gguf", "reason": "not a GGUF"}]},
    }
    seen: list[tuple[str, str, Any, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, body_of(request), request.url.query.decode()))
        return httpx.Response(200, json=routes[(request.method, request.url.path)])

    async def calls(client: OrinClient) -> list[Any]:
        return [await client.models.list(), await client.models.get("alpha"), await client.models.pin("alpha"),
                await client.models.plan("alpha", tier="ram"), await client.models.stats("alpha"),
                await client.models.add("/m/a.gguf", tasks=["chat"], tier="ram", context=512)]

    listed, got, pinned, plan, stats, added = run(calls, handler)
    assert [m.id for m in listed] == ["alpha"] and got.pin and not got.loaded and got.tier == "disk"
    assert pinned["pin"] is True and seen[2][2] == {"pinned": True}
    assert not plan.ok and plan.reasons == ["needs 4 GB"] and str(plan.suggestions[0]) == "unloading `beta` frees 1 GB"
    assert plan.suggestions[0].model_id == "beta" and seen[3][3] == "tier=ram"
    assert stats.requests == 3 and stats.tok_per_s == 9.0
    assert added.added[0].id == "alpha" and added.refused[0].reason == "not a GGUF"
    assert seen[5][2] == {"path": "/m/a.gguf", "tasks": ["chat"], "tier": "ram", "context": 512}


def test_a_model_id_is_one_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return error(404, "CatalogError", "unknown model")

    with pytest.raises(ValueError, match=re.escape("model_id: '../system/status' is not a catalog id")):
        run(lambda c: c.models.get("../system/status"), handler)
    assert paths == []  # refused before anything was sent
    with pytest.raises(NotFoundError):
        run(lambda c: c.models.get("qwen2.5-0.5b_q4"), handler)
    assert paths == ["/models/qwen2.5-0.5b_q4"]


def test_batch_gives_results_and_failures_in_order() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert body_of(request) == {"items": ["a", [{"role": "user", "content": "b"}]], "max_tokens": 4}
        return httpx.Response(200, json={"results": [
            {"ok": True, **RESULT},
            {"ok": False, "index": 1, "error": "the model's queue is full", "kind": "ModelBusy", "model": "beta"}]})

    first, second = run(lambda c: c.inference.batch(["a", [{"role": "user", "content": "b"}]], max_tokens=4), handler)
    assert isinstance(first, GenerationResult) and first.ok and first.text == " Hello there"
    assert isinstance(second, BatchFailure) and not second.ok
    assert (second.index, second.kind, second.model_id) == (1, "ModelBusy", "beta")


# -- operations ----------------------------------------------------------------------------------


def operation(state: str, **extra: Any) -> dict[str, Any]:
    return {"id": "op-1", "model_id": "alpha", "action": "load", "tier": "ram", "state": state,
            "progress": None, "error": None, "created": 1.0, **extra}


def test_load_follows_the_operation_until_it_is_done() -> None:
    answers = iter([operation("running", progress=0.5), operation("running", progress=0.9), operation("done")])
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, body_of(request)))
        if request.method == "POST":
            return httpx.Response(202, json={"operation": operation("running")})
        return httpx.Response(200, json={"operation": next(answers)})

    done = run(lambda c: c.models.load("alpha", "ram"), handler)
    assert done.ok and done.done and done.state == "done"
    assert seen[0] == ("POST", "/models/alpha/load", {"tier": "ram"})
    assert [s[1] for s in seen[1:]] == ["/operations/op-1"] * 3

    started = run(lambda c: c.models.unload("alpha", wait=False), handler)
    assert started.state == "running" and not started.done and seen[-1][1] == "/models/alpha/unload"


def test_a_failed_operation_raises_with_the_servers_error() -> None:
    failed = operation("failed", error={"type": "RunnerFailedToLoad", "message": "llama.cpp refused the file"})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"operation": operation("running", action="move")})
        return httpx.Response(200, json={"operation": failed})

    with pytest.raises(OperationFailedError, match=r"llama\.cpp refused the file") as caught:
        run(lambda c: c.models.move("alpha", "ram"), handler)
    assert caught.value.type == "RunnerFailedToLoad" and caught.value.operation.state == "failed"
    assert isinstance(caught.value, OrinAPIError)


def test_waiting_for_an_operation_can_time_out() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.method == "GET" else 202, json={"operation": operation("running")})

    with pytest.raises(OrinTimeoutError, match="still running"):
        run(lambda c: c.models.load("alpha", timeout=0.2), handler)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind", "cls"), [
    (401, "Unauthorized", AuthenticationError),
    (403, "PathNotAllowed", PermissionDeniedError),
    (404, "SelectionError", NotFoundError),
    (409, "AdmissionRefused", AdmissionRefusedError),
    (422, "ValidationError", ValidationError),
    (429, "ModelBusy", BusyError),
    (500, "InternalError", ServerError),
    (502, "RunnerDied", ServerError),
    (503, "ShuttingDown", ServerError),
    (413, "BodyTooLarge", OrinAPIError),
    (413, "PromptTooLong", PromptTooLongError),
    (499, "Cancelled", OrinAPIError),
])
def test_each_status_raises_its_class_with_the_servers_error(status: int, kind: str, cls: type[OrinAPIError]) -> None:
    extra: dict[str, Any] = {"field": "max_tokens"} if status == 422 else {}
    if status == 409:
        extra = {"reasons": ["needs 4 GB, has 1 GB"], "suggestions": ["unload `beta`"]}

    with pytest.raises(cls) as caught:
        run(lambda c: c.inference.quick_generate("x"), lambda r: error(status, kind, "what went wrong", **extra))
    exc = caught.value
    assert type(exc) is cls and (exc.status, exc.type, exc.message) == (status, kind, "what went wrong")
    assert kind in str(exc) and f"HTTP {status}" in str(exc)
    if status == 422:
        assert exc.field == "max_tokens" and "max_tokens" in str(exc)
    if status == 409:
        assert isinstance(exc, AdmissionRefusedError)
        assert exc.reasons == ["needs 4 GB, has 1 GB"] and exc.suggestions == ["unload `beta`"]
        assert "unload `beta`" in str(exc)
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is cls and copy.body == exc.body


def test_an_error_that_is_not_the_seed_shape_is_still_raised_by_status() -> None:
    with pytest.raises(ServerError, match="502 Bad Gateway: upstream gone"):
        run(lambda c: c.system.health(), lambda r: httpx.Response(502, text="upstream gone"))
    with pytest.raises(OrinAPIError, match="not JSON"):
        run(lambda c: c.system.health(), lambda r: httpx.Response(200, text="<html>"))


def test_a_timeout_and_a_broken_connection_are_connection_errors() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    with pytest.raises(OrinTimeoutError, match=r"http://127.0.0.1:8000/system/status did not.*timeout=") as slow:
        run(lambda c: c.system.get_system_status(), timeout)
    assert slow.value.url == "http://127.0.0.1:8000/system/status" and "ReadTimeout" in slow.value.reason
    with pytest.raises(OrinConnectionError, match=r"/system/status broke.*peer closed.*orin-console serve") as lost:
        run(lambda c: c.system.get_system_status(), broken)
    assert str(pickle.loads(pickle.dumps(lost.value))) == str(lost.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_server_that_is_not_running_is_named_with_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def main() -> None:
        async with OrinClient(url) as client:
            await client.system.get_system_status()

    with pytest.raises(OrinConnectionError) as caught:
        asyncio.run(main())
    message = str(caught.value)
    assert f"{url}/system/status" in message and "orin-console serve" in message
    assert caught.value.url == f"{url}/system/status"

    async def streamed() -> None:
        async with OrinClient(url) as client:
            async for _ in client.inference.stream(prompt="x"):
                pass

    with pytest.raises(OrinConnectionError, match="orin-console serve"):
        asyncio.run(streamed())


# -- streams -------------------------------------------------------------------------------------


def test_stream_yields_text_and_keeps_the_route_and_the_result() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse(("routed", {"request_id": "api-1", "model_id": "alpha", "explanation": "auto", "will_load": True}),
                   ("token", {"text": " Hel"}), ("token", {"text": "lo"}), ("done", RESULT))

    async def main(client: OrinClient) -> Any:
        stream = client.inference.stream(prompt="Hi", max_tokens=8)
        pieces = [piece async for piece in stream]
        return stream, pieces

    stream, pieces = run(main, handler)
    assert pieces == [" Hel", "lo"]
    assert seen[0].url.path == "/generate" and body_of(seen[0]) == {"prompt": "Hi", "max_tokens": 8, "stream": True}
    assert seen[0].headers["accept"] == "text/event-stream"
    assert stream.routed.model_id == "alpha" and stream.routed.will_load
    assert stream.result.text == " Hello there" and stream.result.finish_reason == "length"

    def chat_handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/chat" and body_of(request)["messages"] == [{"role": "user", "content": "Hi"}]
        return handler(request)

    assert run(lambda c: c.inference.stream(messages="Hi").text(), chat_handler) == " Hello"


def test_a_stream_error_event_raises_the_servers_error() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return sse(("routed", {"model_id": "alpha"}), ("token", {"text": "a"}),
                   ("error", {"error": {"type": "ModelBusy", "message": "queue full", "status": 429}}))

    def shutting_down(request: httpx.Request) -> httpx.Response:
        return sse(("token", {"text": "a"}), ("error", {"error": {"type": "ShuttingDown", "message": "bye"}}))

    pieces: list[str] = []

    async def main(client: OrinClient) -> None:
        async for piece in client.inference.stream(prompt="x"):
            pieces.append(piece)

    with pytest.raises(BusyError, match="queue full") as caught:
        run(main, busy)
    assert caught.value.status == 429 and pieces == ["a"]
    with pytest.raises(ServerError, match=r"ShuttingDown \(in the stream\): bye") as down:
        run(main, shutting_down)
    assert down.value.status is None


def test_a_stream_refused_before_it_starts_raises_by_status() -> None:
    with pytest.raises(NotFoundError, match="no model can serve"):
        run(lambda c: c.inference.stream(prompt="x", model="nope").text(),
            lambda r: error(404, "SelectionError", "no model can serve this"))


def test_a_stream_that_ends_without_done_is_an_error() -> None:
    with pytest.raises(OrinClientError, match="without a done event"):
        run(lambda c: c.inference.stream(prompt="x").text(), lambda r: sse(("token", {"text": "a"})))


def test_events_sends_the_filter_and_skips_keepalives() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = (": connected\n\n: ping\n\n"
                'event: Snapshot\ndata: {"status": {"models": []}, "reason": "subscribed", "ts": 1.0}\n\n'
                'event: LoadProgress\ndata: {"model_id": "alpha", "tier": "ram", "fraction": 0.5, "ts": 2.0}\n\n')
        return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})

    async def main(client: OrinClient) -> list[Any]:
        return [event async for event in client.events(kinds=["LoadProgress"], snapshot=True)]

    events = run(main, handler)
    assert seen[0].url.params["kinds"] == "LoadProgress" and seen[0].url.params["snapshot"] == "1"
    assert [e.kind for e in events] == ["Snapshot", "LoadProgress"]
    assert events[1]["fraction"] == 0.5 and events[1].ts == 2.0

    def shutting_down(request: httpx.Request) -> httpx.Response:
        return sse(("ModelStateChanged", {"model_id": "alpha"}),
                   ("error", {"error": {"type": "ShuttingDown", "message": "the server is shutting down"}}))

    got: list[Any] = []

    async def collect(client: OrinClient) -> None:
        async for event in client.events("ModelStateChanged"):
            got.append(event)

    with pytest.raises(ServerError, match="shutting down"):
        run(collect, shutting_down)
    assert [e.kind for e in got] == ["ModelStateChanged"]


def test_the_sdk_imports_nothing_from_the_server() -> None:
    code = ("import sys, orin_console.client; "
            "bad = [m for m in sys.modules if m.startswith(('orin_console.core', 'orin_console.api', 'fastapi'))]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
