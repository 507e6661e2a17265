"""Model selection: the three modes, scoring rules and margins, errors, and the explanation."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from orin_console.core.catalog.store import TASKS, Catalog, CatalogEntry, Task
from orin_console.core.engine.selection import (
    PRIORITY_POINTS,
    SHOWN,
    TIER_BONUS,
    SelectionError,
    Selector,
    UsageStats,
    select,
    selector_for,
)
from orin_console.core.engine.tasks import TaskGuess, detect_task


def entry(model_id: str, *tasks: str, priority: int = 50, **extra: Any) -> CatalogEntry:
    return CatalogEntry(id=model_id, path=f"{model_id}.gguf", tasks=cast("tuple[Task, ...]", tasks),
                        priority=priority, **extra)


def catalog(*entries: CatalogEntry) -> Catalog:
    return Catalog(Path("models.toml"), entries)


def guess(task: str) -> TaskGuess:
    return TaskGuess(cast(Task, task), 0.9, (f"{task} cue",), {t: float(t == task) for t in TASKS})


DEMO = catalog(
    entry("smollm2", "chat", "classification", priority=60),
    entry("gemma3", "completion", "summarisation", priority=40),
    entry("coder", "code", priority=50),
)
LOADED = {"smollm2": "ram"}
FAST = {"smollm2": UsageStats(count=3, tok_per_s=77.0)}


# --- auto ----------------------------------------------------------------------------------


def test_auto_prefers_the_resident_model_that_fits_and_explains_why() -> None:
    sel = select("auto", guess("chat"), DEMO, LOADED, FAST)
    assert (sel.model_id, sel.task, sel.mode) == ("smollm2", "chat", "auto")
    assert sel.explanation.startswith("smollm2 for chat (auto): fits chat, resident in ram, 77 tok/s")
    assert sel.runner_up is not None and sel.runner_up_score is not None
    assert sel.runner_up_score < sel.score
    assert f"runner-up {sel.runner_up} (" in sel.explanation
    assert "must load from disk" in sel.explanation
    assert [c.model_id for c in sel.candidates][:2] == [sel.model_id, sel.runner_up]
    assert [c.score for c in sel.candidates] == sorted((c.score for c in sel.candidates), reverse=True)
    assert all(c.why for c in sel.candidates) and len(sel.candidates) <= SHOWN
    assert sel.guess.task == "chat"


@pytest.mark.parametrize(("task", "expected"), [
    ("code", "coder"), ("summarisation", "gemma3"), ("completion", "gemma3"),
    ("classification", "smollm2"), ("extraction", "smollm2"),
])
def test_auto_picks_by_task_fit(task: str, expected: str) -> None:
    assert select("auto", guess(task), DEMO, LOADED, FAST).model_id == expected


def test_a_cold_specialist_wins_only_when_clearly_better() -> None:
    sel = select("auto", guess("code"), DEMO, LOADED, FAST)
    assert sel.model_id == "coder"
    assert any(r.startswith("clearly better than resident smollm2 (+") for r in sel.reasons)
    assert sel.runner_up == "smollm2" and "can do code as a chat model" in sel.explanation


@pytest.mark.parametrize("resident_tier", ["ram", "swap"])
def test_resident_beats_cold_unless_ahead_by_more_than_the_tier_bonus(resident_tier: str) -> None:
    margin = TIER_BONUS[resident_tier]
    step = round(margin / PRIORITY_POINTS)  # priority points that make up the margin
    for extra, winner in ((step - 2, "warm"), (step + 2, "cold")):
        cat = catalog(entry("warm", "chat", priority=10), entry("cold", "chat", priority=10 + extra))
        sel = select("auto", guess("chat"), cat, {"warm": resident_tier}, {})
        assert sel.model_id == winner, (resident_tier, extra, sel.explanation)
        if winner == "warm":
            assert any(r.startswith("resident beats cold, which must load and is not clearly better")
                       for r in sel.reasons)
        else:
            assert any(r.startswith("clearly better than resident warm") for r in sel.reasons)


def test_speed_and_usage_are_minor_terms() -> None:
    cat = catalog(entry("a", "chat"), entry("b", "chat"), entry("c", "chat", priority=80))
    residency = {"a": "ram", "b": "ram", "c": "ram"}
    fast_b = {"a": UsageStats(tok_per_s=10.0), "b": UsageStats(tok_per_s=90.0, count=10)}
    sel = select("auto", guess("chat"), cat, residency, fast_b)
    assert sel.model_id == "c"  # 30 priority points outweigh speed and usage
    assert sel.runner_up == "b"
    assert "90 tok/s" in sel.candidates[1].why


def test_failed_models_come_last_but_still_serve_when_nothing_else_can() -> None:
    cat = catalog(entry("broken", "code", priority=90), entry("chatty", "chat"))
    sel = select("auto", guess("code"), cat, {"broken": "failed"}, {})
    assert sel.model_id == "chatty" and sel.runner_up == "broken"
    alone = select("auto", guess("code"), catalog(entry("broken", "code")), {"broken": "failed"}, {})
    assert alone.model_id == "broken"
    assert "failed last time (would restart)" in alone.explanation


def test_inadmissible_models_are_skipped_in_auto_and_named() -> None:
    calls: list[str] = []

    def admissible(model_id: str) -> bool:
        calls.append(model_id)
        return model_id != "coder"

    sel = select("auto", guess("code"), DEMO, LOADED, FAST, admissible=admissible)
    assert sel.model_id == "smollm2"
    assert "skipped (cannot be admitted now): coder" in sel.reasons
    assert "smollm2" not in calls  # a loaded model needs no admission
    with pytest.raises(SelectionError, match="refused by admission"):
        select("auto", guess("code"), DEMO, {}, {}, admissible=lambda _m: False)


def test_no_fitting_model_is_said_plainly() -> None:
    cat = catalog(entry("base", "completion"))
    sel = select("auto", guess("classification"), cat, {}, {})
    assert sel.model_id == "base"
    assert "no admissible model lists classification" in sel.reasons


def test_pin_does_not_change_the_choice() -> None:
    plain = catalog(entry("a", "chat", priority=40), entry("b", "chat", priority=60))
    pinned = catalog(entry("a", "chat", priority=40, pin=True), entry("b", "chat", priority=60))
    assert select("auto", guess("chat"), plain, {}, {}) .model_id == "b"
    assert select("auto", guess("chat"), pinned, {}, {}).model_id == "b"


def test_ties_break_on_priority_then_id_whatever_the_order() -> None:
    entries = [entry("zeta", "chat", priority=50), entry("alpha", "chat", priority=50),
               entry("mid", "chat", priority=49)]
    for order in (entries, entries[::-1]):
        sel = select("auto", guess("chat"), catalog(*order), {}, {})
        assert (sel.model_id, sel.runner_up) == ("alpha", "zeta")
        assert "tie with zeta, broken by priority then id" in sel.reasons


def test_selection_is_deterministic_and_ignores_mapping_order() -> None:
    residency = {"smollm2": "ram", "gemma3": "swap", "coder": "loading"}
    reordered = dict(reversed(list(residency.items())))
    first = select("auto", guess("summarisation"), DEMO, residency, FAST)
    assert all(select("auto", guess("summarisation"), DEMO, reordered, FAST) == first for _ in range(5))


def test_usage_records_with_the_same_fields_are_accepted() -> None:
    @dataclass(frozen=True)
    class Record:  # the shape of the usage tracker's records
        count: float
        tok_per_s: float | None
        requests: int = 0

    sel = select("auto", guess("chat"), DEMO, LOADED, {"smollm2": Record(2.0, 50.0)})
    assert sel.model_id == "smollm2" and "50 tok/s" in sel.explanation


# --- manual --------------------------------------------------------------------------------


def test_manual_uses_the_named_model_even_when_auto_would_not() -> None:
    sel = select("manual", guess("chat"), DEMO, LOADED, FAST, model="gemma3")
    assert sel.model_id == "gemma3" and sel.mode == "manual"
    assert sel.reasons[0] == "chosen by the operator"
    assert sel.runner_up == "smollm2"  # what auto would pick instead
    assert "can do chat as a summarisation model" in sel.explanation


def test_manual_errors_name_the_problem() -> None:
    with pytest.raises(SelectionError, match=r"no model 'llama' in the catalog \(known: smollm2, gemma3, coder\)"):
        select("manual", guess("chat"), DEMO, {}, {}, model="llama")
    with pytest.raises(SelectionError, match="needs a model id"):
        select("manual", guess("chat"), DEMO, {}, {})
    with pytest.raises(SelectionError, match="'coder' is not loaded and cannot be admitted now"):
        select("manual", guess("code"), DEMO, {}, {}, model="coder", admissible=lambda _m: False)


def test_manual_on_a_loaded_model_skips_the_admission_check() -> None:
    def refuse(model_id: str) -> bool:
        raise AssertionError(f"admission asked about {model_id}")

    sel = select("manual", guess("chat"), catalog(entry("smollm2", "chat")), LOADED, {},
                 model="smollm2", admissible=refuse)
    assert sel.model_id == "smollm2" and sel.runner_up is None
    assert "runner-up" not in sel.explanation


# --- hybrid --------------------------------------------------------------------------------


def test_hybrid_uses_the_preferred_model_when_loaded_and_fit() -> None:
    sel = select("hybrid", guess("summarisation"), DEMO, LOADED, FAST, preferred="smollm2")
    assert sel.model_id == "smollm2"  # a chat model is an acceptable summariser
    assert sel.reasons[0] == "preferred model smollm2"
    assert sel.runner_up == "gemma3"


@pytest.mark.parametrize(("task", "residency", "preferred", "reason", "winner"), [
    ("code", LOADED, "smollm2", "preferred smollm2 does not fit code, so auto", "coder"),
    ("chat", {}, "smollm2", "preferred smollm2 not loaded (disk), so auto", "smollm2"),
    ("chat", {"smollm2": "loading"}, "smollm2", "preferred smollm2 not loaded (loading), so auto", "smollm2"),
    ("chat", LOADED, "ghost", "preferred ghost is not in the catalog, so auto", "smollm2"),
    ("chat", LOADED, None, "no preferred model set, so auto", "smollm2"),
])
def test_hybrid_falls_back_to_auto_with_the_reason(task: str, residency: dict[str, str],
                                                   preferred: str | None, reason: str,
                                                   winner: str) -> None:
    sel = select("hybrid", guess(task), DEMO, residency, FAST, preferred=preferred)
    assert sel.mode == "hybrid" and sel.model_id == winner
    assert sel.reasons[0] == reason and reason in sel.explanation


# --- errors, caching, ranking correctness, speed -------------------------------------------


def test_bad_mode_and_empty_catalog_are_errors() -> None:
    with pytest.raises(SelectionError, match="unknown selection mode 'best'"):
        select("best", guess("chat"), DEMO, {}, {})  # type: ignore[arg-type]
    with pytest.raises(SelectionError, match="has no models"):
        select("auto", guess("chat"), catalog(), {}, {})


def test_the_selector_is_built_once_per_catalog() -> None:
    assert selector_for(DEMO) is selector_for(DEMO)
    assert selector_for(catalog(*DEMO)) is not selector_for(DEMO)


def _brute_force(cat: Catalog, task: str, residency: dict[str, str],
                 usage: dict[str, UsageStats], admissible: Any) -> list[tuple[str, float]]:
    selector = Selector(cat)
    rows = []
    for e in cat:
        scored = selector._score(selector._static[task][e.id], residency, usage)
        if scored.tier not in ("ram", "swap", "loading") and not admissible(e.id):
            continue
        rows.append(scored)
    rows.sort(key=lambda s: s.key)
    return [(s.static.model_id, round(s.score, 6)) for s in rows[:SHOWN]]


def test_pruned_ranking_equals_scoring_every_model() -> None:
    rng = random.Random(1234)
    tiers = ("ram", "swap", "loading", "failed", "disk", "weird")
    for _trial in range(40):
        cat = catalog(*(entry(f"m{i:02d}", *rng.sample(TASKS, rng.randint(1, 3)),
                              priority=rng.choice((0, 50, 50, 100, rng.randint(0, 100))))
                        for i in range(rng.randint(1, 40))))
        residency = {e.id: rng.choice(tiers) for e in cat if rng.random() < 0.4}
        usage = {e.id: UsageStats(count=rng.choice((0.0, rng.uniform(0, 30))),
                                  tok_per_s=rng.choice((None, rng.uniform(1, 200))))
                 for e in cat if rng.random() < 0.5}
        refused = {e.id for e in cat if rng.random() < 0.2}

        def admissible(model_id: str, refused: set[str] = refused) -> bool:
            return model_id not in refused

        for task in TASKS:
            top, _skipped = Selector(cat).rank(task, residency, usage, admissible)
            got = [(s.static.model_id, round(s.score, 6)) for s in top]
            assert got == _brute_force(cat, task, residency, usage, admissible)


def test_detect_and_select_end_to_end_on_a_hundred_models() -> None:
    rng = random.Random(5)
    cat = catalog(*(entry(f"model-{i:03d}", *rng.sample(TASKS, rng.randint(1, 2)),
                          priority=rng.randint(0, 100)) for i in range(100)))
    residency = {f"model-{i:03d}": "ram" for i in range(0, 100, 17)}
    prompt = ("Write a Python function that merges two sorted lists.\n" + "x = 1\n" * 300)[:2048]
    sel = select("auto", detect_task(prompt), cat, residency, {})
    assert sel.task == "code" and "code" in cat.get(sel.model_id).tasks
    start = time.perf_counter()
    for _ in range(200):
        select("auto", detect_task(prompt), cat, residency, {})
    mean_us = (time.perf_counter() - start) / 200 * 1e6
    assert mean_us < 2000, f"{mean_us:.0f} µs per detect+select (budget: 100 µs at p99 on a quiet machine)"
