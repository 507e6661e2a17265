"""``orin-console telemetry`` / ``status``: one-shot table, JSON, --watch, errors."""

from __future__ import annotations

import json

import psutil
import pytest
from rich.console import Console

from orin_console.cli import telemetry as cli_telemetry
from orin_console.cli.main import main
from orin_console.core.telemetry import Sampler, SourceStatus
from orin_console.testing.telemetry_fakes import ScriptedSource, failed, make_sample

GiB = 1024**3


def test_json_one_shot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telemetry", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] in ("jtop", "nvml", "psutil")
    assert data["mem_total"] == psutil.virtual_memory().total
    assert data["mem_available"] > 0
    assert data["stale"] is False and 0 <= data["age_s"] < 5
    assert data["cpu_percent"] is not None  # two readings a quarter second apart
    sources = {s["name"]: s for s in data["sources"]}
    assert list(sources) == ["jtop", "nvml", "psutil"]
    assert sources[data["source"]]["state"] == "active"
    for name, s in sources.items():
        if name != data["source"] and s["state"] in ("retrying", "unavailable"):
            assert s["reason"]


def test_status_alias_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--source", "psutil"]) == 0
    out = capsys.readouterr().out
    for label in ("source", "psutil", "fresh", "memory", "available", "swap", "cpu", "temperature"):
        assert label in out


def test_source_from_the_settings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORIN_TELEMETRY_SOURCE", "psutil")
    assert main(["telemetry", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "psutil" and [s["name"] for s in data["sources"]] == ["psutil"]


def test_watch_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telemetry", "--watch", "--json", "--count", "3", "--interval", "0.05", "--source", "psutil"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 3
    assert all(line["source"] == "psutil" for line in lines)
    assert [line["wall"] for line in lines] == sorted(line["wall"] for line in lines)


def test_watch_tables_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telemetry", "--watch", "--count", "2", "--interval", "0.05", "--source", "psutil"]) == 0
    assert capsys.readouterr().out.count("memory") == 2


def test_watch_ends_quietly_on_ctrl_c(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(self: Sampler, n: int | None = None) -> list:  # type: ignore[type-arg]
        raise KeyboardInterrupt

    monkeypatch.setattr(Sampler, "history", interrupted)
    assert main(["telemetry", "--watch", "--interval", "0.05", "--source", "psutil"]) == 0


def test_bad_interval_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["telemetry", "--interval", "0"])
    assert exc.value.code == 2
    assert "--interval" in capsys.readouterr().err


def test_no_working_source_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = ScriptedSource("psutil", reads=[failed("psutil", "cannot read /proc/meminfo")])
    monkeypatch.setattr(cli_telemetry, "build_sources", lambda choice, interval_s: [broken])
    assert main(["telemetry"]) == 2
    err = capsys.readouterr().err
    assert "no telemetry source works" in err and "cannot read /proc/meminfo" in err
    assert len(err.strip().splitlines()) == 1


def _render(sample, status) -> str:  # type: ignore[no-untyped-def]
    console = Console(width=140, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(cli_telemetry.render_sample(sample, status))
    console.file.close()
    return console.export_text()


def test_render_shows_every_jetson_field_and_staleness() -> None:
    import time

    sample = make_sample(
        "jtop",
        mono=time.monotonic() - 10,
        mem_total=8 * GiB, mem_used=5 * GiB, mem_available=2 * GiB, mem_gpu_shared=1 * GiB,
        swap_total=16 * GiB, swap_used=2 * GiB,
        cpu_percent=28.0, cpu_per_core=(40.0, None),
        gpu_name="gpu", gpu_load=61.5, gpu_freq_hz=612_000_000, gpu_freq_max_hz=624_750_000,
        emc_load=23.0, emc_freq_hz=2_133_000_000,
        temperatures={"cpu": 48.5, "tj": 49.0},
        power_w=7.366, power_rails_w={"VDD_SOC": 1.5},
        fan_percent=50.2, fan_rpm=2100,
        nvpmodel="7W", nvpmodel_id=1, jetson_clocks=True,
        gpu_process_bytes={4242: 512 * 1024**2},
    )
    status = [
        SourceStatus("jtop", "active"),
        SourceStatus("psutil", "untried"),
    ]
    text = _render(sample, status)
    for fragment in (
        "STALE", "GPU-shared 1.0 GB", "2.0 GB available", "cores: 40 off", "gpu: 62 % at 612 MHz (max 625)",
        "emc", "23 % at 2133 MHz", "cpu 48.5", "7.37 W", "VDD_SOC 1.50", "50 %, 2100 rpm",
        "nvpmodel 7W (id 1), jetson_clocks on", "4242: 512.0 MB",
    ):
        assert fragment in text, fragment


def test_render_explains_sources_not_in_use() -> None:
    status = [
        SourceStatus("jtop", "retrying", "the jtop service is not running", "sudo systemctl restart jtop.service", 4.0),
        SourceStatus("nvml", "unavailable", "no NVIDIA driver (NVML Shared Library Not Found)"),
        SourceStatus("psutil", "active"),
    ]
    import time

    text = _render(make_sample("psutil", mono=time.monotonic(), mem_total=GiB, mem_used=GiB // 2), status)
    assert "fresh" in text and "STALE" not in text
    assert "jtop: retrying: the jtop service is not running  fix: sudo systemctl restart jtop.service" in text
    assert "nvml: unavailable: no NVIDIA driver" in text
    assert "gpu" in text and "n/a" in text


def test_sparkline() -> None:
    assert cli_telemetry.spark([0.0, 50.0, 100.0, None]) == "▁▅█ "
    assert len(cli_telemetry.spark([10.0] * 100, width=24)) == 24
