"""``python -m stress [--quick] [--seed N] [name ...]``: run the chaos/soak checks and print
one final JSON line ``{"faults": {...}, "budget": {...}, ...}``.

Every check runs in its own child process (``python -m stress.<module> --json``), so a check
that crashes, hangs past ``--timeout`` or leaks cannot take the others down; a module that does
not exist yet is reported as ``{"missing": true}``, one that fails as ``{"error": "..."}``.
Exit status 0 when every check that ran met its goal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from typing import Any

CHECKS: dict[str, str] = {
    "faults": "stress.faults",
    "budget": "stress.budget",
    "disconnects": "stress.disconnects",
    "durability": "stress.durability",
    "telemetry": "stress.telemetry_faults",
    "soak": "stress.soak",
}
"""The final line's key -> the module that computes it, in run order."""


def run_check(module: str, *, quick: bool, seed: int, timeout: float, extra: list[str]) -> dict[str, Any]:
    """Run one check in a child process and return its figures (or why there are none)."""
    if importlib.util.find_spec(module) is None:
        return {"missing": True, "goal_met": False}
    cmd = [sys.executable, "-m", module, "--json", "--seed", str(seed), *(["--quick"] if quick else []), *extra]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s (raise --timeout)", "goal_met": False}
    sys.stderr.write(done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}", "goal_met": False}
    try:
        figures: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"error": f"unreadable figures: {exc}", "goal_met": False}
    figures.setdefault("wall_s", round(time.monotonic() - started, 1))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"checks to run (default: all): {', '.join(CHECKS)}")
    parser.add_argument("--quick", action="store_true", help="the short versions (what the tests run)")
    parser.add_argument("--seed", type=int, default=11, help="seed of every random choice (default 11)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per check")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option for the checks' run() (JSON value), e.g. --set faults=20")
    args = parser.parse_args(argv)
    extra = [item for pair in args.set for item in ("--set", pair)]
    unknown = [n for n in args.names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown check {unknown[0]!r} (known: {', '.join(CHECKS)})")
    names = args.names or list(CHECKS)
    results: dict[str, Any] = {}
    for name in names:
        sys.stderr.write(f"stress: {name}...\n")
        sys.stderr.flush()
        results[name] = run_check(CHECKS[name], quick=args.quick, seed=args.seed, timeout=args.timeout,
                                  extra=extra)
        sys.stderr.write(f"stress: {name}: {json.dumps(results[name])}\n")
    print(json.dumps(results), flush=True)
    ran = [r for r in results.values() if not r.get("missing")]
    return 0 if ran and all(r.get("goal_met") for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
