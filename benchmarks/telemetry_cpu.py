"""Benchmark: what the telemetry sampler costs in CPU at 1 Hz.

The sampler runs as the console runs it (its source chosen as ``telemetry_source`` chooses,
publishing every sample on an event bus with one subscriber) for ``--seconds`` seconds. Two
measurements:

- the process's CPU time (``time.process_time``, all threads) over the run, minus the same
  process's CPU time over an idle period of the same length measured just before (the
  baseline: the interpreter itself, the bus subscriber waking up);
- the sampler thread's own CPU time (user + system, from ``/proc/self/task/<tid>/stat`` via
  psutil), which needs no baseline.

Both are given as a percentage of one core. The goal is "well under 1 %".

Usage::

    .venv/bin/python benchmarks/telemetry_cpu.py [--seconds 20] [--interval 1.0] [--source auto]

The last line of output is JSON:
``{"benchmark": "telemetry_cpu", "source": ..., "cpu_percent_of_core": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from orin_console.core.events.bus import EventBus, TelemetrySample  # noqa: E402
from orin_console.core.telemetry import SOURCE_NAMES, Sampler, build_sources  # noqa: E402


def _thread_cpu(native_id: int) -> float:
    for t in psutil.Process().threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    raise RuntimeError("sampler thread not found")


def _idle_baseline(seconds: float, bus: EventBus) -> float:
    """CPU seconds this process spends per second with a subscriber waiting and no sampler."""
    sub = bus.subscribe(kinds=(TelemetrySample,), maxsize=10)
    start_cpu, start = time.process_time(), time.monotonic()
    while time.monotonic() - start < seconds:
        sub.get(timeout=0.5)
    used = time.process_time() - start_cpu
    sub.close()
    return used / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--source", choices=SOURCE_NAMES, default="auto")
    parser.add_argument("--baseline-seconds", type=float, default=None, help="default: --seconds")
    args = parser.parse_args()

    bus = EventBus()
    baseline = _idle_baseline(args.baseline_seconds or args.seconds, bus)
    sub = bus.subscribe(kinds=(TelemetrySample,), maxsize=10)
    sampler = Sampler(build_sources(args.source, interval_s=args.interval), bus=bus, interval_s=args.interval)
    sampler.start()
    # Let the first tick (source probing, first connection) pass; it is start-up, not running cost.
    while sampler.latest() is None:
        time.sleep(0.01)
    time.sleep(min(args.interval, 1.0))
    assert sampler._thread is not None and sampler._thread.native_id is not None
    tid = sampler._thread.native_id
    cpu0, thread0, ticks0, t0 = time.process_time(), _thread_cpu(tid), sampler.ticks, time.monotonic()
    deadline = t0 + args.seconds
    while time.monotonic() < deadline:
        sub.get(timeout=0.5)
        sub.drain()
    cpu1, thread1, ticks1, t1 = time.process_time(), _thread_cpu(tid), sampler.ticks, time.monotonic()
    source = sampler.active_source
    sampler.stop()

    wall = t1 - t0
    ticks = ticks1 - ticks0
    process_pct = max(0.0, (cpu1 - cpu0) / wall - baseline) * 100
    thread_pct = (thread1 - thread0) / wall * 100
    per_tick_ms = (thread1 - thread0) / ticks * 1000 if ticks else float("nan")
    print(f"source {source}, interval {args.interval} s, {ticks} samples in {wall:.1f} s")
    print(f"process CPU above idle baseline: {process_pct:.3f} % of a core (baseline {baseline * 100:.3f} %)")
    print(f"sampler thread CPU: {thread_pct:.3f} % of a core, {per_tick_ms:.2f} ms per sample")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(json.dumps({
        "benchmark": "telemetry_cpu",
        "source": source,
        "interval_s": args.interval,
        "seconds": round(wall, 2),
        "samples": ticks,
        "cpu_percent_of_core": round(process_pct, 4),
        "thread_cpu_percent_of_core": round(thread_pct, 4),
        "cpu_ms_per_sample": round(per_tick_ms, 3),
        "baseline_percent_of_core": round(baseline * 100, 4),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
