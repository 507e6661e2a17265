"""The tier map: the layout arithmetic on its own, then the widget drawn at fixed sizes."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from orin_console.core.manager.types import ModelState, SystemStatus, TierUsage
from orin_console.core.units import GB, MB
from orin_console.tui.widgets.tier_map import TierMap, bar_segments, block_widths, model_bytes

from tui_fakes import WidgetApp, model, six_state_status, six_states

# -- arithmetic --------------------------------------------------------------------------------


def test_blocks_are_to_scale_of_the_budget() -> None:
    assert block_widths([GB, 2 * GB], 4 * GB, 40) == [10, 20]
    assert block_widths([GB] * 4, 4 * GB, 40) == [10, 10, 10, 10]


def test_a_model_too_small_still_gets_one_cell() -> None:
    widths = block_widths([1 * MB, 3 * GB], 5 * GB, 30)
    assert widths[0] == 1
    assert widths[1] == 18


def test_over_budget_fills_the_bar_and_never_overflows() -> None:
    widths = block_widths([4 * GB, 4 * GB], 5 * GB, 30)
    assert sum(widths) == 30
    assert widths == [15, 15]


def test_more_models_than_cells_show_one_cell_each_while_they_last() -> None:
    assert block_widths([GB] * 5, GB, 3) == [1, 1, 1, 0, 0]
    assert block_widths([GB], GB, 0) == [0]
    assert block_widths([], GB, 10) == []
    assert block_widths([0], 0, 2) == [1]  # nothing on a zero budget: still one visible cell


@given(sizes=st.lists(st.integers(min_value=0, max_value=20 * GB), max_size=12),
       budget=st.integers(min_value=0, max_value=16 * GB), width=st.integers(min_value=0, max_value=200))
def test_block_widths_never_overflow_and_keep_every_model_visible(sizes: list[int], budget: int, width: int) -> None:
    widths = block_widths(sizes, budget, width)
    assert len(widths) == len(sizes)
    assert sum(widths) <= max(width, 0)
    if len(sizes) <= width:
        assert all(w >= 1 for w in widths)
    if sizes and sum(sizes) >= budget and sum(sizes) > 0 and len(sizes) <= width:
        # over budget (or exactly at it) the blocks fill the bar; all-zero models on a zero
        # budget have nothing to fill it with (each keeps its one visible cell)
        assert sum(widths) == width


@given(sizes=st.lists(st.integers(min_value=0, max_value=8 * GB), max_size=8),
       budget=st.integers(min_value=1, max_value=16 * GB), width=st.integers(min_value=1, max_value=120),
       can_give=st.one_of(st.none(), st.integers(min_value=-GB, max_value=16 * GB)))
def test_bar_segments_add_up_to_exactly_the_bar(sizes: list[int], budget: int, width: int,
                                               can_give: int | None) -> None:
    models = tuple(model(f"m{i}", predicted_bytes=s) for i, s in enumerate(sizes))
    usage = TierUsage("ram", budget, sum(sizes), tuple(m.model_id for m in models))
    segments = bar_segments(usage, models, width, can_give)
    assert sum(s.cells for s in segments) == width
    assert all(s.cells > 0 for s in segments)


def test_free_budget_the_machine_cannot_give_is_held() -> None:
    usage = TierUsage("ram", 4 * GB, GB, ("a",))
    models = (model("a", measured_bytes=GB),)
    segs = bar_segments(usage, models, 40, can_give=GB)  # 3 GB free in the budget, 1 GB on the machine
    kinds = {s.kind: s.cells for s in segs}
    assert kinds == {"model": 10, "free": 10, "held": 20}
    assert {s.kind for s in bar_segments(usage, models, 40, can_give=None)} == {"model", "free"}


def test_block_size_is_measured_once_loaded_and_predicted_while_loading() -> None:
    assert model_bytes(model("a", predicted_bytes=300, measured_bytes=200)) == 200
    assert model_bytes(model("a", ModelState.LOADING, predicted_bytes=300, measured_bytes=10)) == 300
    assert model_bytes(model("a", ModelState.LOADING)) == 0


# -- the widget ---------------------------------------------------------------------------------


def _lines(status: SystemStatus, width: int) -> list[str]:
    async def run() -> list[str]:
        app = WidgetApp(lambda: TierMap(status))
        async with app.run_test(size=(width, 12)) as pilot:
            await pilot.pause()
            return app.widget.render().plain.split("\n")
    return asyncio.run(run())


def test_the_map_at_80_columns_shows_what_is_where() -> None:
    lines = _lines(six_state_status(), 80)
    ram, swap, disk = lines[0], lines[1], lines[2]
    assert ram.startswith("RAM  ") and ram.endswith("2.4/5.0G")
    assert "qwen-coder 62%" in ram and "tinylla…" in ram  # 8 cells to scale: the id is cut, not the block widened
    assert swap.startswith("SWAP ") and "▶phi-3" in swap and swap.endswith("2.2/10.0G")
    assert disk.split() == ["DISK", "✗llama-3.2-1b", "gemma3"]
    assert all(len(line) <= 78 for line in lines)  # 80 less the padding
    assert "reserve 512M" in " ".join(lines[3:])


def test_outside_text_in_a_model_id_is_sanitised() -> None:
    status = six_state_status()
    evil = replace(status, models=(*status.models, model("x\x1b[2Jy[b]z", ModelState.UNLOADED, "disk")))
    disk = " ".join(_lines(evil, 80))
    assert "\x1b" not in disk and "x\ufffd[2Jy[b]z" in disk


def test_snapshot_tier_map_80(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(WidgetApp(lambda: TierMap(six_state_status())), terminal_size=(80, 6))


def test_snapshot_tier_map_40(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(WidgetApp(lambda: TierMap(six_state_status())), terminal_size=(40, 8))


def test_snapshot_tier_map_over_budget_and_held(snap_compare) -> None:  # type: ignore[no-untyped-def]
    models = six_states()
    status = SystemStatus(
        models=models,
        tiers=(TierUsage("ram", 2 * GB, int(2.4 * GB), ("smollm2", "qwen-coder", "tinyllama"), ("qwen-coder",)),
               TierUsage("swap", 10 * GB, int(2.2 * GB), ("phi-3",))),
        mem_available=int(1.0 * GB), swap_free=int(2 * GB), reserve=512 * MB)
    assert snap_compare(WidgetApp(lambda: TierMap(status)), terminal_size=(80, 6))
