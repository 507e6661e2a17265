"""``orin-console plan``: the usage-based placement plan (which models belong in which tier).

The plan is computed from the usage recorded by earlier runs (kept in the state folder), the
catalog's pins and the budgets. A one-shot command holds no models, so its moves start from
an empty machine; a running console shows (and, with auto-optimise on, applies) the same plan
against what it has loaded.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from orin_console.cli.main import Context
from orin_console.core import create_core
from orin_console.core.placement.optimiser import plan_for
from orin_console.core.text import sanitize


def register(sub: Any) -> None:
    """Add the ``plan`` command."""
    p = sub.add_parser("plan", help="the usage-based placement plan: which models belong in ram, swap, disk")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace, ctx: Context) -> int:
    """Print the plan (nothing is loaded or moved)."""
    core = create_core(ctx.settings, telemetry=False, optimiser=False, watch_interval_s=0)
    try:  # never started: computing the plan needs no thread and no process
        plan = plan_for(core.manager)
    finally:
        core.close()
    if args.json:
        ctx.console.print_json(json.dumps(plan.to_dict()))
        return 0
    ctx.console.print(sanitize(plan.explain(), multiline=True), markup=False, highlight=False, soft_wrap=True)
    ctx.err.print("(nothing was loaded or moved: a running console applies the plan when "
                  "auto-optimise is on)", markup=False, soft_wrap=True)
    return 0
