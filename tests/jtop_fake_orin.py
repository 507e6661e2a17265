"""An emulated Jetson Orin Nano for the real jtop service, and the launcher that runs it.

jetson-stats reads a fake sysfs under ``/fake_sys`` when ``JTOP_TESTING`` is set. This module
builds such a tree (CPUs, the integrated GPU, the EMC clock, INA3221 power rails, a PWM fan, the
nvmap GPU-memory table), plus the parts jtop always reads from the real ``/sys``
(``devices/virtual/dmi/id`` on x86, ``devices/virtual/thermal``) and a stand-in ``nvpmodel``
command. :class:`FakeOrin` writes new readings into the tree while the service runs.

Run as a script, it enters a private mount namespace of its own, mounts the tree there and
starts ``jtop.service.JtopServer``; nothing outside the namespace changes except the service's
socket ``/run/jtop.sock``, which the caller removes afterwards (and the mount point
``/fake_sys``, which must exist)::

    python jtop_fake_orin.py ROOT           # run the service on the board under ROOT
    python jtop_fake_orin.py --probe DIR    # exit 0 if this machine allows all that
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Orin Nano: six Cortex-A78AE cores, an Ampere iGPU at 17000000.gpu, three INA3221 rails.
N_CPUS = 6
GPU_DEVFREQ = "class/devfreq/17000000.gpu"
EMC_CLK = "kernel/debug/bpmp/debug/clk/emc"
EMC_ACTMON = "kernel/debug/bpmp/debug/actmon/mc_all_avg_activity"
INA3221_HWMON = "bus/i2c/devices/1-0040/hwmon/hwmon3"
FAN_HWMON = "class/hwmon/hwmon0"
NVMAP_MAPS = "kernel/debug/nvmap/iovmm/maps"
RAILS = ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")
THERMAL_ZONES = ("cpu-thermal", "gpu-thermal", "soc0-thermal", "tj-thermal")

_NVPMODEL_SCRIPT = """#!/bin/sh
# Stand-in for L4T's nvpmodel: the current mode id is kept in $(dirname $0)/mode.
here=$(dirname "$0")
mode=$(cat "$here/mode")
if [ "$1" = "-q" ]; then
    if [ "$mode" = "0" ]; then echo "NV Power Mode: 15W"; else echo "NV Power Mode: 7W"; fi
    echo "$mode"
elif [ "$1" = "-p" ]; then
    echo "NVPM VERB: Config file: /etc/nvpmodel.conf"
    echo "NVPM VERB: POWER_MODEL: ID=0 NAME=15W"
    echo "NVPM VERB: POWER_MODEL: ID=1 NAME=7W"
    echo "NVPM VERB: PM_CONFIG: DEFAULT=15W(0)"
else
    echo "NVPM ERROR: not supported by this stand-in"
    exit 1
fi
"""


def _write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


@dataclass
class FakeOrin:
    """The emulated board's files under ``root`` (``fake_sys/``, ``virtual/``, ``bin/``)."""

    root: Path

    @property
    def fake_sys(self) -> Path:
        """Mounted on ``/fake_sys`` inside the namespace."""
        return self.root / "fake_sys"

    @property
    def virtual(self) -> Path:
        """Mounted on ``/sys/devices/virtual`` inside the namespace (DMI ids, thermal zones)."""
        return self.root / "virtual"

    @property
    def bin(self) -> Path:
        """Put first on the service's PATH (the ``nvpmodel`` stand-in)."""
        return self.root / "bin"

    @property
    def state(self) -> Path:
        """The service's own config folder (instead of ``<python prefix>/local/jtop``)."""
        return self.root / "state"

    def build(self, gpu_pids: dict[int, int] | None = None) -> FakeOrin:
        """Write a complete, idle Orin Nano. ``gpu_pids`` maps pid to nvmap KB."""
        fs = self.fake_sys
        stat = ["cpu  1000 0 500 8000 0 0 0 0 0 0"]
        for n in range(N_CPUS):
            cpu = fs / f"devices/system/cpu/cpu{n}"
            _write(cpu / "online", 1)
            for kind in ("scaling", "cpuinfo"):
                _write(cpu / f"cpufreq/{kind}_min_freq", 115200)
                _write(cpu / f"cpufreq/{kind}_max_freq", 1510400)
                _write(cpu / f"cpufreq/{kind}_cur_freq", 1510400)
            _write(cpu / "cpufreq/scaling_governor", "schedutil")
            stat.append(f"cpu{n} 100 0 50 800 0 0 0 0 0 0")
        _write(fs / "stat", "\n".join([*stat, "intr 0", "ctxt 0"]))

        gpu = fs / GPU_DEVFREQ
        _write(gpu / "device/of_node/name", "gpu")
        _write(gpu / "device/railgate_enable", 1)
        _write(gpu / "governor", "nvhost_podgov")
        _write(gpu / "min_freq", 306000000)
        _write(gpu / "max_freq", 624750000)

        emc = fs / EMC_CLK
        _write(emc / "min_rate", 204000000)
        _write(emc / "max_rate", 2133000000)
        _write(emc / "mrq_rate_locked", 0)

        ina = fs / INA3221_HWMON
        _write(fs / "bus/i2c/devices/1-0040/name", "ina3221")
        for n, rail in enumerate(RAILS, start=1):
            _write(ina / f"in{n}_label", rail)

        _write(fs / FAN_HWMON / "name", "pwmfan")

        dmi = self.virtual / "dmi/id"
        _write(dmi / "board_name", "Jetson Orin Nano (emulated)")
        _write(dmi / "sys_vendor", "orin-console tests")
        for n, zone in enumerate(THERMAL_ZONES):
            _write(self.virtual / f"thermal/thermal_zone{n}/type", zone)

        self.bin.mkdir(parents=True, exist_ok=True)
        nvp = self.bin / "nvpmodel"
        nvp.write_text(_NVPMODEL_SCRIPT)
        nvp.chmod(0o755)
        self.state.mkdir(parents=True, exist_ok=True)
        self.set_readings(gpu_pids=gpu_pids or {})
        return self

    def set_readings(
        self,
        *,
        gpu_load_pct: float = 0.0,
        gpu_freq_hz: int = 306000000,
        emc_rate_hz: int = 2133000000,
        emc_load_pct: int = 0,
        rails_mv_ma: dict[str, tuple[int, int]] | None = None,
        fan_pwm: int = 0,
        fan_rpm: int = 0,
        temps_c: dict[str, float] | None = None,
        nvpmodel_id: int = 0,
        gpu_pids: dict[int, int] | None = None,
        nvmap_total_kb: int | None = None,
        cpu_offline: tuple[int, ...] = (),
    ) -> None:
        """Write one set of sensor values, in the units the kernel uses."""
        fs = self.fake_sys
        gpu = fs / GPU_DEVFREQ
        _write(gpu / "device/load", round(gpu_load_pct * 10))  # per mille
        _write(gpu / "cur_freq", gpu_freq_hz)
        _write(fs / EMC_CLK / "rate", emc_rate_hz)
        # jtop divides the activity counter by the rate in kHz to get a percentage.
        _write(fs / EMC_ACTMON, emc_load_pct * (emc_rate_hz // 1000))
        rails = rails_mv_ma or {"VDD_IN": (5000, 1000), "VDD_CPU_GPU_CV": (5000, 200), "VDD_SOC": (5000, 300)}
        for n, rail in enumerate(RAILS, start=1):
            mv, ma = rails.get(rail, (0, 0))
            _write(fs / INA3221_HWMON / f"in{n}_input", mv)
            _write(fs / INA3221_HWMON / f"curr{n}_input", ma)
        _write(fs / FAN_HWMON / "pwm1", fan_pwm)
        _write(fs / FAN_HWMON / "rpm", fan_rpm)
        temps = temps_c or {}
        for n, zone in enumerate(THERMAL_ZONES):
            _write(self.virtual / f"thermal/thermal_zone{n}/temp", int(temps.get(zone.split("-")[0], 40.0) * 1000))
        (self.bin / "mode").write_text(f"{nvpmodel_id}\n")
        pids = gpu_pids or {}
        total = nvmap_total_kb if nvmap_total_kb is not None else sum(pids.values())
        lines = ["CLIENT                        PROCESS      PID        SIZE"]
        lines += [f"root                          python       {pid}      {kb}K" for pid, kb in pids.items()]
        lines.append(f"total                                                {total}K")
        _write(fs / NVMAP_MAPS, "\n".join(lines))
        for n in range(N_CPUS):
            _write(fs / f"devices/system/cpu/cpu{n}/online", 0 if n in cpu_offline else 1)


# Straight system calls (no util-linux): nothing is written outside the namespace, not even
# libmount's /run/mount.
CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def enter_private_mount_namespace() -> None:
    """Move this process into a new mount namespace whose mounts never propagate out."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype)]
    if _libc().mount(enc[0], enc[1], enc[2], flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def probe(target: Path) -> None:
    """Exit 0 when this machine lets us make a private mount namespace and mount in it."""
    enter_private_mount_namespace()
    _mount("orin-probe", str(target), "tmpfs", 0)


def _run_service(root: Path) -> None:
    """In a private mount namespace: mount the tree and run the real jtop service."""
    board = FakeOrin(root)
    enter_private_mount_namespace()
    _mount(str(board.fake_sys), "/fake_sys", None, MS_BIND)
    _mount(str(board.virtual), "/sys/devices/virtual", None, MS_BIND)
    # The service needs a `jtop` group for its socket; add one in this namespace only.
    group = root / "etc-group"
    existing = Path("/etc/group").read_text()
    if not any(line.startswith("jtop:") for line in existing.splitlines()):
        existing += "jtop:x:64999:\n"
    group.write_text(existing)
    _mount(str(group), "/etc/group", None, MS_BIND)
    os.environ["JTOP_TESTING"] = "1"
    os.environ["PATH"] = f"{board.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    # jtop keeps its config under sys.base_prefix/local/jtop; keep it in the test's tree.
    sys.base_prefix = str(board.state)
    import logging

    logging.basicConfig(level=logging.INFO, format="jtop-service %(levelname)s %(name)s: %(message)s")
    from jtop.service import JtopServer

    JtopServer(force=True).loop_for_ever()


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        probe(Path(sys.argv[2]))
    else:
        _run_service(Path(sys.argv[1]))
