"""The API's security defaults: loopback bind, bearer token off loopback, Host allowlist,
bounded bodies, no CORS unless configured, one error shape, no traceback to a client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.api.security import check_bind, is_loopback
from orin_console.core import Core
from orin_console.core.errors import SettingsError
from orin_console.testing.managers import make_core
from orin_console.testing.tiny_models import write_tiny_llama

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    folder = tmp_path_factory.mktemp("api-security")
    write_tiny_llama(folder / "alpha.gguf", n_ctx=512)
    (folder / "models.toml").write_text('[[models]]\nid = "alpha"\npath = "alpha.gguf"\ntasks = ["chat"]\n')
    with make_core(folder) as built:
        yield built


def client(core: Core, **options: object) -> TestClient:
    return TestClient(create_app(core, **options), base_url="http://127.0.0.1:8000")  # type: ignore[arg-type]


def test_loopback_needs_no_token_and_any_other_bind_needs_one() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(SettingsError, match=r"needs a token.*ORIN_TOKEN"):
        check_bind("0.0.0.0", None)


def test_with_a_token_every_route_but_health_needs_it(core: Core) -> None:
    api = client(core, token=TOKEN)
    assert api.get("/system/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        answer = api.get("/system/status", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"]["type"] == "Unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    assert api.get("/docs").status_code == 401
    assert api.get("/system/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_foreign_host_header_is_refused(core: Core) -> None:
    api = client(core)
    assert api.get("/system/health").status_code == 200
    assert api.get("/system/health", headers={"Host": "localhost:8000"}).status_code == 200
    refused = api.get("/system/health", headers={"Host": "attacker.example:8000"})
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "HostNotAllowed"
    lan = client(core, bind_host="0.0.0.0", token=TOKEN, allowed_hosts=["jetson.lan"])
    assert lan.get("/system/health", headers={"Host": "jetson.lan:8000"}).status_code == 200


def test_no_cors_headers_unless_configured(core: Core) -> None:
    preflight = {"Origin": "http://page.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client(core).options("/system/status", headers=preflight).headers
    allowed = client(core, cors_origins=["http://page.example"]).options("/system/status", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "http://page.example"


def test_a_body_over_the_limit_is_refused_before_it_is_read(core: Core) -> None:
    api = client(core, max_body_bytes=1000)
    answer = api.post("/quick/generate", content=b"x" * 5000, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["type"] == "BodyTooLarge"


def test_system_status_has_the_seed_fields(core: Core) -> None:
    data = client(core).get("/system/status").json()
    assert data["models"]["total"] == 1 and set(data["models"]["loaded"]) == {"ram", "swap"}
    assert {t["tier"] for t in data["tiers"]} == {"ram", "swap"} and data["uptime_s"] >= 0
