"""Each telemetry source's mapping and failure modes, in the real libraries' data shapes.

jtop: jetson-stats' own container classes filled with data recorded from its service; NVML:
pynvml's own structures and error classes; psutil/procfs: live on this machine, and a fake
``/proc`` + ``/sys`` tree shaped like an Orin Nano's for the Jetson-only fields.
"""

from __future__ import annotations

import copy
import os
import queue
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from orin_console.core.telemetry import (
    JtopSource,
    NvmlSource,
    ProcessGone,
    PsutilSource,
    SourceFailed,
    SourceUnavailable,
    measure_process,
    measure_processes,
    sample_from_jtop,
)
from orin_console.core.telemetry import jtop_source as jtop_mod
from orin_console.core.telemetry.process import ProcessMemory, read_vm_swap
from orin_console.core.telemetry.psutil_source import cpu_load, memory_fields, read_cpu_times, read_meminfo
from orin_console.testing.telemetry_fakes import KB, ORIN_NANO_STATS, FakeJtop, fake_pynvml, make_sample, unix_socket
from orin_console.testing.waits import wait_until

GiB = 1024**3
MiB = 1024**2

try:
    from jtop import JtopException
except ImportError:  # the mapping tests still run; the exception-message tests need the real class
    JtopException = None  # type: ignore[assignment,misc]

needs_jtop = pytest.mark.skipif(JtopException is None, reason="jetson-stats is not installed (pip install -e '.[dev]')")


# -- jtop: the mapping ------------------------------------------------------------------------


def test_jtop_mapping_of_a_busy_orin_nano() -> None:
    s = sample_from_jtop(FakeJtop(), mono=10.0, wall=1e9, mem_available=2 * GiB)
    assert s.source == "jtop" and s.mono == 10.0 and s.wall == 1e9
    assert s.mem_total == 7620560 * KB
    assert s.mem_used == 5120000 * KB
    assert s.mem_available == 2 * GiB
    assert s.mem_gpu_shared == 1 * GiB  # RAM.shared: the nvmap (GPU) part, in KB
    assert s.swap_total == 16777212 * KB and s.swap_used == 2 * GiB
    assert s.cpu_per_core == (40.0, 30.0, 0.0, 60.0, 10.0, None)  # user+nice+system; None = offline
    assert s.cpu_percent == pytest.approx(28.0)  # mean of the online cores, not jtop's "total"
    assert s.gpu_name == "gpu" and s.gpu_load == 61.5
    assert s.gpu_freq_hz == 612_000_000 and s.gpu_freq_max_hz == 624_750_000
    assert s.emc_load == 23.0 and s.emc_freq_hz == 2_133_000_000
    assert s.temperatures == {"cpu": 48.5, "gpu": 47.0, "soc0": 46.2, "tj": 49.0}  # cv0 offline
    assert s.power_w == pytest.approx(7.366)
    assert s.power_rails_w == {"VDD_CPU_GPU_CV": 2.1, "VDD_SOC": 1.5}
    assert s.fan_percent == pytest.approx(50.196, abs=1e-3) and s.fan_rpm == 2100
    assert s.nvpmodel == "7W" and s.nvpmodel_id == 1
    assert s.jetson_clocks is True
    assert s.gpu_process_bytes == {4242: 512 * MiB, 4343: 256 * MiB}


def test_jtop_mapping_of_a_board_without_optional_sensors() -> None:
    stats = copy.deepcopy(ORIN_NANO_STATS)
    stats["mem"].pop("EMC")
    stats["mem"]["RAM"]["shared"] = 0
    stats.update(power={}, fan={}, gpu={}, processes=[], temperature={})
    stats.pop("jc")
    stats.pop("nvp")
    s = sample_from_jtop(FakeJtop(stats, init={"memory": "/swfile", "fan": {}}), mono=0.0, wall=0.0)
    assert s.emc_load is None and s.emc_freq_hz is None
    assert s.power_w is None and s.power_rails_w == {}
    assert s.fan_percent is None and s.fan_rpm is None
    assert s.gpu_name is None and s.gpu_load is None and s.gpu_freq_hz is None
    assert s.nvpmodel is None and s.jetson_clocks is None
    assert s.temperatures == {} and s.gpu_process_bytes == {}
    assert s.mem_gpu_shared == 0


def test_jtop_jetson_clocks_off_is_false_not_none() -> None:
    stats = copy.deepcopy(ORIN_NANO_STATS)
    stats["jc"] = {"enable": False, "thread": "inactive", "config": True, "boot": False}
    assert sample_from_jtop(FakeJtop(stats), mono=0, wall=0).jetson_clocks is False


# -- jtop: the source, connected through a fake client -----------------------------------------


@pytest.fixture
def meminfo(tmp_path: Path) -> Path:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:        7620560 kB\nMemFree:          812000 kB\nMemAvailable:    2097152 kB\n")
    return path


def _source(tmp_path: Path, meminfo: Path, client: FakeJtop, **kw: object) -> JtopSource:
    return JtopSource(
        0.5, socket_path=str(tmp_path / "jtop.sock"), client_factory=lambda interval: client,
        meminfo_path=meminfo, **kw,  # type: ignore[arg-type]
    )


@needs_jtop
def test_jtop_source_reads_through_the_client(tmp_path: Path, meminfo: Path) -> None:
    client = FakeJtop()
    src = _source(tmp_path, meminfo, client)
    with unix_socket(tmp_path / "jtop.sock"):
        src.open()
    assert client.started
    s = src.read()
    assert s.source == "jtop" and s.mem_available == 2 * GiB and s.gpu_load == 61.5
    client.tick(gpu={"gpu": {"type": "integrated", "status": {"load": 12.0}, "freq": {"cur": 306000}}})
    assert src.read().gpu_load == 12.0
    src.close()
    assert client.closed


def test_jtop_not_installed_is_permanent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "jtop", None)  # import jtop -> ImportError
    with pytest.raises(SourceUnavailable) as err:
        JtopSource(socket_path=str(tmp_path / "none")).open()
    assert err.value.retry is False and "jetson-stats is not installed" in err.value.reason
    assert err.value.fix is None  # off a Jetson there is nothing to fix
    monkeypatch.setattr(jtop_mod, "is_jetson", lambda root="/": True)
    with pytest.raises(SourceUnavailable) as err:
        JtopSource(socket_path=str(tmp_path / "none")).open()
    assert err.value.fix == jtop_mod.FIX_INSTALL


@needs_jtop
def test_jtop_service_not_running_no_socket(tmp_path: Path, meminfo: Path) -> None:
    client = FakeJtop()
    with pytest.raises(SourceUnavailable) as err:
        _source(tmp_path, meminfo, client).open()
    assert "not running" in err.value.reason and err.value.fix == "sudo systemctl restart jtop.service"
    assert err.value.retry is True
    assert not client.started  # no client is built while the socket is missing


@needs_jtop
@pytest.mark.parametrize("jetson", [True, False])
def test_jtop_default_socket_missing_says_whether_this_is_a_jetson(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, jetson: bool) -> None:
    """Off a Jetson, "restart jtop.service" is no advice: the note says what the machine is."""
    import jtop.service

    from orin_console.core.telemetry import jtop_source

    monkeypatch.setattr(jtop.service, "JTOP_PIPE", str(tmp_path / "jtop.sock"), raising=False)
    monkeypatch.setattr(jtop_source, "is_jetson", lambda root="/": jetson)
    with pytest.raises(SourceUnavailable) as err:
        JtopSource().open()
    if jetson:
        assert "not running" in err.value.reason and err.value.fix == "sudo systemctl restart jtop.service"
    else:
        assert err.value.reason.startswith("not a Jetson") and err.value.fix is None
    assert err.value.retry is True  # a service started later is still picked up


@needs_jtop
def test_jtop_service_dead_with_stale_socket(tmp_path: Path, meminfo: Path) -> None:
    client = FakeJtop()
    with unix_socket(tmp_path / "jtop.sock", listening=False), pytest.raises(SourceUnavailable) as err:
        _source(tmp_path, meminfo, client).open()
    assert "not running" in err.value.reason and "restart jtop.service" in (err.value.fix or "")
    assert not client.started


@needs_jtop
def test_jtop_socket_permission_denied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, meminfo: Path) -> None:
    class Refusing:
        def __init__(self, *a: object) -> None: ...
        def settimeout(self, t: float) -> None: ...
        def close(self) -> None: ...

        def connect(self, path: str) -> None:
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(jtop_mod.socket, "socket", Refusing)
    (tmp_path / "jtop.sock").touch()
    with pytest.raises(SourceUnavailable) as err:
        _source(tmp_path, meminfo, FakeJtop()).open()
    assert "permission" in err.value.reason and "usermod -aG jtop" in (err.value.fix or "")


# The messages jetson-stats 7.2 raises from jtop.start(), and what the operator is told.
START_FAILURES = [
    ("The jtop.service is not active. Please run:\nsudo jtop --install-service",
     "not running", "systemctl restart jtop.service"),
    ("I can't access jtop.service.\nPlease logout or reboot this board.",
     "no permission", "usermod -aG jtop"),
    ("Mismatch version jtop service: [4.2.1] and client: [7.2.2]. Please run:\n\nsudo jtop --install-service",
     "Mismatch version jtop service: [4.2.1] and client: [7.2.2]", "same jetson-stats version"),
    ("Mismatch of Python versions between library and service", "different Python versions", "pip3 install -U"),
    ("Authentication with jetson-stats server failed", "authentication failed", "pip3 install -U"),
]


@needs_jtop
@pytest.mark.parametrize(("message", "reason", "fix"), START_FAILURES)
def test_jtop_start_failures_say_how_to_fix(
    tmp_path: Path, meminfo: Path, message: str, reason: str, fix: str
) -> None:
    client = FakeJtop(start_error=JtopException(message))
    with unix_socket(tmp_path / "jtop.sock"), pytest.raises(SourceUnavailable) as err:
        _source(tmp_path, meminfo, client).open()
    assert reason in err.value.reason
    assert fix in (err.value.fix or "")
    assert err.value.retry is True
    assert client.closed  # the half-started client is closed


@needs_jtop
@pytest.mark.parametrize("exc", [ConnectionResetError(104, "reset"), EOFError(), queue.Empty()])
def test_jtop_start_low_level_failures(tmp_path: Path, meminfo: Path, exc: BaseException) -> None:
    client = FakeJtop(start_error=exc)
    with unix_socket(tmp_path / "jtop.sock"), pytest.raises(SourceUnavailable) as err:
        _source(tmp_path, meminfo, client).open()
    assert "cannot connect to the jtop service" in err.value.reason and client.closed


@needs_jtop
@pytest.mark.parametrize(
    "exc",
    [
        "lost",  # JtopException("Lost connection with jtop server"), as _get_data raises it
        EOFError(),
        BrokenPipeError(32, "Broken pipe"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_jtop_service_dying_mid_session(tmp_path: Path, meminfo: Path, exc: object) -> None:
    client = FakeJtop()
    src = _source(tmp_path, meminfo, client)
    with unix_socket(tmp_path / "jtop.sock"):
        src.open()
    src.read()
    client.error = JtopException("Lost connection with jtop server") if exc == "lost" else exc  # type: ignore[assignment]
    with pytest.raises(SourceFailed) as err:
        src.read()
    assert "stopped" in err.value.reason and err.value.fix == "sudo systemctl restart jtop.service"


@needs_jtop
def test_jtop_client_stopped_running(tmp_path: Path, meminfo: Path) -> None:
    client = FakeJtop()
    src = _source(tmp_path, meminfo, client)
    with unix_socket(tmp_path / "jtop.sock"):
        src.open()
    client.running = False
    with pytest.raises(SourceFailed, match="stopped receiving"):
        src.read()


@needs_jtop
def test_jtop_service_that_stops_sending_new_data_is_a_failure(tmp_path: Path, meminfo: Path) -> None:
    client = FakeJtop()
    src = _source(tmp_path, meminfo, client, stale_after_s=0.0)
    with unix_socket(tmp_path / "jtop.sock"):
        src.open()
    src.read()
    client.tick()  # uptime moved: fresh
    src.read()
    time.sleep(0.002)
    with pytest.raises(SourceFailed, match="nothing new"):  # uptime did not move
        src.read()


@needs_jtop
def test_jtop_data_in_an_unknown_shape_is_a_failure(tmp_path: Path, meminfo: Path) -> None:
    stats = copy.deepcopy(ORIN_NANO_STATS)
    stats["mem"]["RAM"]["tot"] = "lots"
    client = FakeJtop(stats)
    src = _source(tmp_path, meminfo, client)
    with unix_socket(tmp_path / "jtop.sock"):
        src.open()
    with pytest.raises(SourceFailed, match="unexpected data from jtop"):
        src.read()


def test_jtop_read_before_open() -> None:
    with pytest.raises(SourceFailed):
        JtopSource().read()


def test_is_jetson_detects_l4t_and_device_tree(tmp_path: Path) -> None:
    assert not jtop_mod.is_jetson(tmp_path)
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/compatible").write_bytes(b"nvidia,p3768-0000+p3767-0005\x00nvidia,tegra234\x00")
    assert jtop_mod.is_jetson(tmp_path)


# -- NVML ----------------------------------------------------------------------------------------


def test_nvml_mapping_merges_gpu_into_the_host_sample() -> None:
    nvml = fake_pynvml(procs={4242: 1 * GiB, 4343: None})
    src = NvmlSource(nvml=nvml)
    src.open()
    s = src.read()
    assert s.source == "nvml"
    assert s.gpu_name == "NVIDIA GeForce RTX 4090"
    assert s.gpu_load == 45.0
    assert s.gpu_mem_total == 24 * GiB and s.gpu_mem_used == 3 * GiB
    assert s.gpu_freq_hz == 2_520_000_000 and s.gpu_freq_max_hz == 3_105_000_000
    assert s.temperatures["gpu"] == 52.0
    assert s.power_rails_w["GPU"] == pytest.approx(123.456)
    assert s.fan_percent is None  # NVML_ERROR_NOT_SUPPORTED on this card
    assert s.gpu_process_bytes == {4242: 1 * GiB}  # usedGpuMemory None: not attributed
    assert s.mem_total == psutil.virtual_memory().total  # the host part
    assert s.mem_gpu_shared is None
    src.close()
    assert nvml.shutdowns == 1


def test_nvml_several_gpus_are_noted() -> None:
    src = NvmlSource(nvml=fake_pynvml(count=2, fan_supported=True, name="Tesla T4"))
    src.open()
    s = src.read()
    assert s.gpu_name == "Tesla T4" and s.fan_percent == 30.0
    assert any("2 GPUs" in note for note in s.notes)
    src.close()


@pytest.mark.parametrize("code", [12, 9])  # NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED
def test_nvml_without_driver_is_quietly_unavailable(code: int) -> None:
    with pytest.raises(SourceUnavailable) as err:
        NvmlSource(nvml=fake_pynvml(init_error=code)).open()
    assert err.value.retry is False and "no NVIDIA driver" in err.value.reason and err.value.fix is None


def test_nvml_without_gpus_is_unavailable_and_shuts_down() -> None:
    nvml = fake_pynvml(count=0)
    with pytest.raises(SourceUnavailable, match="no NVIDIA GPU"):
        NvmlSource(nvml=nvml).open()
    assert nvml.shutdowns == 1


def test_nvml_library_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(SourceUnavailable) as err:
        NvmlSource().open()
    assert err.value.retry is False and "nvidia-ml-py" in err.value.reason


def test_nvml_gpu_lost_mid_session_is_a_failure() -> None:
    nvml = fake_pynvml()
    src = NvmlSource(nvml=nvml)
    src.open()
    src.read()
    nvml.lost = True
    with pytest.raises(SourceFailed, match="GPU is lost"):
        src.read()


def test_nvml_live_on_this_machine() -> None:
    """The real pynvml: a driver gives a reading, no driver gives a quiet, permanent no."""
    src = NvmlSource()
    try:
        src.open()
    except SourceUnavailable as exc:
        assert exc.retry is False
        assert "NVIDIA" in exc.reason
        return
    try:
        s = src.read()
        assert s.source == "nvml" and s.gpu_mem_total and s.gpu_mem_total > 0
        assert s.gpu_load is not None and 0 <= s.gpu_load <= 100
    finally:
        src.close()


# -- psutil / procfs -------------------------------------------------------------------------


def test_psutil_source_live_on_this_machine() -> None:
    src = PsutilSource()
    src.open()
    time.sleep(0.06)
    s = src.read()
    src.close()
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    assert s.source == "psutil"
    assert s.mem_total == vm.total
    assert s.mem_available is not None and abs(s.mem_available - vm.available) < 256 * MiB
    assert s.mem_used is not None and 0 < s.mem_used < s.mem_total
    assert s.swap_total == sw.total
    assert len(s.cpu_per_core) >= (psutil.cpu_count() or 1)
    assert s.cpu_percent is not None and 0.0 <= s.cpu_percent <= 100.0
    assert s.gpu_process_bytes is None  # no per-process GPU figures from this source
    assert abs(s.age()) < 5 and not s.is_stale()


ORIN_MEMINFO = """MemTotal:        7620560 kB
MemFree:          812000 kB
MemAvailable:    2097152 kB
Buffers:            6776 kB
Cached:           900000 kB
SwapCached:        10240 kB
SwapTotal:      16777212 kB
SwapFree:       14680060 kB
SReclaimable:      61584 kB
NvMapMemUsed:    1048576 kB
HugePages_Total:       0
"""


def _orin_tree(root: Path) -> tuple[Path, Path]:
    proc, sys_ = root / "proc", root / "sys"
    proc.mkdir()
    (proc / "meminfo").write_text(ORIN_MEMINFO)
    (proc / "stat").write_text(
        "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu2 50 0 50 400 0 0 0 0 0 0\nintr 1\n"
    )
    for n, (kind, temp) in enumerate([("cpu-thermal", 48500), ("gpu-thermal", 47000), ("cv0-thermal", -256000)]):
        zone = sys_ / f"class/thermal/thermal_zone{n}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{temp}\n")
    gpu = sys_ / "class/devfreq/17000000.gpu"
    (gpu / "device/of_node").mkdir(parents=True)
    (gpu / "device/of_node/name").write_bytes(b"gpu\x00")
    (gpu / "device/load").write_text("615\n")
    (gpu / "cur_freq").write_text("612000000\n")
    (gpu / "max_freq").write_text("624750000\n")
    other = sys_ / "class/devfreq/15340000.vic/device/of_node"
    other.mkdir(parents=True)
    (other / "name").write_text("vic\n")
    return proc, sys_


def test_psutil_source_on_an_orin_nano_tree(tmp_path: Path) -> None:
    proc, sys_ = _orin_tree(tmp_path)
    src = PsutilSource(proc, sys_)
    src.min_cpu_window_s = 0.0
    src.open()
    (proc / "stat").write_text(  # cpu1 offline: absent from /proc/stat
        "cpu  160 0 120 920 0 0 0 0 0 0\ncpu0 100 0 60 440 0 0 0 0 0 0\ncpu2 60 0 60 480 0 0 0 0 0 0\n"
    )
    s = src.read()
    assert s.mem_total == 7620560 * KB
    assert s.mem_used == (7620560 - 812000 - 6776 - 900000 - 61584) * KB
    assert s.mem_available == 2 * GiB
    assert s.mem_gpu_shared == 1 * GiB
    assert s.swap_total == 16777212 * KB and s.swap_used == (16777212 - 14680060) * KB
    assert s.cpu_per_core == (pytest.approx(60.0), None, pytest.approx(20.0))
    assert s.cpu_percent == pytest.approx(40.0)
    assert s.temperatures == {"cpu": 48.5, "gpu": 47.0}  # a -256 C sensor is offline
    assert s.gpu_name == "17000000.gpu" and s.gpu_load == 61.5
    assert s.gpu_freq_hz == 612_000_000 and s.gpu_freq_max_hz == 624_750_000


def test_psutil_source_cpu_needs_a_real_window(tmp_path: Path) -> None:
    proc, sys_ = _orin_tree(tmp_path)
    src = PsutilSource(proc, sys_)
    src.min_cpu_window_s = 3600.0
    src.open()
    assert src.read().cpu_percent is None  # a reading right after open is noise, not load


def test_psutil_source_falls_back_to_psutil_sensors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    proc, sys_ = _orin_tree(tmp_path)
    for zone in (sys_ / "class/thermal").iterdir():
        for f in zone.iterdir():
            f.unlink()
        zone.rmdir()
    shwtemp = namedtuple("shwtemp", "label current high critical")
    monkeypatch.setattr(
        psutil, "sensors_temperatures",
        lambda: {"k10temp": [shwtemp("Tctl", 51.25, None, None)], "nvme": [shwtemp("", 38.0, 80.0, 85.0)]},
        raising=False,
    )
    src = PsutilSource(proc, sys_)
    src.open()
    assert src.read().temperatures == {"k10temp Tctl": 51.25, "nvme": 38.0}


def test_psutil_source_failures(tmp_path: Path) -> None:
    proc, sys_ = _orin_tree(tmp_path)
    src = PsutilSource(proc, sys_)
    with pytest.raises(SourceFailed, match="before open"):
        src.read()
    src.open()
    (proc / "meminfo").unlink()
    with pytest.raises(SourceFailed, match="meminfo"):
        src.read()


def test_procfs_helpers() -> None:
    info = read_meminfo("/proc/meminfo")
    assert info["MemTotal"] == psutil.virtual_memory().total
    assert memory_fields({})["mem_total"] is None
    times = read_cpu_times("/proc/stat")
    assert -1 in times and 0 in times
    assert cpu_load({}, {}) == (None, ())
    assert cpu_load({-1: (10, 100)}, {-1: (10, 100)}) == (None, ())  # no time passed


# -- per-process memory ----------------------------------------------------------------------


def test_measure_own_process() -> None:
    m = measure_process(os.getpid())
    assert m.rss > 10 * MiB
    assert m.uss is not None and 0 < m.uss <= m.rss
    assert m.swap is not None and m.swap >= 0
    assert m.gpu is None and m.gpu_source is None  # no sample: GPU memory unknown


def test_measure_runner_with_gpu_memory_from_the_sample() -> None:
    code = "import time; b = b'x' * (32 << 20); print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        jtop_sample = make_sample("jtop", gpu_process_bytes={child.pid: 300 * MiB})
        m = measure_process(child.pid, jtop_sample)
        assert m.rss >= 32 * MiB and m.uss is not None and m.uss >= 30 * MiB
        assert m.gpu == 300 * MiB and m.gpu_source == "jtop"
        assert measure_process(child.pid, make_sample("nvml", gpu_process_bytes={})).gpu == 0
        assert measure_process(child.pid, make_sample("psutil")).gpu is None
        assert m.exclusive == m.uss + (m.swap or 0) + 300 * MiB
        both = measure_processes([child.pid, os.getpid()], jtop_sample)
        assert set(both) == {child.pid, os.getpid()} and both[os.getpid()].gpu == 0
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with pytest.raises(ProcessGone):
        measure_process(child.pid)
    assert measure_processes([child.pid]) == {}


def test_measure_process_without_permission_for_smaps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def denied(self: psutil.Process) -> None:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_full_info", denied)
    (tmp_path / str(os.getpid())).mkdir()
    (tmp_path / str(os.getpid()) / "status").write_text("Name:\tpython\nVmRSS:\t  1000 kB\nVmSwap:\t    2048 kB\n")
    m = measure_process(os.getpid(), proc_root=tmp_path)
    assert m.uss is None and m.swap == 2 * MiB and m.rss > 0
    assert m.exclusive == m.rss + 2 * MiB


def test_read_vm_swap(tmp_path: Path) -> None:
    assert read_vm_swap(os.getpid()) is not None
    assert read_vm_swap(12345, proc_root=tmp_path) is None
    assert ProcessMemory(1, rss=10, uss=None, swap=None, gpu=None, gpu_source=None).exclusive == 10


@needs_jtop
def test_jtop_service_that_never_answers_times_out(tmp_path: Path, meminfo: Path) -> None:
    """jtop waits for the service's first reply without a deadline; the source gives one."""
    import threading

    release = threading.Event()

    class Hung(FakeJtop):
        def start(self) -> None:
            release.wait(10)
            super().start()

    client = Hung()
    src = _source(tmp_path, meminfo, client, connect_timeout_s=0.1)
    with unix_socket(tmp_path / "jtop.sock"), pytest.raises(SourceUnavailable, match="did not answer"):
        src.open()
    release.set()
    wait_until(lambda: client.closed, what="the late client to close")  # the late answer leaves no client running


@needs_jtop
def test_jtop_connects_on_a_fresh_thread_each_time(tmp_path: Path, meminfo: Path) -> None:
    """multiprocessing caches a manager connection per thread; a reconnect must not reuse one."""
    import threading

    threads: list[threading.Thread] = []  # the objects: a finished thread's ident may be reused

    class Recording(FakeJtop):
        def start(self) -> None:
            threads.append(threading.current_thread())
            super().start()

    with unix_socket(tmp_path / "jtop.sock"):
        for _ in range(2):
            src = _source(tmp_path, meminfo, Recording())
            src.open()
            src.close()
    assert len(threads) == 2 and threads[0] is not threads[1]
    assert threading.current_thread() not in threads
