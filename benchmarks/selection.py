"""Benchmark: task detection + model selection latency, and detection accuracy.

Latency: a generated 100-model catalog (seeded: mixed task tags and priorities; 6 models in
the RAM tier, 8 in swap, 1 loading, 1 failed, the rest on disk; measured speed and usage for
the loaded ones; an admission check that refuses every fifth model) and one 2 KB prompt per
task (labelled prompts of that task joined and cut to 2,048 characters). Each timed call is
``detect_task`` + ``select`` in one of the three modes, measured with
``time.perf_counter_ns``; the selector is built once per catalog (as the manager does) and
warmed up before timing. Five rounds run; the round with the median p99 is reported, with
every round's p99 and the load average, because on a shared machine other processes preempt
some calls.

Warm routing: the cost of :meth:`Engine.route` (``auto``) and :meth:`Engine.preview` (detection
+ route) for a prompt whose best model is already loaded, on a real core (``make_core``) over a
small catalog of tiny generated models with the chat model loaded (one runner process) and the
others cold, against the bare ``select`` call with the same residency and usage, measured in
the same run. The route adds reading the manager's status (every model's state, the tiers'
reservations, the machine's free memory) and its usage snapshot. It must read no GGUF header
and make no admission plan: the run counts both and reports them (expected: 0).

Accuracy: ``detect_task`` on every prompt of ``tests/data/task_prompts.jsonl``, per task, on
the whole set, the development split and the held-out split (each row's ``split`` field; the
held-out prompts were never used to write the rules).

Usage::

    .venv/bin/python benchmarks/selection.py [--iterations 3000] [--rounds 5] [--warm-iterations 2000]

The last line of output is JSON:
``{"benchmark": "selection", "p50_us": ..., "p99_us": ..., "warm_route_p50_us": ...,
"warm_header_reads": 0, "accuracy": ..., "per_task": {...}}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orin_console.core import gguf  # noqa: E402
from orin_console.core.catalog.store import Catalog, CatalogEntry, Task  # noqa: E402
from orin_console.core.engine.inference import residency_of  # noqa: E402
from orin_console.core.engine.selection import Mode, UsageStats, select, selector_for  # noqa: E402
from orin_console.core.engine.tasks import DETECTED_TASKS, detect_task  # noqa: E402
from orin_console.core.tier import LOADED_TIERS, Tier  # noqa: E402
from orin_console.testing.managers import make_core  # noqa: E402
from orin_console.testing.tiny_models import write_tiny_llama  # noqa: E402

LABELLED = REPO / "tests" / "data" / "task_prompts.jsonl"
TAGS: tuple[Task, ...] = ("chat", "code", "classification", "summarisation", "extraction", "completion")


def load_labelled(path: Path = LABELLED) -> list[dict[str, str]]:
    """The labelled prompts, in file order."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def generated_catalog(n: int = 100, seed: int = 7) -> tuple[Catalog, dict[str, str], dict[str, UsageStats]]:
    """A catalog of ``n`` models with residency and usage, the same for a given seed."""
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        tasks = tuple(rng.sample(TAGS, rng.choice((1, 1, 2, 2, 3))))
        entries.append(CatalogEntry(id=f"model-{i:03d}", path=f"m{i}.gguf", tasks=tasks,
                                    tier=rng.choice(tuple(Tier)),
                                    priority=rng.randrange(0, 101)))
    ids = [e.id for e in entries]
    rng.shuffle(ids)
    residency = {**dict.fromkeys(ids[:6], "ram"), **dict.fromkeys(ids[6:14], "swap"),
                 ids[14]: "loading", ids[15]: "failed"}
    usage = {mid: UsageStats(count=rng.uniform(0, 20), tok_per_s=rng.uniform(5, 120),
                             ttft_s=rng.uniform(0.05, 1.0)) for mid in ids[:14]}
    return Catalog(Path("generated.toml"), entries), residency, usage


def prompts_2kb(rows: list[dict[str, str]]) -> dict[str, str]:
    """One 2,048-character prompt per task, from that task's labelled prompts."""
    out: dict[str, str] = {}
    for task in DETECTED_TASKS:
        text = ""
        for row in sorted((r for r in rows if r["task"] == task), key=lambda r: -len(r["prompt"])):
            if len(text) >= 2048:
                break
            text += row["prompt"] + "\n\n"
        out[task] = text[:2048]
    return out


def _pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def latency(iterations: int) -> dict[str, float]:
    """detect + select latency percentiles (µs) over all tasks and modes, for one round."""
    catalog, residency, usage = generated_catalog()
    selector_for(catalog)  # built once per catalog, as the manager does
    prompts = prompts_2kb(load_labelled())
    loaded = [m for m, tier in residency.items() if tier in LOADED_TIERS]

    def admissible(model_id: str) -> bool:
        return int(model_id[-3:]) % 5 != 0

    modes: tuple[Mode, ...] = ("auto", "hybrid", "manual")
    calls = [(text, mode) for text in prompts.values() for mode in modes]
    for text, mode in calls * 50:  # warm-up
        select(mode, detect_task(text), catalog, residency, usage, model=loaded[0],
               preferred=loaded[1], admissible=admissible)
    total: list[int] = []
    detect_only: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    for i in range(iterations):
        text, mode = calls[i % len(calls)]
        start = clock()
        guess = detect_task(text)
        mid = clock()
        select(mode, guess, catalog, residency, usage, model=loaded[0], preferred=loaded[1],
               admissible=admissible)
        end = clock()
        total.append(end - start)
        detect_only.append(mid - start)
    total.sort()
    detect_only.sort()
    select_only = sorted(t - d for t, d in zip(total, detect_only, strict=True))
    return {"p50_us": _pct(total, 0.5), "p99_us": _pct(total, 0.99),
            "detect_p50_us": _pct(detect_only, 0.5), "detect_p99_us": _pct(detect_only, 0.99),
            "select_p50_us": _pct(select_only, 0.5), "select_p99_us": _pct(select_only, 0.99)}


def median_round(iterations: int, rounds: int) -> tuple[dict[str, float], list[float]]:
    """Several rounds; the round with the median p99 (other processes on a shared machine
    preempt some calls, and one round can catch a burst), and every round's p99."""
    results = sorted((latency(iterations) for _ in range(rounds)), key=lambda r: r["p99_us"])
    return results[len(results) // 2], [r["p99_us"] for r in results]


WARM_CATALOG_TASKS: tuple[tuple[str, str, str], ...] = (
    ("chat-a", "chat", "ram"), ("code-a", "code", "swap"), ("chat-b", "chat", "swap"),
    ("summary-a", "summarisation", "swap"), ("extract-a", "extraction", "disk"),
    ("classify-a", "classification", "swap"), ("code-b", "code", "disk"), ("base-a", "completion", "disk"),
)
WARM_PROMPT = "Hello! Could you tell me how your day is going so far?"


def _timed(call: Callable[[], Any], iterations: int) -> list[int]:
    clock = time.perf_counter_ns
    for _ in range(min(200, iterations)):  # warm-up
        call()
    gc.collect()
    out = []
    for _ in range(iterations):
        start = clock()
        call()
        out.append(clock() - start)
    out.sort()
    return out


def warm_routing(iterations: int) -> dict[str, float]:
    """Route a chat prompt whose best model (``chat-a``) is loaded; p50/p99 in µs of the
    route, the preview and the bare selection, and the GGUF header reads and admission plans
    made while routing (both expected 0)."""
    with tempfile.TemporaryDirectory(prefix="orin-warm-route-") as tmp:
        folder = Path(tmp)
        write_tiny_llama(folder / "tiny.gguf", n_ctx=512)
        lines = []
        for model_id, task, tier in WARM_CATALOG_TASKS:
            (folder / f"{model_id}.gguf").symlink_to(folder / "tiny.gguf")
            lines.append(f'[[models]]\nid = "{model_id}"\npath = "{model_id}.gguf"\n'
                         f'tasks = ["{task}"]\ntier = "{tier}"\ncontext = 512\n')
        (folder / "models.toml").write_text("\n".join(lines))
        with make_core(folder) as core:
            manager, engine = core.manager, core.engine
            manager.load("chat-a").result(120)
            guess = detect_task(WARM_PROMPT)
            route = engine.route(guess, "auto", None, None)
            if route.selection.model_id != "chat-a" or route.load_tier is not None:
                raise SystemExit(f"warm routing set-up is wrong: {route.selection.explanation}")
            residency = residency_of(manager.model_statuses())
            usage = manager.usage.snapshot()
            catalog = manager.catalog
            reads = plans = 0
            real_read, real_plan = gguf.read_gguf, manager.plan

            def counting_read(*args: Any, **kwargs: Any) -> Any:
                nonlocal reads
                reads += 1
                return real_read(*args, **kwargs)

            def counting_plan(*args: Any, **kwargs: Any) -> Any:
                nonlocal plans
                plans += 1
                return real_plan(*args, **kwargs)

            gguf.read_gguf = counting_read
            manager.plan = counting_plan  # type: ignore[method-assign]
            try:
                routes = _timed(lambda: engine.route(guess, "auto", None, None), iterations)
                previews = _timed(lambda: engine.preview(WARM_PROMPT), iterations)
            finally:
                gguf.read_gguf = real_read
                del manager.plan
            bare = _timed(lambda: select("auto", guess, catalog, residency, usage), iterations)
            status = _timed(manager.status, iterations)
    return {"route_p50_us": _pct(routes, 0.5), "route_p99_us": _pct(routes, 0.99),
            "preview_p50_us": _pct(previews, 0.5), "preview_p99_us": _pct(previews, 0.99),
            "select_p50_us": _pct(bare, 0.5), "select_p99_us": _pct(bare, 0.99),
            "status_p50_us": _pct(status, 0.5), "status_p99_us": _pct(status, 0.99),
            "header_reads": reads, "plans": plans, "models": len(WARM_CATALOG_TASKS)}


def accuracy(rows: list[dict[str, str]]) -> dict[str, dict[str, tuple[int, int]]]:
    """split -> task -> (correct, total); splits: all, dev, held_out."""
    result: dict[str, dict[str, tuple[int, int]]] = {}
    counts = {split: (Counter[str](), Counter[str]()) for split in ("all", "dev", "held_out")}
    for row in rows:
        ok = detect_task(row["prompt"]).task == row["task"]
        for split in ("all", row["split"]):
            seen, right = counts[split]
            seen[row["task"]] += 1
            right[row["task"]] += ok
    for split, (seen, right) in counts.items():
        result[split] = {task: (right[task], seen[task]) for task in DETECTED_TASKS if seen[task]}
    return result


def _ratio(pairs: dict[str, tuple[int, int]]) -> float:
    return sum(r for r, _ in pairs.values()) / sum(n for _, n in pairs.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3000, help="timed calls per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median one is reported (default 5)")
    parser.add_argument("--warm-iterations", type=int, default=2000,
                        help="timed warm routes (default 2000; 0 skips the warm-routing part)")
    args = parser.parse_args(argv)
    rows = load_labelled()
    acc = accuracy(rows)
    load = os.getloadavg()[0]
    lat, round_p99 = median_round(args.iterations, args.rounds)
    print(f"Detection accuracy on {LABELLED.relative_to(REPO)} ({len(rows)} prompts)")
    print(f"{'task':<16}{'all':>14}{'dev':>14}{'held-out':>14}")
    for task in DETECTED_TASKS:
        cells = []
        for split in ("all", "dev", "held_out"):
            right, seen = acc[split].get(task, (0, 0))
            cells.append(f"{right}/{seen} {right / seen:6.1%}" if seen else "-")
        print(f"{task:<16}" + "".join(f"{c:>14}" for c in cells))
    print(f"{'overall':<16}" + "".join(f"{_ratio(acc[s]):>14.1%}" for s in ("all", "dev", "held_out")))
    print()
    print(f"Latency, 100-model catalog, 2 KB prompts, {args.rounds} rounds of {args.iterations} "
          f"calls, median round (µs); load average {load:.2f} on {os.cpu_count()} CPUs")
    print(f"{'':<18}{'p50':>8}{'p99':>8}")
    for name, key in (("detect", "detect"), ("select", "select")):
        print(f"{name:<18}{lat[key + '_p50_us']:>8.1f}{lat[key + '_p99_us']:>8.1f}")
    print(f"{'detect + select':<18}{lat['p50_us']:>8.1f}{lat['p99_us']:>8.1f}")
    print(f"p99 of each round: {', '.join(f'{v:.1f}' for v in round_p99)}")
    warm = warm_routing(args.warm_iterations) if args.warm_iterations > 0 else None
    if warm is not None:
        print()
        print(f"Warm routing, {warm['models']:.0f}-model catalog of tiny models, best model loaded, "
              f"{args.warm_iterations} calls each (µs)")
        print(f"{'':<34}{'p50':>8}{'p99':>8}")
        for name, key in (("bare select (same run)", "select"), ("manager.status()", "status"),
                          ("Engine.route (auto)", "route"), ("Engine.preview (detect + route)", "preview")):
            print(f"{name:<34}{warm[key + '_p50_us']:>8.1f}{warm[key + '_p99_us']:>8.1f}")
        print(f"GGUF header reads while routing: {warm['header_reads']:.0f}; "
              f"admission plans: {warm['plans']:.0f}")
    summary = {
        "benchmark": "selection",
        "p50_us": round(lat["p50_us"], 1), "p99_us": round(lat["p99_us"], 1),
        "detect_p99_us": round(lat["detect_p99_us"], 1),
        "select_p99_us": round(lat["select_p99_us"], 1),
        "round_p99_us": [round(v, 1) for v in round_p99], "load_average": round(load, 2),
        "accuracy": round(_ratio(acc["all"]), 4),
        "held_out_accuracy": round(_ratio(acc["held_out"]), 4),
        "per_task": {task: round(r / n, 4) for task, (r, n) in acc["all"].items()},
    }
    if warm is not None:
        summary.update({f"warm_{key}": round(value, 1) for key, value in warm.items()})
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
