"""``orin-console telemetry`` (alias ``status``): the machine's gauges as text, over plain SSH.

One-shot by default; ``--watch`` refreshes every interval until Ctrl-C; ``--json`` prints the
sample (one JSON object, or one per line with ``--watch``). The source and the sample's age are
always shown, stale data is marked stale, and sources that are not in use say why and how to
fix them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orin_console.cli.main import Context
from orin_console.core.events.bus import EventBus, TelemetrySample
from orin_console.core.telemetry import SOURCE_NAMES, Sample, Sampler, SourceStatus, build_sources
from orin_console.core.units import format_size

SPARK = "▁▂▃▄▅▆▇█"
NA = "[dim]n/a[/dim]"


def register(sub: Any) -> None:
    """Add ``telemetry`` and its alias ``status``."""
    p = sub.add_parser(
        "telemetry",
        aliases=["status"],
        help="memory, swap, CPU, GPU, temperatures, power: one sample or --watch",
        description="Read telemetry from jtop (Jetson), NVML (desktop GPU) or psutil, "
        "whichever is the best that works; shows the source, the sample's age and why "
        "better sources are not in use.",
    )
    p.add_argument("--watch", action="store_true", help="refresh every interval until Ctrl-C")
    p.add_argument("--json", action="store_true", help="machine-readable (one object per sample)")
    p.add_argument("--interval", type=_positive, default=None, metavar="S",
                   help="seconds between samples (default: the telemetry_interval_s setting)")
    p.add_argument("--source", choices=SOURCE_NAMES, default=None,
                   help="preferred source (default: the telemetry_source setting)")
    p.add_argument("--count", type=_count, default=None, metavar="N",
                   help="with --watch: stop after N samples")
    p.set_defaults(func=cmd_telemetry)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more (or leave --count out to watch until Ctrl-C)")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.05 and 3600 seconds")
    return value


def _memory(n: int | None) -> str:
    """Memory in GB, one decimal (the one byte formatter); ``?`` when a source lacks it."""
    return "?" if n is None else format_size(n, unit="GB")


def spark(values: list[float | None], width: int = 24) -> str:
    """A sparkline of the last ``width`` values (0-100 scale; gaps for missing values)."""
    out = []
    for v in values[-width:]:
        out.append(" " if v is None else SPARK[min(len(SPARK) - 1, max(0, int(v / 100 * len(SPARK))))])
    return "".join(out)


def _pct(used: int | None, total: int | None) -> float | None:
    return None if not used or not total else 100.0 * used / total


def render_sample(sample: Sample, status: list[SourceStatus], history: list[Sample] | None = None) -> Group:
    """The sample as a two-column table, then the sources that are not in use."""
    hist = history or []
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_column(style="cyan")

    age = sample.age()
    fresh = "[bold red]STALE[/bold red]" if sample.is_stale() else "[green]fresh[/green]"
    table.add_row("source", f"{escape(sample.source)}  (sampled {age:.1f} s ago, {fresh})", "")

    mem = f"{_memory(sample.mem_used)} used of {_memory(sample.mem_total)}"
    if sample.mem_available is not None:
        mem += f", {_memory(sample.mem_available)} available"
    if sample.mem_gpu_shared is not None:
        mem += f", GPU-shared {_memory(sample.mem_gpu_shared)}"
    table.add_row("memory", mem, spark([_pct(s.mem_used, s.mem_total) for s in hist]))
    swap = NA if sample.swap_total is None else (
        "none configured" if sample.swap_total == 0
        else f"{_memory(sample.swap_used)} used of {_memory(sample.swap_total)}"
    )
    table.add_row("swap", swap, spark([_pct(s.swap_used, s.swap_total) for s in hist]))

    if sample.cpu_percent is None:
        cpu = NA + " (needs two readings)"
    else:
        cores = " ".join("off" if c is None else f"{c:.0f}" for c in sample.cpu_per_core)
        cpu = f"{sample.cpu_percent:.0f} %" + (f"  [dim]cores: {cores}[/dim]" if cores else "")
    table.add_row("cpu", cpu, spark([s.cpu_percent for s in hist]))

    if sample.gpu_load is None and sample.gpu_name is None:
        table.add_row("gpu", NA, "")
    else:
        gpu = f"{escape(sample.gpu_name or 'gpu')}: " + ("?" if sample.gpu_load is None else f"{sample.gpu_load:.0f} %")
        if sample.gpu_freq_hz is not None:
            gpu += f" at {sample.gpu_freq_hz / 1e6:.0f} MHz"
            if sample.gpu_freq_max_hz:
                gpu += f" (max {sample.gpu_freq_max_hz / 1e6:.0f})"
        table.add_row("gpu", gpu, spark([s.gpu_load for s in hist]))
    if sample.gpu_mem_total is not None:
        table.add_row("gpu memory", f"{_memory(sample.gpu_mem_used)} used of {_memory(sample.gpu_mem_total)}", "")
    if sample.emc_load is not None or sample.emc_freq_hz is not None:
        emc = "?" if sample.emc_load is None else f"{sample.emc_load:.0f} %"
        if sample.emc_freq_hz is not None:
            emc += f" at {sample.emc_freq_hz / 1e6:.0f} MHz"
        table.add_row("emc", emc, "")
    temps = ", ".join(f"{escape(k)} {v:.1f}" for k, v in sorted(sample.temperatures.items()))
    table.add_row("temperature", f"{temps} °C" if temps else NA, "")
    if sample.power_w is not None or sample.power_rails_w:
        power = "" if sample.power_w is None else f"{sample.power_w:.2f} W"
        rails = ", ".join(f"{escape(k)} {v:.2f}" for k, v in sorted(sample.power_rails_w.items()))
        power += f"  [dim]rails (W): {rails}[/dim]" if rails else ""
        table.add_row("power", power.strip(), "")
    if sample.fan_percent is not None or sample.fan_rpm is not None:
        fan = "?" if sample.fan_percent is None else f"{sample.fan_percent:.0f} %"
        table.add_row("fan", fan + ("" if sample.fan_rpm is None else f", {sample.fan_rpm} rpm"), "")
    if sample.nvpmodel is not None or sample.jetson_clocks is not None:
        mode = "?" if sample.nvpmodel is None else f"{escape(sample.nvpmodel)} (id {sample.nvpmodel_id})"
        clocks = "?" if sample.jetson_clocks is None else ("on" if sample.jetson_clocks else "off")
        table.add_row("power mode", f"nvpmodel {mode}, jetson_clocks {clocks}", "")
    if sample.gpu_process_bytes:
        procs = ", ".join(f"{pid}: {format_size(b)}" for pid, b in sorted(sample.gpu_process_bytes.items()))
        table.add_row("gpu by pid", procs, "")
    for note in sample.notes:
        table.add_row("note", escape(note), "")

    lines: list[Any] = [table]
    for st in status:
        if st.state in ("active", "closed") or st.reason is None:
            continue
        text = Text.assemble((f"{st.name}: ", "bold"), (f"{st.state}: {st.reason}", "yellow"))
        if st.fix:
            text.append(f"  fix: {st.fix}", style="green")
        lines.append(text)
    return Group(*lines)


def _quiet_logs() -> None:
    """The command shows source problems itself; keep Python's last-resort logger (and the
    CLI's warning line, :mod:`orin_console.cli.guard`, which stands for it) quiet about them."""
    if not logging.getLogger().handlers:
        for name in ("orin_console.core.telemetry", "jtop"):
            logger = logging.getLogger(name)
            if not logger.handlers:
                logger.addHandler(logging.NullHandler())


def _as_json(sample: Sample, status: list[SourceStatus]) -> str:
    data = sample.to_dict()
    data["sources"] = [asdict(s) for s in status]
    return json.dumps(data)


def cmd_telemetry(args: argparse.Namespace, ctx: Context) -> int:
    """Print one sample, or keep printing them with ``--watch``."""
    _quiet_logs()
    interval = args.interval if args.interval is not None else ctx.settings.telemetry_interval_s
    choice = args.source or ctx.settings.telemetry_source
    bus = EventBus()
    sampler = Sampler(
        build_sources(choice, interval_s=interval),
        bus=bus,
        interval_s=interval,
        history=ctx.settings.telemetry_history,
    )
    if args.watch:
        return _watch(args, ctx, sampler, bus, interval)
    try:
        sampler.sample_once()
        time.sleep(min(0.25, interval))  # the second reading gives CPU load over a real window
        sample = sampler.sample_once()
        status = sampler.status()
    finally:
        sampler.stop()
    if args.json:
        ctx.console.print(_as_json(sample, status), markup=False, highlight=False, soft_wrap=True)
    else:
        ctx.console.print(render_sample(sample, status))
    return 0


def _watch(args: argparse.Namespace, ctx: Context, sampler: Sampler, bus: EventBus, interval: float) -> int:
    sub = bus.subscribe(kinds=(TelemetrySample,), maxsize=1)
    shown = 0
    live: Live | None = None
    try:
        sampler.start()
        if not args.json and ctx.console.is_terminal:
            live = Live(console=ctx.console, auto_refresh=False, transient=False)
            live.start()
        while args.count is None or shown < args.count:
            event = sub.get(timeout=max(3 * interval, 1.0))
            sample = event.sample if isinstance(event, TelemetrySample) else sampler.latest()
            if sample is None:
                continue
            shown += 1
            if args.json:
                ctx.console.print(_as_json(sample, sampler.status()), markup=False, highlight=False, soft_wrap=True)
                continue
            view = render_sample(sample, sampler.status(), sampler.history())
            if live is not None:
                live.update(view, refresh=True)
            else:
                ctx.console.print(view)
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
        sub.close()
        sampler.stop()
    return 0
