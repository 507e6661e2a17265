"""End to end against the real jtop service, on an emulated Orin Nano.

jetson-stats' own service runs in its test mode (``JTOP_TESTING=1``) inside a private mount
namespace, where an emulated Orin Nano sysfs is mounted on ``/fake_sys`` (see
``jtop_fake_orin.py``). The real ``jtop`` client in the console's :class:`JtopSource` connects
over ``/run/jtop.sock``. Values written into the fake tree must come out of the console's
telemetry; killing the service must make the sampler fall back to psutil with the fix, and
starting it again must bring jtop back.

Needs root (the service refuses to run otherwise) and permission to create mount namespaces;
it skips, saying which, where the machine forbids them. It cleans up what it creates: the
service's processes, ``/run/jtop.sock``, and the ``/fake_sys`` mount point if it made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from orin_console.cli.main import main
from orin_console.core.events.bus import EventBus, TelemetrySourceChanged
from orin_console.core.telemetry import JtopSource, PsutilSource, Sample, Sampler, measure_process
from orin_console.testing.waits import wait_until

from jtop_fake_orin import FakeOrin

# jetson-stats' client calls distro.linux_distribution(), deprecated upstream; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:distro.linux_distribution:DeprecationWarning")

HARNESS = Path(__file__).with_name("jtop_fake_orin.py")
SOCKET = Path("/run/jtop.sock")
FAKE_SYS = Path("/fake_sys")
MiB = 1024**2
T = TypeVar("T")


def _why_not(tmp: Path) -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "needs root: the jtop service refuses to run otherwise"
    try:
        import jtop  # noqa: F401
    except ImportError:
        return "jetson-stats is not installed (pip install -e '.[dev]')"
    if SOCKET.exists():
        return f"{SOCKET} exists: a real jtop service may be running here, and this test would take its socket"
    probe_dir = tmp / "probe"
    probe_dir.mkdir()
    probe = subprocess.run(
        [sys.executable, str(HARNESS), "--probe", str(probe_dir)], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return f"this machine forbids private mount namespaces: {last}"
    return None


class JtopService:
    """The real jtop service on the emulated board; start, kill, start again."""

    def __init__(self, board: FakeOrin, log: Path) -> None:
        self.board = board
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HARNESS), str(self.board.root)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """End the service and every process it forked (one process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # forked children can outlive the leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def jtop_service(tmp_path: Path) -> Iterator[JtopService]:
    reason = _why_not(tmp_path)
    if reason:
        pytest.skip(reason)
    board = FakeOrin(tmp_path / "orin").build()
    run_before = sorted(os.listdir("/run"))
    made_fake_sys = not FAKE_SYS.exists()
    if made_fake_sys:
        FAKE_SYS.mkdir()
    service = JtopService(board, tmp_path / "jtop-service.log")
    try:
        yield service
    finally:
        service.kill(signal.SIGTERM)
        SOCKET.unlink(missing_ok=True)
        if made_fake_sys:
            FAKE_SYS.rmdir()
    assert sorted(os.listdir("/run")) == run_before  # nothing left behind
    assert FAKE_SYS.exists() is not made_fake_sys


def _wait_for(what: str, check: Callable[[], T], service: JtopService, timeout: float = 20.0) -> T:
    try:
        return wait_until(check, timeout=timeout, interval=0.05, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; service log:\n{service.log()}") from None


def test_console_reads_the_real_jtop_service(jtop_service: JtopService) -> None:
    board = jtop_service.board
    me = os.getpid()
    board.set_readings(
        gpu_load_pct=61.5, gpu_freq_hz=612_000_000, emc_load_pct=23,
        rails_mv_ma={"VDD_IN": (5080, 1450), "VDD_CPU_GPU_CV": (5000, 420), "VDD_SOC": (5000, 300)},
        fan_pwm=128, fan_rpm=2100, temps_c={"cpu": 48.5, "gpu": 47.0, "soc0": 46.2, "tj": 49.0},
        nvpmodel_id=1, gpu_pids={me: 524288}, nvmap_total_kb=1048576, cpu_offline=(5,),
    )
    jtop_service.start()
    bus = EventBus()
    changes = bus.subscribe(kinds=(TelemetrySourceChanged,))
    sampler = Sampler(
        [JtopSource(interval_s=0.5), PsutilSource()],
        bus=bus, interval_s=0.1, retry_initial_s=0.2, retry_max_s=0.5,
    )
    sampler.start()
    try:
        def latest_from(source: str, **want: object) -> Sample | None:
            s = sampler.latest()
            if s is None or s.source != source or s.is_stale():
                return None
            return s if all(getattr(s, k) == v for k, v in want.items()) else None

        # 1. What was written into the fake sysfs comes out of the console's telemetry.
        s = _wait_for("a jtop sample", lambda: latest_from("jtop", gpu_load=61.5, nvpmodel="7W"), jtop_service)
        assert isinstance(s, Sample)
        assert s.gpu_name == "gpu"
        assert s.gpu_freq_hz == 612_000_000 and s.gpu_freq_max_hz == 624_750_000
        assert s.emc_load == 23.0 and s.emc_freq_hz == 2_133_000_000
        assert s.power_w == pytest.approx(7.366)  # VDD_IN: 5080 mV x 1450 mA
        assert s.power_rails_w == {"VDD_CPU_GPU_CV": 2.1, "VDD_SOC": 1.5}
        assert s.fan_percent == pytest.approx(128 * 100 / 255) and s.fan_rpm == 2100
        assert s.temperatures == {"cpu": 48.5, "gpu": 47.0, "soc0": 46.2, "tj": 49.0}
        assert s.nvpmodel_id == 1 and s.jetson_clocks is None  # no jetson_clocks on this board
        assert len(s.cpu_per_core) == 6 and s.cpu_per_core[5] is None  # cpu5 offline
        assert s.mem_gpu_shared == 1024 * MiB  # nvmap total, KB -> bytes
        assert s.mem_total == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert s.mem_available is not None and s.mem_available > 0
        # Per-runner GPU memory: the nvmap table attributes 512 MB to this very process.
        assert s.gpu_process_bytes is not None and s.gpu_process_bytes.get(me) == 512 * MiB
        mine = measure_process(me, s)
        assert mine.gpu == 512 * MiB and mine.gpu_source == "jtop" and mine.rss > 0

        # 2. A change in the tree shows up live.
        board.set_readings(gpu_load_pct=12.3, nvpmodel_id=0, gpu_pids={me: 524288}, fan_pwm=255)
        s = _wait_for("the new GPU load", lambda: latest_from("jtop", gpu_load=12.3, nvpmodel="15W"), jtop_service)
        assert isinstance(s, Sample) and s.fan_percent == 100.0

        # 3. The command line reads the same service.
        assert main(["telemetry", "--json", "--source", "jtop", "--interval", "0.5"]) == 0

        # 4. The service dies: psutil takes over, with the reason and the fix.
        jtop_service.kill(signal.SIGKILL)
        assert SOCKET.exists()  # a killed service leaves its socket behind
        _wait_for("the fall back to psutil", lambda: latest_from("psutil"), jtop_service)
        fallback = [e for e in changes.drain() if e.previous == "jtop" and e.current == "psutil"]
        assert fallback, "no TelemetrySourceChanged jtop -> psutil"
        assert "stopped" in fallback[0].reason or "not running" in fallback[0].reason
        assert fallback[0].fix == "sudo systemctl restart jtop.service"
        jtop_status = sampler.status()[0]
        assert jtop_status.name == "jtop" and jtop_status.state == "retrying"
        assert jtop_status.fix == "sudo systemctl restart jtop.service"

        # 5. The service comes back: so does jtop.
        jtop_service.start()  # a reconnect must not hang on multiprocessing's cached connection
        _wait_for("jtop to come back", lambda: latest_from("jtop", gpu_load=12.3), jtop_service, timeout=8.0)
        back = [e for e in changes.drain() if e.current == "jtop"]
        assert back and back[-1].previous == "psutil" and back[-1].reason == "jtop is back"
    finally:
        sampler.stop()
    assert not sampler.running


def test_cli_json_from_the_real_service(jtop_service: JtopService, capsys: pytest.CaptureFixture[str]) -> None:
    jtop_service.board.set_readings(gpu_load_pct=44.4, nvpmodel_id=1)
    jtop_service.start()
    _wait_for("the service socket", SOCKET.exists, jtop_service)

    def telemetry_json() -> dict[str, Any] | None:
        capsys.readouterr()
        assert main(["telemetry", "--json", "--source", "jtop", "--interval", "0.5"]) == 0
        data: dict[str, Any] = json.loads(capsys.readouterr().out)
        return data if data["source"] == "jtop" else None

    # the socket appears a moment before the service answers
    data = _wait_for("the CLI to read from jtop", telemetry_json, jtop_service)
    assert data["gpu_load"] == 44.4 and data["nvpmodel"] == "7W" and data["stale"] is False
    assert data["sources"][0]["state"] == "active"  # type: ignore[index]
