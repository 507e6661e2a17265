"""The catalog table and the model details: fixed statuses, facts and usage."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult

from orin_console.core.catalog.store import Catalog, CatalogEntry
from orin_console.core.manager.types import ModelState
from orin_console.core.placement.usage import UsageRecord
from orin_console.core.units import MB
from orin_console.tui.widgets.catalog import CatalogTable, FileFacts, ModelDetails

from tui_fakes import model, six_states

FACTS = {"smollm2": FileFacts(98 * MB, "Q4_1"), "gemma3": FileFacts(253 * MB, "Q4_K_M"),
         "phi-3": FileFacts(2100 * MB, "Q4_K_M"), "tinyllama": FileFacts(640 * MB, "Q5_K_M"),
         "qwen-coder": FileFacts(1300 * MB, "Q8_0"),
         "llama-3.2-1b": FileFacts(None, None, "header: bad magic")}
USAGE = {"smollm2": UsageRecord(requests=12, tok_per_s=135.2), "phi-3": UsageRecord(requests=3, tok_per_s=14.0),
         "tinyllama": UsageRecord(requests=40, tok_per_s=61.0)}
CATALOG = Catalog(Path("/models/models.toml"), [
    CatalogEntry(id=m.model_id, path=f"{m.model_id}.gguf", tasks=("chat", "code") if "coder" in m.model_id
                 else ("chat",), tier="ram" if m.preferred_tier == "ram" else "swap", pin=m.pin)
    for m in six_states()])


class CatalogApp(App[None]):
    CSS = "Screen { layout: vertical; } CatalogTable { height: 9; }"

    def __init__(self, sort: str | None = None, reverse: bool = False) -> None:
        super().__init__()
        self.selections: list[str | None] = []
        self._sort = sort
        self._reverse = reverse

    def compose(self) -> ComposeResult:
        yield CatalogTable()
        yield ModelDetails()

    def on_mount(self) -> None:
        table = self.query_one(CatalogTable)
        table.catalog = CATALOG
        table.facts = FACTS
        table.usage = USAGE
        table.models = six_states()
        table.sort_key = self._sort
        table.sort_reverse = self._reverse
        table.focus()

    def on_catalog_table_selected(self, message: CatalogTable.Selected) -> None:
        self.selections.append(message.model_id)
        self.query_one(ModelDetails).model = next((m for m in six_states() if m.model_id == message.model_id), None)


def _run(app: CatalogApp, *keys: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press(*keys)
            await pilot.pause()
            table = app.query_one(CatalogTable)
            rows = [table.table.get_row_at(i) for i in range(table.table.row_count)]
            return {"selected": table.selected_model_id, "order": [r[0].plain for r in rows],
                    "rows": {r[0].plain: [c.plain for c in r] for r in rows}, "sort": table.sort_key,
                    "selections": list(app.selections)}
    return asyncio.run(run())


def test_every_model_is_a_row_with_its_figures() -> None:
    out = _run(CatalogApp())
    assert out["order"] == [m.model_id for m in six_states()]
    # id, tier, pin, state, mem, tok/s, uses, size, quant, pred, tasks
    assert out["rows"]["smollm2"] == ["smollm2", "ram", "●", "ready", "279M", "135", "12", "98M", "Q4_1", "300M",
                                      "chat"]
    assert out["rows"]["qwen-coder"][1:5] == ["→ram", "", "loading 62%", "~1.4G"]
    assert out["rows"]["phi-3"][3] == "busy +1"
    assert out["rows"]["llama-3.2-1b"][3] == "failed" and out["rows"]["llama-3.2-1b"][8] == "invalid"
    assert out["rows"]["gemma3"][3:6] == ["—", "~456M", "—"]


def test_the_cursor_is_the_selection_and_moving_it_posts_selected() -> None:
    out = _run(CatalogApp(), "down", "down")
    assert out["selected"] == "phi-3"
    assert out["selections"] == ["smollm2", "qwen-coder", "phi-3"]


def test_comma_cycles_the_sort_and_the_selection_stays_on_its_model() -> None:
    out = _run(CatalogApp(), "down", "comma")
    assert out["sort"] == "id"
    assert out["order"] == sorted(m.model_id for m in six_states())
    assert out["selected"] == "qwen-coder"
    out = _run(CatalogApp(), "comma", "comma", "comma", "comma")  # id, tier, state, mem
    assert out["sort"] == "mem"
    assert out["order"][:2] == ["phi-3", "qwen-coder"]  # largest first


def test_unknown_figures_sort_last_both_ways() -> None:
    for reverse in (False, True):
        out = _run(CatalogApp(sort="tok_s", reverse=reverse))
        assert out["order"][3:] == ["gemma3", "llama-3.2-1b", "qwen-coder"]
    assert _run(CatalogApp(sort="tok_s"))["order"][:3] == ["smollm2", "tinyllama", "phi-3"]


def test_an_update_keeps_the_rows_and_the_cursor() -> None:
    async def run() -> tuple[str | None, list[str]]:
        app = CatalogApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("down", "down")
            table = app.query_one(CatalogTable)
            table.models = tuple(replace(m, state=ModelState.READY, progress=None, measured_bytes=1400 * MB)
                                 if m.model_id == "qwen-coder" else m for m in six_states())
            await pilot.pause()
            return table.selected_model_id, [c.plain for c in table.table.get_row("qwen-coder")]
    selected, row = asyncio.run(run())
    assert selected == "phi-3"
    assert row[3:5] == ["ready", "1.4G"]


def test_outside_text_is_sanitised_and_never_markup() -> None:
    evil = {**FACTS, "smollm2": FileFacts(98 * MB, "[bold red]Q4\x1b[2J[/]")}

    async def run() -> tuple[list[str], str]:
        app = CatalogApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.query_one(CatalogTable).facts = evil
            details = app.query_one(ModelDetails)
            details.model = model("x", ModelState.FAILED, "disk", error="[red]boom\x1b]0;title\x07[/red]",
                                  notes=("bidi \u202eevil",))
            await pilot.pause()
            table = app.query_one(CatalogTable).table
            return [c.plain for c in table.get_row("smollm2")], details.render().plain  # type: ignore[union-attr]
    row, details = asyncio.run(run())
    assert row[8] == "[bold red]Q4\ufffd[2J[/]"
    assert "[red]boom\ufffd]0;title\ufffd[/red]" in details
    assert "bidi \ufffdevil" in details


def _press(*keys: str) -> Any:
    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        await pilot.press(*keys)
        for _ in range(3):  # the highlight -> Selected -> details hops
            await pilot.pause()
    return run_before


def test_snapshot_catalog_sorted_by_memory(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(CatalogApp(sort="mem"), terminal_size=(80, 24), run_before=_press("up"))


def test_snapshot_catalog_sorted_by_id_reversed(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(CatalogApp(sort="id", reverse=True), terminal_size=(80, 24), run_before=_press("down", "down"))


def test_a_figure_that_grows_widens_its_column() -> None:
    """A model loaded after the table was drawn shows "201M", not a "201" cut to the width of
    the "—" it replaced (a cell update must widen its column)."""
    unloaded = model("smollm2", ModelState.UNLOADED, "disk")

    class OneModel(App[None]):
        def compose(self) -> ComposeResult:
            yield CatalogTable()

        def on_mount(self) -> None:
            self.query_one(CatalogTable).models = (unloaded,)

    async def run() -> tuple[int, int]:
        app = OneModel()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            table = app.query_one(CatalogTable)
            width_before = table.table.columns["mem"].content_width  # type: ignore[index]
            table.models = (replace(unloaded, state=ModelState.READY, tier="ram", measured_bytes=201 * MB),)
            await pilot.pause()
            return width_before, table.table.columns["mem"].content_width  # type: ignore[index]

    before, after = asyncio.run(run())
    assert before < len("201M") <= after
