"""Telemetry faults (issue 11, part 5): jtop failing and returning, NVML missing or raising.

The real :class:`~orin_console.core.telemetry.Sampler` runs its real thread over the real
:class:`JtopSource` / :class:`NvmlSource` and a real :class:`PsutilSource`; only the libraries
underneath are stand-ins (the test suite's ``FakeJtop``, built from jetson-stats' own classes,
and ``fake_pynvml``, with pynvml's own types and errors), so every fault goes through the code
that handles it on a Jetson. Each cycle injects one fault, waits for the fallback (psutil), then
repairs it and waits for the better source to come back:

- jtop: the service dies (``EOFError``, ``BrokenPipeError``, jtop's "Lost connection") and its
  socket goes away; the client stops running; the service stops sending new data; it refuses
  the connection; it hangs on connect; it sends data of an unknown shape;
- NVML: the GPU falls off the bus (``NVML_ERROR_GPU_IS_LOST``); a call raises something that is
  not an ``NVMLError``; the library is missing altogether (a permanent fallback, never probed).

Figures: cycles, fallbacks and recoveries seen, the worst fallback and recovery times, ticks that
produced no sample, whether the sampler thread is still alive, and what the front ends showed:
``GET /system/status`` (its telemetry source) and the console's gauge line (its source note), both
during a fault and after the repair.

    python -m stress.telemetry_faults [--quick] [--seed N] [--set cycles=40]
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orin_console.core.events.bus import EventBus, TelemetrySample, TelemetrySourceChanged
from orin_console.core.telemetry import JtopSource, NvmlSource, PsutilSource, Sampler
from orin_console.testing.telemetry_fakes import FakeJtop, fake_pynvml
from stress.common import module_main

__all__ = ["JTOP_FAULTS", "NVML_FAULTS", "FlakyJtop", "FlakyNvml", "Watch", "run"]

JTOP_FAULTS = ("service-died", "broken-pipe", "connection-lost", "client-stopped", "stale-data",
               "refused", "hangs-on-connect", "bad-data")
NVML_FAULTS = ("gpu-lost", "foreign-exception")


class FlakyJtop:
    """A jtop service that can fail in each of :data:`JTOP_FAULTS` and be repaired.

    Its socket is a real listening Unix socket (the source probes it); its clients are
    ``FakeJtop`` instances whose uptime a ticker thread advances, as the service would.
    """

    def __init__(self, folder: Path) -> None:
        self.socket_path = folder / "jtop.sock"
        self.clients: list[FakeJtop] = []
        self._sock: socket.socket | None = None
        self.start_error: BaseException | None = None
        self.hang = False
        self.bad_data = False
        self.ticking = True
        self._unhung = threading.Event()
        self.uptime = 2000.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="fake-jtop-ticker", daemon=True)
        self.listen()
        self._ticker.start()

    def listen(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.socket_path))
        sock.listen(8)
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), name="fake-jtop-accept", daemon=True).start()

    @staticmethod
    def _accept(sock: socket.socket) -> None:
        """Take the source's probe connections, as the service does (a backlog that fills up
        would refuse them)."""
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # the socket was closed: the service is gone
            conn.close()

    def vanish(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.socket_path.unlink(missing_ok=True)

    def client(self, interval: float = 1.0) -> FakeJtop:
        """The factory :class:`JtopSource` calls for each connection."""
        client = FakeJtop(interval=interval, start_error=self.start_error)
        with self._lock:
            client.tick(0, uptime=self.uptime)  # the service's current data, exactly
        if self.bad_data:
            self._spoil(client)
        if self.hang:
            def hang() -> None:
                client.started = True
                self._unhung.wait(30)  # a hung service: no answer until it is repaired
            client.start = hang  # type: ignore[method-assign]  # the fake's start, replaced by a hung one
        self.clients.append(client)
        return client

    @staticmethod
    def _spoil(client: FakeJtop) -> None:
        """Data in a shape the mapping does not know: "unexpected data from jtop"."""
        client._stats["uptime"] = "not a number"

    def _tick(self) -> None:
        """The service's reader: new data every 30 ms while it works, to every live client."""
        while not self._stop.wait(0.03):
            if not self.ticking or self.bad_data:
                continue
            with self._lock:
                self.uptime += 0.03
                live = [c for c in self.clients[-3:] if c.running and c.error is None]
                for client in live:
                    client.tick(0, uptime=self.uptime)

    def fail(self, kind: str) -> None:
        from jtop import JtopException

        current = self.clients[-1] if self.clients else None
        if kind in ("service-died", "broken-pipe", "connection-lost"):
            if current is not None:
                current.error = {"service-died": EOFError(), "broken-pipe": BrokenPipeError(errno.EPIPE, "Broken pipe"),
                                 "connection-lost": JtopException("Lost connection with jtop server")}[kind]
            self.vanish()
        elif kind == "client-stopped" and current is not None:
            current.running = False
            self.start_error = JtopException("The jtop.service is not active. Please run:\n"
                                             "sudo systemctl restart jtop.service")
        elif kind == "stale-data":
            self.ticking = False
        elif kind == "refused":
            if current is not None:
                current.error = EOFError()
            self.start_error = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        elif kind == "hangs-on-connect":
            if current is not None:
                current.error = EOFError()
            self._unhung.clear()
            self.hang = True
        elif kind == "bad-data":
            self.bad_data = True  # a service of another version: every client gets it
            if current is not None:
                self._spoil(current)
        else:
            raise ValueError(f"unknown jtop fault {kind!r}")

    def repair(self) -> None:
        self.start_error, self.hang, self.ticking, self.bad_data = None, False, True, False
        self._unhung.set()
        if self._sock is None:
            self.listen()

    def close(self) -> None:
        self._stop.set()
        self._unhung.set()
        self._ticker.join(2)
        self.vanish()


class FlakyNvml:
    """``fake_pynvml`` whose GPU can fall off the bus or whose calls can raise foreign errors."""

    def __init__(self) -> None:
        self.module = fake_pynvml()
        self._utilization = self.module.nvmlDeviceGetUtilizationRates

    def fail(self, kind: str) -> None:
        if kind == "gpu-lost":
            self.module.lost = True
        elif kind == "foreign-exception":
            def broken(_handle: object) -> Any:
                raise RuntimeError("ctypes: function nvmlDeviceGetUtilizationRates_v2 not found")
            self.module.nvmlDeviceGetUtilizationRates = broken
        else:
            raise ValueError(f"unknown NVML fault {kind!r}")

    def repair(self) -> None:
        self.module.lost = False
        self.module.nvmlDeviceGetUtilizationRates = self._utilization


class Watch:
    """Everything the sampler published: samples by source, source changes, in order."""

    def __init__(self, bus: EventBus) -> None:
        self.samples = 0
        self.sources: list[str] = []
        self.changes: list[TelemetrySourceChanged] = []
        self._lock = threading.Lock()
        bus.subscribe(self._on, kinds=(TelemetrySample, TelemetrySourceChanged))

    def _on(self, event: object) -> None:
        with self._lock:
            if isinstance(event, TelemetrySample):
                self.samples += 1
                self.sources.append(event.sample.source)
            elif isinstance(event, TelemetrySourceChanged):
                self.changes.append(event)


def _wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def jtop_sampler(service: FlakyJtop, bus: EventBus) -> Sampler:
    """The console's jtop-first sampler, at test speed (50 ms ticks, backoff 50..400 ms)."""
    source = JtopSource(0.05, socket_path=str(service.socket_path), client_factory=service.client,
                        stale_after_s=0.3, connect_timeout_s=0.3)
    return Sampler([source, PsutilSource()], bus=bus, interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.4)


def nvml_sampler(nvml: FlakyNvml, bus: EventBus) -> Sampler:
    return Sampler([NvmlSource(nvml=nvml.module), PsutilSource()], bus=bus, interval_s=0.05,
                   retry_initial_s=0.05, retry_max_s=0.4)


def cycle_faults(sampler: Sampler, flaky: FlakyJtop | FlakyNvml, watch: Watch, faults: list[str],
                 best: str, *, hold_s: float = 0.8, during: Callable[[str], None] | None = None,
                 after: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Inject each fault, wait for psutil, repair, wait for ``best``; ``during``/``after`` check
    the front ends at those moments."""
    fallback_s: list[float] = []
    recovery_s: list[float] = []
    slowest: dict[str, float] = {}
    problems: list[str] = []
    flaps = connect_threads = 0
    if _wait(lambda: sampler.active_source == best, 10) is None:
        return {"cycles": 0, "problems": [f"{best} never became active: {sampler.status()}"], "ok": False}
    for kind in faults:
        changes_before = len(watch.changes)
        flaky.fail(kind)
        took = _wait(lambda: sampler.active_source == "psutil", 10)
        if took is None:
            problems.append(f"{kind}: no fallback to psutil (active: {sampler.active_source})")
            flaky.repair()
            continue
        fallback_s.append(took)
        # the announcement reaches subscribers on the bus's thread: give it a moment
        def announced(n: int = changes_before) -> bool:
            return any(c.current == "psutil" for c in watch.changes[n:])

        _wait(announced, 5)
        said = [c for c in watch.changes[changes_before:] if c.current == "psutil"]
        if not said or not said[-1].reason:
            problems.append(f"{kind}: the fallback was not announced with a reason")
        samples_before, changes_held = watch.samples, len(watch.changes)
        threads = 0
        held = time.monotonic() + hold_s
        while time.monotonic() < held:  # the fault persists: the sampler must stay on psutil
            threads = max(threads, sum(t.name == "jtop-connect" for t in threading.enumerate()))
            time.sleep(0.01)
        connect_threads = max(connect_threads, threads)
        def sampling(n: int = samples_before) -> bool:
            return watch.samples >= n + 3

        if _wait(sampling, 5) is None:  # psutil keeps the gauges going
            problems.append(f"{kind}: no samples while falling back")
        flapped = [c for c in watch.changes[changes_held:] if c.current == best]
        if flapped:
            flaps += len(flapped)
            problems.append(f"{kind}: {best} came back while the fault lasted ({flapped[0].reason})")
        if during is not None:
            during(kind)
        flaky.repair()
        back = _wait(lambda: sampler.active_source == best, 10)
        if back is None:
            problems.append(f"{kind}: {best} did not come back ({sampler.status()})")
            continue
        recovery_s.append(back)
        slowest[kind] = max(slowest.get(kind, 0.0), back)
        if after is not None:
            after(kind)
    return {"cycles": len(faults), "fallbacks": len(fallback_s), "recoveries": len(recovery_s),
            "fallback_ms_max": round(1000 * max(fallback_s, default=0.0), 1),
            "recovery_ms_max": round(1000 * max(recovery_s, default=0.0), 1),
            "recovery_ms_by_fault": {k: round(1000 * v, 1) for k, v in sorted(slowest.items())},
            "flaps": flaps, "hung_connects_max": connect_threads,
            "thread_alive": sampler.running, "problems": problems[:8],
            "ok": not problems and sampler.running and len(recovery_s) == len(faults) and connect_threads <= 1}


@contextmanager
def _no_pynvml() -> Iterator[None]:
    saved = sys.modules.get("pynvml")
    sys.modules["pynvml"] = None  # type: ignore[assignment]  # import pynvml -> ImportError
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = saved


def nvml_missing() -> dict[str, Any]:
    """No ``pynvml`` at all: psutil serves, NVML is marked unavailable (not probed again)."""
    bus = EventBus()
    watch = Watch(bus)
    with _no_pynvml():
        sampler = Sampler([NvmlSource(), PsutilSource()], bus=bus, interval_s=0.05, retry_initial_s=0.05)
        with sampler:
            served = _wait(lambda: watch.samples >= 5, 10) is not None
            state = {s.name: (s.state, s.reason) for s in sampler.status()}
            alive = sampler.running
    bus.close()
    nvml_state, reason = state.get("nvml", ("?", None))
    return {"samples": watch.samples, "nvml": nvml_state, "reason": reason, "thread_alive": alive,
            "ok": served and alive and nvml_state == "unavailable" and set(watch.sources) == {"psutil"}}


def api_view(sampler: Sampler, bus: EventBus, folder: Path) -> tuple[Callable[[], dict[str, Any]], Callable[[], None]]:
    """``GET /system/status``'s telemetry through a real app over a core with ``sampler``."""
    from fastapi.testclient import TestClient

    from orin_console.api.app import create_app
    from orin_console.testing.managers import make_core

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.toml").write_text("")
    core = make_core(folder, telemetry=sampler, bus=bus).start()
    client = TestClient(create_app(core), base_url="http://127.0.0.1")

    def status() -> dict[str, Any]:
        reply = client.get("/system/status")
        reply.raise_for_status()
        return dict(reply.json())

    def close() -> None:
        client.close()
        core.close()

    return status, close


def telemetry_of(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """What ``/system/status`` says about telemetry: the newest sample's source and, where the
    API has it, ``telemetry_source`` (``active``, ``fallback``, ``note``)."""
    sample = status.get("telemetry") or {}
    source = status.get("telemetry_source")
    seen: dict[str, Any] = {"fault": kind, "sample_source": sample.get("source")}
    if isinstance(source, dict):
        seen.update(active=source.get("active"), fallback=source.get("fallback"), note=source.get("note") or "")
    return seen


def judge_api(during: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """During each fault the API must say psutil (and, with ``telemetry_source``, that it is a
    fallback from jtop, with the reason); after each repair jtop and no fallback."""
    bad = [d for d in during if d["sample_source"] != "psutil"]
    bad += [a for a in after if a["sample_source"] != "jtop"]
    has_field = all("active" in d for d in during + after) and bool(during)
    if has_field:
        bad += [d for d in during if not (d["active"] == "psutil" and d["fallback"] is True and "jtop" in d["note"])]
        bad += [a for a in after if not (a["active"] == "jtop" and a["fallback"] is False and a["note"] == "")]
    return {"checks": len(during) + len(after), "telemetry_source_field": has_field, "wrong": bad[:4],
            "ok": not bad and bool(during) and bool(after)}


class _Count(logging.Handler):
    """Counts the telemetry log's records by level (a source's bug is logged with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] = self.levels.get(record.levelname, 0) + 1


@contextmanager
def _counting_logs() -> Iterator[_Count]:
    logger = logging.getLogger("orin_console.core.telemetry")
    handler, propagate = _Count(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def run(quick: bool, seed: int, *, folder: Path | None = None, cycles: int | None = None, **_: Any) -> dict[str, Any]:
    """jtop and NVML fault cycles with the API watching; figures and ``goal_met``."""
    with _counting_logs() as logs:
        figures = _run(quick, seed, folder, cycles)
    figures["log_records"] = dict(sorted(logs.levels.items()))
    return figures


def _run(quick: bool, seed: int, folder: Path | None, cycles: int | None) -> dict[str, Any]:
    import tempfile

    rng = random.Random(seed)
    n = cycles or (len(JTOP_FAULTS) if quick else 5 * len(JTOP_FAULTS))
    jtop_faults = [JTOP_FAULTS[i % len(JTOP_FAULTS)] for i in range(n)]
    rng.shuffle(jtop_faults)
    nvml_faults = [NVML_FAULTS[i % len(NVML_FAULTS)] for i in range(max(2, n // 2))]
    rng.shuffle(nvml_faults)
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="telemetry-faults-"))
    started = time.monotonic()

    bus = EventBus()
    watch = Watch(bus)
    service = FlakyJtop(root)
    sampler = jtop_sampler(service, bus)
    status, close_api = api_view(sampler, bus, root / "api")
    seen: dict[str, list[Any]] = {"during": [], "after": []}
    try:
        jtop = cycle_faults(sampler, service, watch, jtop_faults, "jtop",
                            during=lambda k: seen["during"].append(telemetry_of(status(), k)),
                            after=lambda k: seen["after"].append(telemetry_of(status(), k)))
    finally:
        close_api()
        service.close()
        bus.close()
    api = judge_api(seen["during"], seen["after"])

    bus = EventBus()
    watch = Watch(bus)
    flaky = FlakyNvml()
    sampler = nvml_sampler(flaky, bus)
    with sampler:
        nvml = cycle_faults(sampler, flaky, watch, nvml_faults, "nvml")
    bus.close()
    missing = nvml_missing()
    return {"jtop": jtop, "nvml": nvml, "nvml_missing": missing, "api_status": api,
            "wall_s": round(time.monotonic() - started, 1),
            "goal_met": bool(jtop["ok"] and nvml["ok"] and missing["ok"] and api["ok"])}


if __name__ == "__main__":
    sys.exit(module_main(run, name="stress.telemetry_faults"))
