"""The SDK against a live server: uvicorn on a free loopback port in a thread, over
``create_app(make_core(folder))`` with the tiny pair (``alpha``: chat, ram; ``beta``: code,
swap). The seed's quick start runs as docs/sdk.md writes it; model operations end to end;
events; errors as the real server answers them; a token; a server stopping mid-stream."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from orin_console.api.app import create_app
from orin_console.client import (
    AdmissionRefusedError,
    AuthenticationError,
    GenerationResult,
    NotFoundError,
    OrinClient,
    PermissionDeniedError,
    ServerError,
    ValidationError,
)
from orin_console.core import Core
from orin_console.core.memory.admission import Budgets
from orin_console.testing.managers import make_core, settings_for

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sdk.md"
TOKEN = "live-s3cret"


class Live:
    """A running server: its URL and its app (for shutting streams down)."""

    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app


@contextmanager
def serving(core: Core, **options: Any) -> Iterator[Live]:
    app = create_app(core, **options)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sdk-live-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the live server did not start"
        time.sleep(0.01)
    try:
        yield Live(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the live server did not stop"


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    (workdir / "incoming").mkdir()
    shutil.copyfile(workdir / "alpha.gguf", workdir / "incoming" / "gamma.gguf")
    settings = settings_for(workdir, model_folders=[workdir / "incoming"])
    with make_core(workdir, settings=settings) as built:
        yield built


@pytest.fixture
def live(core: Core) -> Iterator[Live]:
    with serving(core) as server:
        yield server


def quick_start_code() -> str:
    """The quick start as docs/sdk.md writes it (the first python block after the marker)."""
    text = DOCS.read_text()
    marker = text.index("<!-- quick-start")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match, "docs/sdk.md lost its quick start block"
    return match.group(1)


def test_the_quick_start_runs_as_written(live: Live, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = quick_start_code()
    assert "OrinClient()" in code and "from orin_console.client import OrinClient" in code
    monkeypatch.setenv("ORIN_API_URL", live.url)  # OrinClient() reads it: the block runs unchanged
    exec(compile(code, str(DOCS), "exec"), {"__name__": "quick_start"})
    out = capsys.readouterr().out
    assert out.rstrip().endswith("Models: 2")
    lines = out.splitlines()
    assert len(lines) >= 4 and all(line.strip() for line in lines[:3]), out


def test_generation_calls_answer_with_typed_results(live: Live) -> None:
    async def main() -> None:
        async with OrinClient(live.url) as client:
            quick = await client.inference.quick_generate("The future of AI is", max_tokens=8)
            assert isinstance(quick, GenerationResult) and quick.text and quick.text == quick["text"]
            assert quick.model_id in ("alpha", "beta") and quick.explanation and 0 < quick.tokens <= 8

            chat = await client.inference.chat([{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Hello!"}], max_tokens=6, model="alpha")
            assert chat.model_id == "alpha" and chat.mode == "manual" and chat.task == "chat"

            generated = await client.inference.generate("def fib(n):", max_tokens=6, temperature=0, seed=1,
                                                        stop=["\n\n"], request_id="sdk-live-1")
            assert generated.request_id == "sdk-live-1" and generated.finish_reason in ("length", "stop")

            stream = client.inference.stream(prompt="Hello", max_tokens=12, model="alpha")
            pieces = [piece async for piece in stream]
            assert len(pieces) >= 2 and stream.routed is not None and stream.routed.model_id == "alpha"
            assert stream.result is not None and "".join(pieces) == stream.result.text

            chat_text = await client.inference.stream(messages="Hi", max_tokens=4).text()
            assert chat_text

            batch = await client.inference.batch(["Hello", [{"role": "user", "content": "Hi"}]], max_tokens=4)
            assert [item.ok for item in batch] == [True, True]
            assert all(isinstance(item, GenerationResult) and item.text for item in batch)

            stats = await client.models.stats("alpha")
            assert stats.requests >= 2 and stats.tokens > 0 and stats["id"] == "alpha"

    asyncio.run(main())


def test_model_operations_end_to_end(live: Live, workdir: Path) -> None:
    async def main() -> None:
        async with OrinClient(live.url) as client:
            models = await client.models.list()
            assert [m.id for m in models] == ["alpha", "beta"] and not any(m.loaded for m in models)
            assert (await client.models.get("beta")).tasks == ["code"]

            verdict = await client.models.plan("alpha", tier="ram")
            assert verdict.ok and verdict.needed["total"] > 0 and verdict.summary

            loaded = await client.models.load("alpha", "swap")
            assert loaded.ok and loaded.action == "load" and loaded.tier == "swap"
            alpha = await client.models.get("alpha")
            assert alpha.state == "ready" and alpha.tier == "swap" and alpha.loaded

            moved = await client.models.move("alpha", "ram")
            assert moved.ok and (await client.models.get("alpha")).tier == "ram"
            status = await client.system.get_system_status()
            assert status.loaded["ram"] == ["alpha"] and status["models"]["states"]["alpha"] == "ready"
            ram = status.tier("ram")
            assert ram is not None and "alpha" in ram.models and ram.used_bytes

            pinned = await client.models.pin("alpha")
            assert pinned.pin and not (await client.models.pin("alpha", pinned=False)).pin

            started = await client.models.unload("alpha", wait=False)
            assert started.action == "unload"
            ended = await client.models.wait(started, timeout=30)
            assert ended.ok and (await client.models.get("alpha")).state == "unloaded"
            assert (await client.models.operation(started.id)).state == "done"

            added = await client.models.add(str(workdir / "incoming" / "gamma.gguf"), id="gamma", tasks=["chat"])
            assert [m.id for m in added.added] == ["gamma"] and added.refused == []
            assert (await client.system.get_system_status()).total == 3

            with pytest.raises(PermissionDeniedError, match="model folders"):
                await client.models.add(str(workdir / "beta.gguf"))
            with pytest.raises(NotFoundError) as missing:
                await client.models.get("nope")
            assert missing.value.status == 404 and missing.value.type == "CatalogError"
            with pytest.raises(NotFoundError):
                await client.models.operation("op-nope")
            with pytest.raises(ValueError, match="tier must be one of 'ram', 'swap', not 'attic'"):
                await client.models.load("alpha", "attic")  # refused before sending
            with pytest.raises(ValidationError) as bad_id:  # the server's own check, through the SDK
                await client.models.add(str(workdir / "incoming" / "gamma.gguf"), id="gamma")
            assert bad_id.value.status == 422 and "already in the catalog" in str(bad_id.value)

    asyncio.run(main())


def test_a_refused_load_raises_with_the_reasons_and_suggestions(workdir: Path) -> None:
    budgets = Budgets(ram=120 * 2**20, swap=10 * 2**30, max_model=7 * 2**30, reserve=512 * 2**20)

    async def main(url: str) -> None:
        async with OrinClient(url) as client:
            await client.models.load("alpha", "ram")
            verdict = await client.models.plan("beta", tier="ram")
            assert not verdict.ok and verdict.reasons and verdict.suggestions
            with pytest.raises(AdmissionRefusedError) as refused:
                await client.models.load("beta", "ram")
            error = refused.value
            assert error.status == 409 and error.type == "AdmissionRefused"
            assert error.reasons and any("alpha" in s for s in error.suggestions)
            assert (await client.models.get("beta")).state == "unloaded"

    with make_core(workdir, budgets=budgets) as core, serving(core) as live:
        asyncio.run(main(live.url))


def test_errors_from_the_server_carry_its_answer(live: Live) -> None:
    async def main() -> None:
        async with OrinClient(live.url) as client:
            with pytest.raises(ValueError, match="max_tokens must be from 1 to 131072"):
                await client.inference.quick_generate("x", max_tokens=10**9)  # refused before sending
            with pytest.raises(ValidationError) as too_many:  # within the API's bound, over the model's context
                await client.inference.quick_generate("x", max_tokens=100_000)
            assert too_many.value.status == 422 and "max_tokens" in str(too_many.value)
            with pytest.raises(ValueError, match="mode must be one of"):
                await client.inference.generate("x", mode="telepathic")
            with pytest.raises(NotFoundError):
                await client.inference.chat("Hi", model="nope")
            with pytest.raises(NotFoundError):  # refused before the stream begins: by status
                await client.inference.stream(prompt="x", model="nope").text()

    asyncio.run(main())


def test_events_report_a_load_and_the_servers_shutdown(live: Live) -> None:
    from orin_console.api.routes.events import begin_shutdown

    async def main() -> list[Any]:
        async with OrinClient(live.url) as client:
            seen: list[Any] = []
            subscribed = asyncio.Event()

            async def watch() -> None:
                async for event in client.events(kinds=["ModelStateChanged"], snapshot=True):
                    seen.append(event)
                    subscribed.set()
                    if event.kind == "ModelStateChanged" and event["status"]["state"] == "ready":
                        return

            watcher = asyncio.create_task(watch())
            live_now = asyncio.create_task(subscribed.wait())  # the Snapshot: the subscription is live
            done, _ = await asyncio.wait({watcher, live_now}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:
                watcher.result()  # the feed ended or failed before it began: say why
            assert live_now in done, "no Snapshot within 10 s"
            await client.models.load("beta")
            await asyncio.wait_for(watcher, 30)

            async def drain() -> None:
                async for _ in client.events(snapshot=True):
                    begin_shutdown(live.app)  # the server stops: the feed ends with its error

            with pytest.raises(ServerError, match="ShuttingDown"):
                await asyncio.wait_for(drain(), 10)
            return seen

    seen = asyncio.run(main())
    assert seen[0].kind == "Snapshot" and seen[0]["reason"] == "subscribed"
    states = [e["status"]["state"] for e in seen[1:]]
    assert states[-1] == "ready" and "loading" in states and all(e["model_id"] == "beta" for e in seen[1:])


def test_a_token_is_needed_and_accepted(core: Core) -> None:
    async def main(url: str) -> None:
        async with OrinClient(url) as anonymous:
            assert (await anonymous.system.health()).status == "ok"  # health needs no token
            with pytest.raises(AuthenticationError) as refused:
                await anonymous.system.get_system_status()
            assert refused.value.status == 401 and refused.value.type == "Unauthorized"
            with pytest.raises(AuthenticationError):
                await anonymous.inference.stream(prompt="x").text()
        async with OrinClient(url, token="wrong") as wrong:
            with pytest.raises(AuthenticationError):
                await wrong.models.list()
        async with OrinClient(url, token=TOKEN) as client:
            assert (await client.system.get_system_status())["models"]["total"] == 2
            assert (await client.inference.quick_generate("Hello", max_tokens=3)).text

    with serving(core, token=TOKEN) as live:
        asyncio.run(main(live.url))


def test_leaving_a_stream_early_frees_the_model_and_shutdown_ends_a_stream(live: Live) -> None:
    from orin_console.api.routes.events import begin_shutdown

    async def main() -> None:
        async with OrinClient(live.url) as client:
            # 1500 tokens take about 2.5 s on the tiny model: leaving after the first piece must
            # free the model far sooner (the SDK closes the connection; the server cancels)
            async with client.inference.stream(prompt="Once", max_tokens=1500, model="alpha") as stream:
                async for _ in stream:
                    break
            deadline = time.monotonic() + 1.0
            while (await client.models.get("alpha")).busy:
                assert time.monotonic() < deadline, "the generation went on after the client left"
                await asyncio.sleep(0.02)
            again = await client.inference.quick_generate("Hello", max_tokens=3, model="alpha")
            assert again.model_id == "alpha" and again.text

            pieces: list[str] = []
            with pytest.raises(ServerError, match="ShuttingDown") as down:
                async for piece in client.inference.stream(prompt="Once", max_tokens=2000, model="alpha"):
                    pieces.append(piece)
                    if len(pieces) == 2:
                        begin_shutdown(live.app)
            assert down.value.type == "ShuttingDown" and len(pieces) >= 2
            with pytest.raises(ServerError) as refused:  # after shutdown began: 503
                await client.inference.quick_generate("Hello", max_tokens=3)
            assert refused.value.status == 503

    asyncio.run(main())
