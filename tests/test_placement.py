"""The usage-based placement plan: pure rules, hysteresis under scripted workloads."""

from __future__ import annotations

import itertools

import pytest

from orin_console.core.memory.admission import AdmissionRefused, Budgets
from orin_console.core.placement.plan import ModelFacts, PlanPolicy, compute_plan
from orin_console.core.placement.usage import UsageTracker

MB = 2**20
BUDGETS = Budgets(ram=100 * MB, swap=100 * MB, max_model=7 * 2**30, reserve=0)
NO_HYSTERESIS = PlanPolicy(margin_ratio=0, margin_abs=0, min_dwell_s=0)


def facts(mid: str, demand: float, tier: str = "disk", size: int = 60 * MB, **kw: object) -> ModelFacts:
    kw.setdefault("preferred", "ram")
    return ModelFacts(mid, tier=tier, demand=demand, sizes={"ram": size, "swap": size}, **kw)  # type: ignore[arg-type]


def test_demand_fills_ram_then_swap_then_disk() -> None:
    plan = compute_plan([facts("a", 5), facts("b", 9), facts("c", 2), facts("d", 0.4)], BUDGETS, now=0)
    assert dict(plan.placements) == {"a": "swap", "b": "ram", "c": "disk", "d": "disk"}
    assert plan.used == {"ram": 60 * MB, "swap": 60 * MB} and plan.fits == {"ram": True, "swap": True}
    assert "fits ram" in plan.reasons["b"]
    assert "no room in ram: needs 60.0 MB, 40.0 MB free (held by b)" in plan.reasons["a"]
    assert "nothing fits" in plan.reasons["c"] and "held by a" in plan.reasons["c"]
    assert plan.reasons["d"] == "0.40 recent requests (decayed); 0.5 needed to be loaded"
    assert [(m.kind, m.model_id) for m in plan.moves] == [("load", "a"), ("load", "b")]


def test_catalog_tier_caps_the_placement() -> None:
    models = [facts("gpu", 1), facts("cpu", 9, preferred="swap"), facts("lazy", 5, preferred="disk")]
    plan = compute_plan(models, Budgets(ram=100 * MB, swap=200 * MB, max_model=2**30, reserve=0), now=0)
    assert dict(plan.placements) == {"gpu": "ram", "cpu": "swap", "lazy": "swap"}
    free = compute_plan(models, Budgets(ram=100 * MB, swap=200 * MB, max_model=2**30, reserve=0),
                        policy=PlanPolicy(ram_needs_preference=False), now=0)
    assert dict(free.placements) == {"gpu": "swap", "cpu": "ram", "lazy": "swap"}


def test_small_models_share_ram_and_big_ones_go_to_swap() -> None:
    plan = compute_plan([facts("big", 9, size=150 * MB), facts("s1", 3, size=30 * MB),
                         facts("s2", 2, size=30 * MB)], Budgets(ram=100 * MB, swap=200 * MB,
                                                              max_model=2**30, reserve=0), now=0)
    assert dict(plan.placements) == {"big": "swap", "s1": "ram", "s2": "ram"}


def test_pins_hold_their_tier_and_count_first() -> None:
    models = [facts("pinned", 0, tier="ram", pinned=True), facts("hot", 50),
              facts("cold-pin", 0, pinned=True, preferred="swap"),
              facts("disk-pin", 0, pinned=True, preferred="disk")]
    plan = compute_plan(models, BUDGETS, now=0)
    assert plan.placements["pinned"] == "ram" and plan.reasons["pinned"] == "pinned (stays in ram)"
    assert plan.placements["cold-pin"] == "swap" and plan.reasons["cold-pin"] == "pinned (loads into swap)"
    assert plan.placements["disk-pin"] == "disk"
    assert plan.placements["hot"] == "disk"  # pins took both tiers' room
    assert "held by pinned" in plan.reasons["hot"] and "held by cold-pin" in plan.reasons["hot"]
    over = compute_plan([facts("p1", 0, tier="ram", pinned=True), facts("p2", 0, tier="ram", pinned=True)],
                        BUDGETS, now=0)
    assert over.fits["ram"] is False and "OVER BUDGET" in over.explain()


def test_unreadable_model_stays_on_disk() -> None:
    broken = ModelFacts("broken", demand=9, problem="invalid GGUF: magic")
    plan = compute_plan([broken, facts("ok", 1)], BUDGETS, now=0)
    assert plan.placements["broken"] == "disk" and "invalid GGUF" in plan.reasons["broken"]


def test_two_thresholds_keep_a_loaded_model_until_it_fades() -> None:
    assert compute_plan([facts("a", 0.3, tier="ram")], BUDGETS, now=0).placements["a"] == "ram"
    assert compute_plan([facts("a", 0.3)], BUDGETS, now=0).placements["a"] == "disk"
    gone = compute_plan([facts("a", 0.1, tier="ram")], BUDGETS, now=0)
    assert gone.placements["a"] == "disk" and gone.moves[0].kind == "unload"
    assert "0.25 needed to stay loaded" in gone.reasons["a"]


def test_moves_make_room_before_using_it() -> None:
    models = [facts("old", 0, tier="ram"), facts("down", 1, tier="ram"), facts("up", 30, tier="swap"),
              facts("new", 2)]
    plan = compute_plan(models, Budgets(ram=100 * MB, swap=130 * MB, max_model=2**30, reserve=0), now=0)
    assert [(m.kind, m.model_id) for m in plan.moves] == [
        ("unload", "old"), ("demote", "down"), ("promote", "up"), ("load", "new")]
    assert "unload old ram → disk" in plan.explain()


def test_diff_and_values() -> None:
    first = compute_plan([facts("a", 5), facts("b", 1)], BUDGETS, now=0)
    second = compute_plan([facts("a", 5), facts("b", 1), facts("c", 9)], BUDGETS, now=1)
    assert [(c.model_id, c.before, c.after) for c in second.diff(first)] == [
        ("a", "ram", "swap"), ("b", "swap", "disk"), ("c", None, "ram")]
    assert first.diff(first) == ()
    assert compute_plan([facts("a", 5), facts("b", 1)], BUDGETS, now=0) == first
    data = second.to_dict()
    assert data["placements"]["c"] == "ram" and data["moves"][0]["kind"] == "load"
    with pytest.raises(TypeError):
        first.placements["a"] = "disk"  # type: ignore[index]
    with pytest.raises(ValueError):
        PlanPolicy(load_min=0.1, keep_min=0.5)


# -- hysteresis under scripted workloads ---------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def simulate(schedule: list[list[str]], policy: PlanPolicy, step_s: float = 60.0) -> list[dict[str, str]]:
    """Run a workload: each step uses the listed models, then plans and applies the plan."""
    clock = Clock()
    usage = UsageTracker(half_life_s=3600, clock=clock)
    residency = {"a": "disk", "b": "disk"}
    previous = None
    history = []
    for used in schedule:
        clock.now += step_s
        for mid in used:
            usage.record(mid)
        snap = usage.snapshot()
        models = [facts(mid, snap[mid].count if mid in snap else 0.0, tier=residency[mid]) for mid in residency]
        plan = compute_plan(models, BUDGETS, previous=previous, policy=policy, now=clock.now)
        for move in plan.moves:  # "apply" in the simulation
            residency[move.model_id] = move.to_tier
        previous = plan
        history.append(dict(plan.placements))
    return history


def flips(history: list[dict[str, str]]) -> int:
    return sum(1 for before, after in itertools.pairwise(history) if before != after)


def test_alternating_workload_does_not_thrash() -> None:
    alternating = [["a"] if i % 2 == 0 else ["b"] for i in range(60)]
    calm = simulate(alternating, PlanPolicy())
    assert flips(calm[2:]) == 0  # settled once both are used
    assert {calm[-1]["a"], calm[-1]["b"]} == {"ram", "swap"}
    jumpy = simulate(alternating, NO_HYSTERESIS)
    assert flips(jumpy[2:]) >= 50  # without hysteresis the RAM tier changes hands every step


def test_a_real_shift_in_traffic_still_moves_models() -> None:
    schedule = [["a"] if i % 2 == 0 else ["b"] for i in range(20)]  # a and b settle
    settled = simulate(schedule, PlanPolicy())[-1]
    loser = "a" if settled["a"] == "swap" else "b"
    shifted = simulate(schedule + [[loser, loser, loser]] * 10, PlanPolicy())
    assert shifted[-1][loser] == "ram"
    assert flips(shifted[20:]) == 1  # exactly one hand-over


def test_dwell_time_keeps_a_fresh_placement() -> None:
    policy = PlanPolicy(margin_ratio=0, margin_abs=0, min_dwell_s=600)
    first = compute_plan([facts("a", 3), facts("b", 2)], BUDGETS, policy=policy, now=0)
    assert first.placements["a"] == "ram"
    models = [facts("a", 3, tier="ram"), facts("b", 4, tier="swap")]
    young = compute_plan(models, BUDGETS, previous=first, policy=policy, now=300)
    assert young.placements["a"] == "ram" and "less than 10 min ago" in young.reasons["a"]
    assert young.since["a"] == 0
    old = compute_plan(models, BUDGETS, previous=young, policy=policy, now=700)
    assert old.placements["b"] == "ram" and old.since["b"] == 700


# -- against a live manager with tiny models -----------------------------------------------

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from orin_console.core.events.kinds import PlanChanged  # noqa: E402
from orin_console.core.manager.manager import Manager  # noqa: E402
from orin_console.core.manager.types import ModelState  # noqa: E402
from orin_console.core.placement.optimiser import AutoOptimiser, apply, plan_for  # noqa: E402
from orin_console.core.runner import GenerateRequest  # noqa: E402
from orin_console.core.settings import load_settings  # noqa: E402
from orin_console.testing.tiny_models import write_tiny_llama  # noqa: E402
from orin_console.testing.waits import wait_until  # noqa: E402

CATALOG = "".join(
    f'[[models]]\nid = "{mid}"\npath = "{mid}.gguf"\ntasks = ["chat"]\ntier = "{tier}"\ncontext = 512\n{extra}\n'
    for mid, tier, extra in (("alpha", "ram", ""), ("beta", "ram", ""), ("gamma", "ram", ""),
                             ("pinned", "swap", "pin = true"))
)
LIVE_BUDGETS = Budgets(ram=80 * MB, swap=130 * MB, max_model=7 * 2**30, reserve=0)
"""A tiny model needs about 57 MB: RAM holds one, swap two."""


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("placement-models")
    write_tiny_llama(folder / "tiny.gguf", n_ctx=512)
    return folder / "tiny.gguf"


def live_manager(tmp_path: Path, tiny: Path, catalog: str = CATALOG, **kw: object) -> Manager:
    for mid in ("alpha", "beta", "gamma", "pinned"):
        (tmp_path / f"{mid}.gguf").symlink_to(tiny)
    (tmp_path / "models.toml").write_text(catalog)
    settings = load_settings(env={}, catalog_path=tmp_path / "models.toml", state_dir=tmp_path / "state")
    kw.setdefault("budgets", LIVE_BUDGETS)
    return Manager(settings, n_threads=1, gpu_offload=False, watch_interval_s=0, **kw)  # type: ignore[arg-type]


@pytest.fixture
def live(tmp_path: Path, tiny_files: Path) -> Iterator[Manager]:
    unpinned = CATALOG.replace("pin = true", "pin = false")
    with live_manager(tmp_path, tiny_files, unpinned) as manager:
        yield manager


def use(manager: Manager, **counts: int) -> None:
    for mid, n in counts.items():
        for _ in range(n):
            manager.usage.record(mid)


def within_budgets(manager: Manager) -> bool:
    return all(t.used <= t.budget for t in manager.status().tiers)


def test_apply_carries_out_the_plan_within_budgets(live: Manager) -> None:
    use(live, alpha=5, beta=3)
    plan = plan_for(live)
    assert dict(plan.placements) == {"alpha": "ram", "beta": "swap", "gamma": "disk", "pinned": "disk"}
    outcomes = apply(live, plan, timeout=60)
    assert [(o.move.model_id, o.status) for o in outcomes] == [("alpha", "done"), ("beta", "done")]
    assert live.model_status("alpha").tier == "ram" and live.model_status("beta").tier == "swap"
    assert within_budgets(live)
    assert plan_for(live, previous=plan).moves == ()  # applied: nothing left to do
    use(live, gamma=20)  # traffic moves to gamma
    assert plan_for(live, previous=plan).placements["alpha"] == "ram"  # placed < 10 min ago: it dwells
    shifted = plan_for(live)
    assert [(m.kind, m.model_id) for m in shifted.moves] == [("demote", "alpha"), ("load", "gamma")]
    assert all(o.ok for o in apply(live, shifted, timeout=60))
    assert {m.model_id: m.tier for m in live.status().models} == {
        "alpha": "swap", "beta": "swap", "gamma": "ram", "pinned": "disk"}
    assert within_budgets(live)


def test_apply_refuses_what_no_longer_fits_and_spares_busy_models(tmp_path: Path, tiny_files: Path) -> None:
    slow = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.05"}
    unpinned = CATALOG.replace("pin = true", "pin = false")
    with live_manager(tmp_path, tiny_files, unpinned, runner_env=slow) as manager:
        use(manager, alpha=5)
        plan = plan_for(manager)
        assert [(m.kind, m.model_id, m.to_tier) for m in plan.moves] == [("load", "alpha", "ram")]
        manager.load("gamma", "ram").result(60)  # the RAM tier fills behind the plan's back
        (refused,) = apply(manager, plan, timeout=60)
        assert refused.status == "refused" and "cannot load `alpha` into the RAM tier" in refused.detail
        assert manager.model_status("alpha").state == ModelState.UNLOADED  # not marked failed
        assert within_budgets(manager)
        stream = manager.generate("gamma", GenerateRequest(prompt="hello", max_tokens=64, temperature=0))
        next(stream)  # gamma is generating
        unload = plan_for(manager)  # gamma has no usage recorded yet: it should go
        assert ("unload", "gamma") in [(m.kind, m.model_id) for m in unload.moves]
        outcomes = {o.move.model_id: o for o in apply(manager, unload, timeout=60)}
        assert outcomes["gamma"].status == "skipped" and "generating" in outcomes["gamma"].detail
        stream.close()
        manager.load("gamma", "swap").result(60)
        stale = {o.move.model_id: o for o in apply(manager, unload, timeout=60)}
        assert stale["gamma"].status == "skipped" and "stale" in stale["gamma"].detail


def test_pinned_model_is_loaded_into_its_tier_and_kept(tmp_path: Path, tiny_files: Path) -> None:
    with live_manager(tmp_path, tiny_files) as manager:
        plan = plan_for(manager)
        assert plan.placements["pinned"] == "swap" and plan.reasons["pinned"] == "pinned (loads into swap)"
        assert all(o.ok for o in apply(manager, plan, timeout=60))
        assert manager.model_status("pinned").tier == "swap"
        assert plan_for(manager).placements["pinned"] == "swap"  # unused, still kept


def test_auto_optimiser_is_off_by_default_and_applies_when_on(live: Manager) -> None:
    use(live, beta=4)
    events = live.bus.subscribe(kinds=(PlanChanged,))
    optimiser = AutoOptimiser(live, interval_s=0.05, apply_timeout=60)
    plan, outcomes = optimiser.run_once()
    assert not optimiser.enabled and outcomes == [] and plan.placements["beta"] == "ram"
    assert live.model_status("beta").state == ModelState.UNLOADED
    event = events.get(timeout=5)
    assert isinstance(event, PlanChanged) and event.plan is plan
    optimiser.run_once()
    assert events.get(timeout=0.2) is None  # the same plan is not published again
    optimiser.enabled = True
    with optimiser:
        wait_until(lambda: live.model_status("beta").tier == "ram", timeout=30, interval=0.05,
                   what="the optimiser to load beta into ram")
    assert optimiser.last_outcomes and optimiser.last_outcomes[0].ok
    assert within_budgets(live)


# -- predictive preloading -----------------------------------------------------------------

from orin_console.core.placement.preload import Preloader, Successors  # noqa: E402


def test_successors_predict_only_a_clear_habit() -> None:
    clock = Clock()
    seen = Successors(half_life_s=3600, clock=clock)
    for mid in ["a", "b"] * 3:
        seen.observe(mid)
    assert seen.predict("a") == ("b", 1.0)
    assert seen.predict("a", min_count=4) is None  # seen only three times
    for mid in ["a", "a", "a", "a"]:
        seen.observe(mid)  # "a" now mostly follows itself
    assert seen.predict("a") is None
    assert seen.predict("zzz") is None
    assert seen.predict("b") == ("a", 1.0)
    clock.now += 3600 * 2  # two half-lives: three transitions count 0.75
    assert seen.predict("b") is None and seen.predict("b", min_count=0.7) == ("a", 1.0)


def test_preloader_warms_the_usual_successor(live: Manager) -> None:
    request = GenerateRequest(prompt="hi", max_tokens=2, temperature=0)
    live.budgets = Budgets(ram=200 * MB, swap=200 * MB, max_model=7 * 2**30, reserve=0)
    preloader = Preloader(live, min_count=2)
    for _ in range(2):
        for mid in ("alpha", "beta"):
            list(live.generate(mid, request))
            preloader.after(mid)
        live.unload("beta").result(30)
    list(live.generate("alpha", request))
    assert live.model_status("beta").state == ModelState.UNLOADED
    assert preloader.after("alpha") == "beta"
    assert live.load("beta", "ram").result(60).tier == "ram"  # joins the preload
    assert preloader.preloaded == [("alpha", "beta")]
    assert preloader.after("beta") is None  # alpha is loaded already
    with Preloader(live) as watching:  # wired to the bus
        list(live.generate("alpha", request))
        list(live.generate("beta", request))
        predicted = wait_until(lambda: watching.successors.predict("alpha", min_count=1),
                               what="the bus-wired preloader to see alpha then beta")
        assert predicted == ("beta", 1.0)
    live.unload("beta").result(30)
    live.budgets = LIVE_BUDGETS  # alpha fills the RAM tier: a preload never makes room
    alpha_before = live.model_status("alpha")
    assert preloader.after("alpha") == "beta"  # asked for; the scheduler decides
    assert preloader.last_load is not None
    with pytest.raises(AdmissionRefused, match="cannot load `beta` into the RAM tier"):
        preloader.last_load.result(30)
    assert live.model_status("beta").state == ModelState.UNLOADED
    alpha_after = live.model_status("alpha")
    assert (alpha_after.tier, alpha_after.pid) == (alpha_before.tier, alpha_before.pid)  # nothing made room


def test_auto_optimiser_follows_the_settings(tmp_path) -> None:
    from orin_console.core.placement.optimiser import AutoOptimiser
    from orin_console.core.settings import load_settings

    class _Stub:  # AutoOptimiser only keeps the manager until it runs
        pass

    off = AutoOptimiser.from_settings(_Stub(), load_settings(env={}))  # type: ignore[arg-type]
    assert off.enabled is False and off.interval_s == 300.0
    on = AutoOptimiser.from_settings(  # type: ignore[arg-type]
        _Stub(), load_settings(env={"ORIN_AUTO_OPTIMISE": "1", "ORIN_AUTO_OPTIMISE_INTERVAL_S": "60"}))
    assert on.enabled is True and on.interval_s == 60.0
