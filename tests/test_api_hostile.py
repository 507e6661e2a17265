"""Hostile input over the API (issue 11 part 7): JSON with lone surrogates in strings and keys,
huge and deeply nested bodies, wrong content types, bytes that are not UTF-8, NaN and overlong
numbers, duplicate keys, NUL bytes and path traversal in model ids and add paths, overlong ids.
Each gets a 4xx in its routes' error shape whose message names the problem; never a 500, never a
traceback; the catalog on disk is unchanged afterwards. A few malformed requests go to a live
server over a raw socket (what uvicorn refuses before the app), which keeps serving."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.core import Core
from orin_console.testing.managers import make_core, settings_for
from orin_console.testing.tiny_models import write_tiny_llama
from tests.api_live import live_server

JSON = {"content-type": "application/json"}
CATALOG = """\
[[models]]
id = "alpha"
path = "alpha.gguf"
tasks = ["chat"]
tier = "ram"
context = 512
"""
CHAT = '"messages": [{"role": "user", "content": "hi"}]'
SEED_BODY_ROUTES = ("/models/add", "/models/alpha/pin", "/models/alpha/move", "/models/alpha/load",
                    "/quick/generate", "/generate", "/chat", "/batch", "/placement/apply")
OPENAI_BODY_ROUTES = ("/v1/chat/completions", "/v1/completions")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("api-hostile")
    write_tiny_llama(work / "alpha.gguf", n_ctx=512, ascii_output=True)
    (work / "models.toml").write_text(CATALOG)
    incoming = work / "incoming"
    incoming.mkdir()
    shutil.copyfile(work / "alpha.gguf", incoming / "gamma.gguf")
    os.symlink("/etc/passwd", incoming / "escape.gguf")
    return work


@pytest.fixture(scope="module")
def core(folder: Path) -> Iterator[Core]:
    settings = settings_for(folder, model_folders=[folder / "incoming"])
    with make_core(folder, settings=settings) as built:
        yield built


@pytest.fixture(scope="module")
def api(core: Core) -> TestClient:
    return TestClient(create_app(core), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


@pytest.fixture(autouse=True)
def catalog_unchanged(folder: Path) -> Iterator[None]:
    before = (folder / "models.toml").read_bytes()
    yield
    assert (folder / "models.toml").read_bytes() == before, "a hostile request changed the catalog"


def refused(answer: httpx.Response, status: int | tuple[int, ...], *words: str) -> dict[str, Any]:
    """The answer is the expected 4xx in its routes' shape, naming the problem; no traceback."""
    statuses = (status,) if isinstance(status, int) else status
    assert answer.status_code in statuses, (answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    error = answer.json()["error"]
    assert isinstance(error["message"], str) and isinstance(error["type"], str)
    if answer.request.url.path.startswith("/v1/"):
        assert set(error) == {"message", "type", "param", "code"}, error
    for word in words:
        assert word in error["message"], (word, error["message"])
    return dict(error)


def post(api: TestClient, path: str, raw: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return api.post(path, content=raw, headers=JSON if headers is None else headers)


# -- lone surrogates ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "raw", "field"), [
    ("/models/add", b'{"path": "/data/\\ud800.gguf"}', "path"),
    ("/quick/generate", b'{"prompt": "a\\udfffb"}', "prompt"),
    ("/chat", b'{"messages": [{"role": "user", "content": "\\ud83d"}]}', "messages.0.content"),
    ("/batch", b'{"items": ["ok", "\\udc00"]}', "items.1"),
    ("/placement/apply", b'{"model_ids": ["\\ud800"]}', "model_ids.0"),
    ("/v1/chat/completions", b'{"model": "alpha", "messages": [{"role": "user", "content": "\\ud800"}]}',
     "messages[0].content"),
    ("/v1/completions", b'{"model": "alpha", "prompt": "x", "user": "\\ud800"}', "user"),
])
def test_a_lone_surrogate_in_a_string_is_refused_naming_the_field(api: TestClient, path: str, raw: bytes,
                                                                  field: str) -> None:
    error = refused(post(api, path, raw), (400, 422), "lone surrogate")
    assert error.get("field", error.get("param")) == field


@pytest.mark.parametrize("path", SEED_BODY_ROUTES + OPENAI_BODY_ROUTES)
def test_a_lone_surrogate_in_a_key_is_refused(api: TestClient, path: str) -> None:
    refused(post(api, path, b'{"\\ud800": 1}'), (400, 422), "a key holds a lone surrogate")
    refused(post(api, path, b'{"metadata": {"ok": {"\\udfff": "x"}}}'), (400, 422), "lone surrogate")


# -- size and depth -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ("/models/add", "/generate", "/v1/chat/completions"))
def test_a_huge_body_is_413_whether_its_length_is_announced_or_not(api: TestClient, path: str) -> None:
    big = b'{"prompt": "' + b"a" * (2 << 20) + b'"}'
    refused(post(api, path, big), 413, "limit")

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    refused(api.post(path, content=chunks(), headers=JSON), 413, "limit")


@pytest.mark.parametrize("path", SEED_BODY_ROUTES + OPENAI_BODY_ROUTES)
def test_a_body_nested_10000_levels_deep_is_refused(api: TestClient, path: str) -> None:
    refused(post(api, path, b"[" * 10_000 + b"]" * 10_000), 400, "nested")
    refused(post(api, path, b'{"a":' * 10_000 + b"1" + b"}" * 10_000), 400, "nested")
    refused(post(api, path, b'{"messages": ' + b"[" * 100 + b"]" * 100 + b"}"), 400, "nested more than 64")


# -- not JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "word"), [
    ("text/plain", "'text/plain'"), ("application/x-www-form-urlencoded", "JSON only"),
    ("multipart/form-data; boundary=x", "JSON only"), ("application/json; charset=latin-1", "UTF-8"),
    ("", "no Content-Type"),
])
@pytest.mark.parametrize("path", ("/models/alpha/pin", "/v1/chat/completions"))
def test_a_body_sent_as_something_else_than_json_is_415(api: TestClient, path: str, content_type: str,
                                                        word: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = api.post(path, content=b'{"pinned": true}', headers=headers)
    refused(answer, 415, word)
    for fine in ("application/json; charset=UTF-8", "application/json;charset=utf-8", "application/merge-patch+json"):
        assert api.post("/placement/apply", content=b"{}", headers={"content-type": fine}).status_code == 200


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"pinned": "\xff"}', ("not UTF-8", "0xff", "offset 12")),
    (b"\xfe\xff\x00{\x00}", ("not UTF-8",)),
    (b"\xef\xbb\xbf{}", ("byte-order mark",)),
    (b'{"pinned": tru', ("not JSON", "line 1")),
    (b"   ", ("not JSON",)),
    (b'{"prompt": "x", "temperature": NaN}', ("NaN is not JSON",)),
    (b'{"prompt": "x", "temperature": -Infinity}', ("-Infinity is not JSON",)),
    (b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}", ("5000 characters",)),
])
@pytest.mark.parametrize("path", ("/models/alpha/pin", "/quick/generate", "/v1/completions"))
def test_a_body_that_is_not_json_is_400_saying_why(api: TestClient, path: str, raw: bytes,
                                                   words: tuple[str, ...]) -> None:
    refused(post(api, path, raw), 400, *words)


@pytest.mark.parametrize(("path", "raw", "key"), [
    ("/models/alpha/pin", b'{"pinned": true, "pinned": false}', '"pinned"'),
    ("/placement/apply", b'{"model_ids": null, "model_ids": ["alpha"]}', '"model_ids"'),
    ("/chat", b'{"messages": [{"role": "user", "role": "system", "content": "x"}]}', '"role"'),
    ("/v1/chat/completions", b'{"model": "alpha", "model": "auto", ' + CHAT.encode() + b"}", '"model"'),
])
def test_a_duplicate_key_is_refused_naming_it(api: TestClient, core: Core, path: str, raw: bytes, key: str) -> None:
    refused(post(api, path, raw), (400, 422), key, "twice")
    assert core.manager.model_status("alpha").pin is False  # nothing was applied


# -- ids and paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["a%00b", "%ff", "%2e%2e", ".hidden", "a" * 65, "a" * 5000, "al%20pha",
                                      "%e2%80%ae"])
@pytest.mark.parametrize("route", ["GET /models/{}", "POST /models/{}/load", "POST /models/{}/unload",
                                   "GET /models/{}/plan", "GET /models/{}/stats"])
def test_a_bad_model_id_in_the_path_is_422_naming_it(api: TestClient, route: str, model_id: str) -> None:
    method, template = route.split()
    refused(api.request(method, template.format(model_id)), 422, "model_id", "is not a catalog id")


@pytest.mark.parametrize("target", ["/models/..%2F..%2Fsystem%2Fstatus", "/models/../../etc/passwd/load",
                                    "/models/alpha/%2e%2e/%2e%2e/system/status"])
def test_path_traversal_in_a_model_id_reaches_no_route(api: TestClient, target: str) -> None:
    answer = api.post(target)
    assert answer.status_code in (404, 405, 422), answer.text
    error = refused(answer, answer.status_code)
    if answer.status_code == 404:  # clients tell a missing route by "Not Found" (an older server)
        assert error["message"].startswith("Not Found: no route POST /"), error


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"path": "{incoming}/\x00gamma.gguf"}, 422, ("absolute path",)),
    ({"path": "{incoming}/gamma.gguf\x00.txt"}, 422, ("absolute path",)),
    ({"path": "{incoming}/../models.toml"}, 403, ("outside the configured model folders",)),
    ({"path": "{incoming}/../../../../etc/passwd"}, 403, ("outside",)),
    ({"path": "{incoming}/escape.gguf"}, 403, ("outside",)),  # a symlink out of the folder
    ({"path": "../incoming/gamma.gguf"}, 422, ("absolute path",)),
    ({"path": "{incoming}/" + "a" * 5000}, 422, ("at most 4096",)),
    ({"path": "{incoming}/gamma.gguf", "id": "../x"}, 422, ("is not a catalog id",)),
    ({"path": "{incoming}/gamma.gguf", "id": "a\x00b"}, 422, ("is not a catalog id",)),
    ({"path": "{incoming}/gamma.gguf", "id": "a" * 65}, 422, ("is not a catalog id",)),
    ({"path": "{incoming}/gamma.gguf", "id": "alpha"}, 422, ("already in the catalog",)),
    ({"path": "{incoming}/gamma.gguf", "tasks": ["chat", "chat"]}, 422, ()),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_hostile_add_paths_and_ids_are_refused(api: TestClient, folder: Path, body: dict[str, Any], status: int,
                                               words: tuple[str, ...], dry_run: bool) -> None:
    payload = {k: v.format(incoming=folder / "incoming") if k == "path" else v for k, v in body.items()}
    if dry_run:
        payload["dry_run"] = True
    refused(api.post("/models/add", json=payload), status, *words)


@pytest.mark.parametrize("model", ["a\x00b", "../../x", "x" * 10_000, "\u202egnp.exe"])
def test_hostile_model_names_under_v1_are_refused(api: TestClient, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    error = refused(api.post("/v1/chat/completions", json=body), (400, 404))
    assert len(error["message"]) < 400 and "\u202e" not in error["message"] and "\x00" not in error["message"]


def test_bad_query_values_are_422_naming_the_parameter(api: TestClient) -> None:
    refused(api.get("/models/alpha/plan?tier=%ff"), 422, "tier")
    refused(api.get("/models/alpha/plan?tier=ram%00"), 422, "tier")
    refused(api.get("/events?kinds=%00"), 422, "kinds")
    refused(api.get("/events?kinds=" + "A" * 2000), 422, "kinds")
    refused(api.get("/operations/" + "a" * 81), 422, "op_id")


# -- below the app: what uvicorn refuses --------------------------------------------------------


def raw_request(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # all sent: the server sees the end instead of waiting for more
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_malformed_http_gets_a_4xx_and_the_server_keeps_serving(core: Core) -> None:
    with live_server(core) as url:
        for data in (
            b"GET /models/" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET /models/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET /models/a\x00b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"POST /models/alpha/pin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
            b"POST /models/alpha/pin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: \x00\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS hello
        ):
            answer = raw_request(url, data)
            if answer:  # uvicorn may also just close the connection
                status = int(answer.split(b" ", 2)[1])
                assert 400 <= status < 500, answer[:200]
                assert b"Traceback" not in answer
        health = httpx.get(f"{url}/system/health", timeout=10)
        assert health.status_code == 200
        body = json.dumps({"pinned": True, "pinned ": False})
        assert httpx.post(f"{url}/models/alpha/pin", content=body, headers=JSON, timeout=10).status_code == 422
