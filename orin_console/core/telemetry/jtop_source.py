"""The Jetson source: the ``jetson-stats`` client talking to the ``jtop`` service.

jtop gives what no other source sees on a Jetson: the GPU's load and clock, the GPU-shared part
of RAM (nvmap) and each process's share of it, the EMC (memory controller) load, power rails,
fan, nvpmodel and jetson_clocks. Its data shapes (jetson-stats 4.x and later; checked against
7.2 in the tests, including a run against the real service) and units:

``jetson.memory``  ``{"RAM": {"tot", "used", "free", "buffers", "cached", "shared", "lfb"},
                   "SWAP": {"tot", "used", "cached", "table"}, "EMC": {"cur", "max", "min",
                   "val", "online"}}``; sizes in KiB, EMC clocks in kHz, ``val`` in percent.
``jetson.gpu``     ``{name: {"type", "status": {"load", "railgate", ...},
                   "freq": {"cur", "min", "max", "governor"}}}``; load in percent, kHz.
``jetson.cpu``     ``{"total": {...}, "cpu": [{"online", "user", "nice", "system", "idle",
                   "freq": {...}}, ...]}``; percentages.
``jetson.processes`` rows ``[pid, user, gpu, type, prio, state, cpu%, rss KiB, gpu KiB, name]``.
``jetson.power``   ``{"rail": {name: {"volt", "curr", "power", "avg", ...}}, "tot": {...}}``; mW
                   (``{}`` without sensors).
``jetson.temperature`` ``{name: {"temp", "online", ...}}``; Celsius, -256 when offline.
``jetson.fan``     ``{name: {"speed": [percent], "rpm": [..], "profile"}}``.
``jetson.nvpmodel`` an object with ``name``/``id``, or None; ``jetson.jetson_clocks`` truthy
                   object or None. ``jetson.uptime`` a timedelta (used to notice a stalled service).

jtop does not report ``MemAvailable``, which admission control needs, so it is read from
``/proc/meminfo`` beside jtop's figures.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from orin_console.core.telemetry.base import Sample, SourceFailed, SourceUnavailable, TelemetrySource, kb, now_pair
from orin_console.core.telemetry.psutil_source import read_meminfo

JTOP_SOCKET = "/run/jtop.sock"
FIX_RESTART = "sudo systemctl restart jtop.service"
FIX_INSTALL = "sudo pip3 install -U jetson-stats && sudo systemctl restart jtop.service"
FIX_GROUP = "sudo usermod -aG jtop $USER, then log out and back in"
FIX_VERSION = (
    "run the same jetson-stats version in the service and the console: "
    "sudo pip3 install -U jetson-stats && sudo systemctl restart jtop.service, "
    "then pip install -U jetson-stats in the console's environment"
)
_DATA_ERRORS = (KeyError, TypeError, AttributeError, ValueError, IndexError)


def is_jetson(root: str | Path = "/") -> bool:
    """True on an NVIDIA Jetson (L4T release file or a Tegra device tree)."""
    base = Path(root)
    if (base / "etc/nv_tegra_release").exists():
        return True
    try:
        return b"nvidia,tegra" in (base / "proc/device-tree/compatible").read_bytes()
    except OSError:
        return False


def explain_jtop_error(message: str) -> tuple[str, str]:
    """An operator's reason and fix for a ``JtopException`` message."""
    text = message.lower()
    if "not active" in text or "lost connection" in text or "error connection" in text:
        return "the jtop service is not running", FIX_RESTART
    if "can't access" in text or "permission" in text:
        return "no permission to talk to the jtop service", FIX_GROUP
    if "mismatch version" in text:
        return message.splitlines()[0].strip(), FIX_VERSION
    if "mismatch of python" in text:
        return "the jtop service and this console run different Python versions", FIX_VERSION
    if "authentication" in text:
        return "the jtop service refused this client (authentication failed)", FIX_VERSION
    return (message.splitlines()[0].strip() or "jtop failed"), FIX_RESTART


def _online_pct(core: dict[str, Any]) -> float | None:
    if not core.get("online", True) or "idle" not in core:
        return None
    return float(core.get("user", 0.0)) + float(core.get("nice", 0.0)) + float(core.get("system", 0.0))


def _first(items: Iterable[Any]) -> Any:
    return next(iter(items), None)


def sample_from_jtop(
    jetson: Any,
    *,
    mono: float,
    wall: float,
    mem_available: int | None = None,
    notes: tuple[str, ...] = (),
) -> Sample:
    """Map a connected ``jtop`` client (or anything shaped like it) to a :class:`Sample`.

    Raises:
        KeyError, TypeError, AttributeError, ValueError, IndexError: the data is not shaped
            as jetson-stats shapes it.
    """
    memory = jetson.memory
    ram = memory.get("RAM") or {}
    swap = memory.get("SWAP") or {}
    emc = memory.get("EMC") or {}

    gpus: list[tuple[str, dict[str, Any]]] = list(jetson.gpu.items())
    chosen = _first((n, g) for n, g in gpus if g.get("type") == "integrated") or _first(gpus)
    gpu_name, gpu = chosen if chosen is not None else (None, {})
    gpu_status = gpu.get("status") or {}
    gpu_freq = gpu.get("freq") or {}

    cores = [_online_pct(core) for core in (jetson.cpu.get("cpu") or [])]
    online = [c for c in cores if c is not None]
    # jtop's own "total" is not a load over the last interval, so average the online cores.
    cpu_percent = sum(online) / len(online) if online else None

    temperatures = {
        str(name): float(t["temp"])
        for name, t in (jetson.temperature or {}).items()
        if t.get("online", True) and t.get("temp", -256) > -256
    }

    power = jetson.power or {}
    rails = {str(name): r["power"] / 1000.0 for name, r in (power.get("rail") or {}).items() if "power" in r}
    total = power.get("tot") or {}
    power_w = total["power"] / 1000.0 if "power" in total else None

    fan = _first(v for _, v in jetson.fan.items()) or {}
    speeds = fan.get("speed") or []
    rpms = fan.get("rpm") or []

    nvp = jetson.nvpmodel
    nvp_name = nvp_id = None
    if nvp is not None:
        try:
            nvp_name, nvp_id = str(nvp.name), int(nvp.id)
        except (KeyError, TypeError, ValueError):  # no status received yet
            nvp_name = nvp_id = None
    clocks = jetson.jetson_clocks

    procs = {int(row[0]): int(row[8]) * 1024 for row in (jetson.processes or [])}

    return Sample(
        source="jtop",
        mono=mono,
        wall=wall,
        mem_total=kb(ram.get("tot")),
        mem_used=kb(ram.get("used")),
        mem_available=mem_available,
        mem_gpu_shared=kb(ram.get("shared")),
        swap_total=kb(swap.get("tot")),
        swap_used=kb(swap.get("used")),
        cpu_percent=cpu_percent,
        cpu_per_core=tuple(cores),
        gpu_name=gpu_name,
        gpu_load=None if gpu_status.get("load") is None else float(gpu_status["load"]),
        gpu_freq_hz=None if gpu_freq.get("cur") is None else int(gpu_freq["cur"]) * 1000,
        gpu_freq_max_hz=None if gpu_freq.get("max") is None else int(gpu_freq["max"]) * 1000,
        emc_load=float(emc["val"]) if emc.get("online", True) and "val" in emc else None,
        emc_freq_hz=int(emc["cur"]) * 1000 if "cur" in emc else None,
        temperatures=temperatures,
        power_w=power_w,
        power_rails_w=rails,
        fan_percent=float(speeds[0]) if speeds else None,
        fan_rpm=int(rpms[0]) if rpms else None,
        nvpmodel=nvp_name,
        nvpmodel_id=nvp_id,
        jetson_clocks=None if clocks is None else bool(clocks),
        gpu_process_bytes=procs,
        notes=notes,
    )


class JtopSource(TelemetrySource):
    """Reads a Jetson through the running ``jtop`` service.

    Args:
        interval_s: the update interval asked of the service (the first client sets it).
        socket_path: the service's socket (default: jetson-stats' own, ``/run/jtop.sock``).
        client_factory: builds the client (default ``jtop.jtop``); tests inject fakes here.
        meminfo_path: where ``MemAvailable`` is read.
        stale_after_s: how long the service may send nothing new before it counts as stopped
            (default: three intervals, at least 3 s).
        connect_timeout_s: how long connecting may take before the service counts as hung.
    """

    name = "jtop"

    def __init__(
        self,
        interval_s: float = 1.0,
        *,
        socket_path: str | None = None,
        client_factory: Callable[..., Any] | None = None,
        meminfo_path: str | Path = "/proc/meminfo",
        stale_after_s: float | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.interval_s = interval_s
        self.connect_timeout_s = connect_timeout_s
        self.socket_path = socket_path
        self.meminfo_path = Path(meminfo_path)
        self.stale_after_s = stale_after_s if stale_after_s is not None else max(3.0, 3 * interval_s)
        self._factory = client_factory
        self._client: Any = None
        self._last_uptime: float | None = None
        self._last_change = 0.0
        self._connecting: threading.Thread | None = None

    def open(self) -> None:
        self.close()
        try:
            module = importlib.import_module("jtop")
        except ImportError:
            if is_jetson():
                raise SourceUnavailable(
                    self.name, "jetson-stats is not installed", FIX_INSTALL, retry=False
                ) from None
            raise SourceUnavailable(
                self.name, "jetson-stats is not installed (not needed off a Jetson)", retry=False
            ) from None
        path = str(self.socket_path or getattr(importlib.import_module("jtop.service"), "JTOP_PIPE", JTOP_SOCKET))
        self._probe(path)
        if self._connecting is not None and self._connecting.is_alive():
            # a hung service: one waiting connection at a time, not one more thread (and one more
            # client) stuck for good on every retry
            raise SourceUnavailable(
                self.name, "the jtop service has not answered the previous connection attempt yet", FIX_RESTART
            )
        client = (self._factory or module.jtop)(interval=self.interval_s)
        try:
            self._start(client)
        except module.JtopException as exc:
            self._close_client(client)
            raise SourceUnavailable(self.name, *explain_jtop_error(str(exc))) from exc
        except SourceUnavailable:
            raise
        except Exception as exc:  # any failure means: not connected
            self._close_client(client)
            raise SourceUnavailable(
                self.name, f"cannot connect to the jtop service: {type(exc).__name__}: {exc}", FIX_RESTART
            ) from exc
        self._client = client
        # _last_uptime and _last_change are kept across reconnects on purpose: a service that
        # still sends nothing new (its reader stuck, its socket alive) must stay failed after a
        # reconnect, not count as fresh for stale_after_s and then fail again (the console
        # flapped between jtop and psutil, showing the stuck readings as fresh meanwhile). A
        # service that really restarted reports a later uptime, so it counts as fresh at once.

    def _start(self, client: Any) -> None:
        """``client.start()`` on a fresh thread, given at most ``connect_timeout_s``.

        A fresh thread because multiprocessing caches one manager connection per thread and
        address: after the service restarts, a thread that talked to the old one would keep
        a dead connection. And a deadline because jtop waits for the service's first reply
        without one.
        """
        done = threading.Event()
        outcome: list[BaseException] = []
        abandoned = threading.Event()

        def connect() -> None:
            try:
                client.start()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                outcome.append(exc)
            else:
                if abandoned.is_set():  # answered after we gave up: do not leak a client
                    self._close_client(client)
            finally:
                done.set()

        thread = threading.Thread(target=connect, name="jtop-connect", daemon=True)
        self._connecting = thread
        thread.start()
        if not done.wait(self.connect_timeout_s):
            abandoned.set()
            raise SourceUnavailable(
                self.name, f"the jtop service did not answer within {self.connect_timeout_s:g} s", FIX_RESTART
            )
        if outcome:
            raise outcome[0]

    def _probe(self, path: str) -> None:
        """Cheap check before building a client (which starts threads and subprocesses)."""
        if not os.path.exists(path):
            if self.socket_path is None and not is_jetson():
                # off a Jetson there is no service to restart: say what the machine is instead
                raise SourceUnavailable(self.name, f"not a Jetson (no jtop service at {path})")
            raise SourceUnavailable(self.name, f"the jtop service is not running (no {path})", FIX_RESTART)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except PermissionError:
            raise SourceUnavailable(self.name, f"no permission to connect to {path}", FIX_GROUP) from None
        except OSError as exc:
            raise SourceUnavailable(
                self.name, f"the jtop service is not running ({path}: {exc.strerror or exc})", FIX_RESTART
            ) from None
        finally:
            probe.close()

    def read(self) -> Sample:
        client = self._client
        if client is None:
            raise SourceFailed(self.name, "not connected", FIX_RESTART)
        try:
            running = client.ok(spin=True)
        except Exception as exc:  # the client re-raises whatever broke its thread
            reason, fix = explain_jtop_error(str(exc) or type(exc).__name__)
            if reason.startswith("the jtop service is not running") or isinstance(exc, (OSError, EOFError)):
                reason = f"the jtop service stopped ({type(exc).__name__}: {exc})"
            raise SourceFailed(self.name, reason, fix) from exc
        if not running:
            raise SourceFailed(self.name, "the jtop client stopped receiving data", FIX_RESTART)
        mono, wall = now_pair()
        try:
            uptime = client.uptime.total_seconds()
        except _DATA_ERRORS as exc:
            raise SourceFailed(self.name, f"unexpected data from jtop: {exc!r}", FIX_VERSION) from exc
        if uptime != self._last_uptime:
            self._last_uptime, self._last_change = uptime, mono
        elif mono - self._last_change > self.stale_after_s:
            raise SourceFailed(
                self.name,
                f"the jtop service has sent nothing new for {mono - self._last_change:.0f} s",
                FIX_RESTART,
            )
        try:
            available = read_meminfo(self.meminfo_path).get("MemAvailable")
        except OSError:
            available = None
        try:
            return sample_from_jtop(client, mono=mono, wall=wall, mem_available=available)
        except _DATA_ERRORS as exc:
            raise SourceFailed(self.name, f"unexpected data from jtop: {exc!r}", FIX_VERSION) from exc

    @staticmethod
    def _close_client(client: Any) -> None:
        with contextlib.suppress(Exception):  # closing a broken client must not raise
            client.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._close_client(client)
