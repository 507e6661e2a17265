"""``GET /metrics``: the Prometheus text parses, and counts what was done (requests by route and
status, generations, tokens, TTFT and tokens/s per model, loads, refusals, crashes), with the
scrape-time figures (queue depth, memory per tier, telemetry). Each app has its own registry."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orin_console.api.app import create_app
from orin_console.core import Core
from orin_console.core.manager.types import ModelState
from orin_console.core.memory.admission import AdmissionRefused
from orin_console.core.telemetry import Sample
from orin_console.testing.managers import make_core, settings_for
from orin_console.testing.waits import wait_until

from api_live import live_server

HELLO: list[Any] = [{"role": "user", "content": "Hello!"}]


def scrape(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and sorted labels."""
    answer = api.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def client(core: Core) -> TestClient:
    return TestClient(create_app(core), base_url="http://127.0.0.1:8000")


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    with make_core(workdir) as built:
        yield built


def test_it_counts_requests_generations_tokens_and_loads(core: Core) -> None:
    with client(core) as api:
        assert api.post("/v1/chat/completions", json={"model": "alpha", "messages": HELLO, "max_tokens": 7,
                                                      "temperature": 0}).status_code == 200
        assert api.post("/v1/completions", json={"model": "alpha", "prompt": "hi", "max_tokens": 5,
                                                 "stream": True}).status_code == 200
        assert api.post("/v1/completions", json={"model": "nope", "prompt": "hi"}).status_code == 404
        assert api.get("/no/such/path").status_code == 404
        wait_until(lambda: value(scrape(api), "orin_generations_total", model="alpha", source="api",
                                 finish_reason="length") == 2, timeout=5)
        samples = scrape(api)
    requests = "orin_http_requests_total"
    assert value(samples, requests, method="POST", route="/v1/chat/completions", status="200") == 1
    assert value(samples, requests, method="POST", route="/v1/completions", status="200") == 1
    assert value(samples, requests, method="POST", route="/v1/completions", status="404") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert value(samples, "orin_generated_tokens_total", model="alpha") == 12
    assert value(samples, "orin_ttft_seconds_count", model="alpha") == 2
    assert value(samples, "orin_tokens_per_second_count", model="alpha") == 2
    assert value(samples, "orin_model_loads_total", model="alpha", tier="ram") == 1
    assert value(samples, "orin_model_state", model="alpha", state="ready") == 1
    assert value(samples, "orin_model_state", model="beta", state="unloaded") == 1
    assert ("orin_queue_depth", (("model", "alpha"),)) in samples
    reserved = value(samples, "orin_tier_reserved_bytes", tier="ram")
    predicted = value(samples, "orin_model_predicted_bytes", model="alpha", tier="ram")
    assert reserved > 0 and predicted > 0 and value(samples, "orin_tier_predicted_bytes", tier="ram") == predicted
    assert value(samples, "orin_tier_budget_bytes", tier="ram") == core.settings.ram_budget_bytes
    assert value(samples, "orin_models") == 2
    assert not any(name.startswith("orin_telemetry") for name, _ in samples)  # no sampler in this core


def test_each_app_counts_its_own_requests(core: Core) -> None:
    with client(core) as first, client(core) as second:
        for _ in range(3):
            first.get("/system/status")
        second.get("/system/status")
        one, two = scrape(first), scrape(second)
    key = {"method": "GET", "route": "/system/status", "status": "200"}
    assert value(one, "orin_http_requests_total", **key) == 3
    assert value(two, "orin_http_requests_total", **key) == 1


def test_the_subscription_ends_with_the_app(core: Core) -> None:
    before = core.bus.subscriber_count
    with client(core) as api:
        assert core.bus.subscriber_count == before + 1
        assert api.app.state.metrics is not None  # type: ignore[attr-defined]
    assert core.bus.subscriber_count == before  # closed on shutdown


def test_a_refusal_is_counted_by_its_type_not_its_wording(core: Core) -> None:
    from orin_console.core.events.kinds import ManagerError

    with client(core) as api:
        core.bus.publish(ManagerError(message="cannot load `alpha` into the RAM tier: ...", model_id="alpha"))
        core.bus.publish(ManagerError(message="reworded: it would not fit", model_id="beta", kind="AdmissionRefused"))
        core.bus.publish(ManagerError(message="end", model_id="beta", kind="RunnerError"))
        # events arrive in order: once beta's is counted, alpha's was seen before it
        wait_until(lambda: value(scrape(api), "orin_admission_refusals_total", model="beta") == 1, timeout=5)
        samples = scrape(api)
        assert value(samples, "orin_admission_refusals_total", model="alpha") == 0  # the wording alone is not one
        assert value(samples, "orin_admission_refusals_total", model="beta") == 1


def test_refusals_and_crashes_are_counted(workdir: Path) -> None:
    with make_core(workdir, settings=settings_for(workdir, max_model_gb=0.01)) as small, client(small) as api:
        with pytest.raises(AdmissionRefused):
            small.manager.load("alpha").result(30)
        refused = api.post("/v1/completions", json={"model": "beta", "prompt": "hi", "max_tokens": 2})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "admission_refused", refused.text
        wait_until(lambda: value(scrape(api), "orin_admission_refusals_total", model="alpha") == 1, timeout=5)
        assert value(scrape(api), "orin_admission_refusals_total", model="beta") == 1
        assert value(scrape(api), "orin_http_requests_total", method="POST", route="/v1/completions",
                     status="409") == 1
    with make_core(workdir) as core, client(core) as api:
        status = core.manager.load("alpha").result(60)
        assert status.pid is not None
        os.kill(status.pid, signal.SIGKILL)
        wait_until(lambda: core.manager.model_status("alpha").state == ModelState.FAILED, timeout=10)
        wait_until(lambda: value(scrape(api), "orin_runner_crashes_total", model="alpha") == 1, timeout=5)
        assert value(scrape(api), "orin_model_load_failures_total", model="alpha") == 0


class _FixedSampler:
    def __init__(self, sample: Sample) -> None:
        self.sample = sample

    def latest(self) -> Sample:
        return self.sample

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_telemetry_gauges_come_from_the_latest_sample(core: Core) -> None:
    sample = Sample(source="jtop", mono=time.monotonic(), wall=time.time(), mem_total=8 << 30,
                    mem_used=3 << 30, mem_available=4 << 30, swap_total=16 << 30, swap_used=1 << 30,
                    gpu_load=42.0, temperatures={"gpu": 51.5, "cpu": 48.0}, power_w=7.25)
    real = core.sampler
    core.sampler = _FixedSampler(sample)  # type: ignore[assignment]
    try:
        with client(core) as api:
            samples = scrape(api)
    finally:
        core.sampler = real
    assert value(samples, "orin_telemetry_info", source="jtop") == 1
    assert value(samples, "orin_telemetry_ram_used_bytes") == 3 << 30
    assert value(samples, "orin_telemetry_swap_used_bytes") == 1 << 30
    assert value(samples, "orin_telemetry_gpu_load_percent") == 42.0
    assert value(samples, "orin_telemetry_temperature_celsius", sensor="gpu") == 51.5
    assert value(samples, "orin_telemetry_power_watts") == 7.25


def test_a_live_server_counts_what_the_openai_client_did(core: Core) -> None:
    import httpx

    with live_server(core) as url:
        oai = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        for chunk in oai.chat.completions.create(model="beta", messages=HELLO, max_tokens=4, stream=True):
            assert chunk.model == "beta"
        text = httpx.get(f"{url}/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = [s for s in families["orin_http_requests"].samples if s.name == "orin_http_requests_total"]
    assert any(s.labels == {"method": "POST", "route": "/v1/chat/completions", "status": "200"} and s.value == 1
               for s in requests)
    loads = [s for s in families["orin_model_loads"].samples if s.name == "orin_model_loads_total"]
    assert [(s.labels["model"], s.labels["tier"], s.value) for s in loads] == [("beta", "swap", 1.0)]
