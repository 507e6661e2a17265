"""The catalog as a table (:class:`CatalogTable`) and the selected model's details
(:class:`ModelDetails`).

The table joins four feeds by model id, each a reactive the bridge sets when it changes:

- ``models``: the manager's :class:`ModelStatus` per model (state, tier, memory, busy) — every
  model shown is one of these, in this order until a sort is chosen;
- ``catalog``: the :class:`Catalog` in force (tasks, preferred tier, pin);
- ``facts``: :class:`FileFacts` per id (file size, quantisation), from the GGUF headers — read
  them with :func:`file_facts` in a worker, never on the event loop;
- ``usage``: ``manager.usage.snapshot()`` (requests, tokens/s).

Any of the last three may be empty; their columns then show ``—``. Every text from outside
(file names, quantisation names, errors, notes) goes through ``sanitize`` and into a
``Text``, never through markup. The row under the cursor is :attr:`CatalogTable.selected_model_id`,
what the app's ``l u r s p`` keys act on; moving the cursor to another model posts
:class:`CatalogTable.Selected`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable

from orin_console.core.catalog.store import Catalog
from orin_console.core.manager.types import ModelState, ModelStatus
from orin_console.core.placement.usage import UsageRecord
from orin_console.core.text import sanitize
from orin_console.tui.widgets.figures import short_size

__all__ = ["COLUMNS", "CatalogTable", "FileFacts", "ModelDetails"]


@dataclass(frozen=True)
class FileFacts:
    """What a model's GGUF header says, for the table.

    Attributes:
        size: the file's bytes (None: unreadable).
        quantization: ``"Q4_K_M"`` and the like (None: unknown).
        problem: why the header could not be read (sanitised), or None.
    """

    size: int | None = None
    quantization: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class _Row:
    model: ModelStatus
    tasks: str
    pin: bool
    facts: FileFacts
    usage: UsageRecord | None


def _state_text(m: ModelStatus) -> str:
    if m.state is ModelState.LOADING:
        return f"loading {m.progress:.0%}" if m.progress is not None else "loading"
    if m.state is ModelState.MOVING:
        return f"→{m.target_tier}" + (f" {m.progress:.0%}" if m.progress is not None else "")
    if m.state is ModelState.UNLOADED:
        return "—"
    if m.state is ModelState.READY and m.busy:
        return "busy" + (f" +{m.queued}" if m.queued else "")
    return m.state.value


def _mem_text(m: ModelStatus) -> str:
    """Measured when known, else the prediction marked ``~``."""
    if m.measured_bytes:
        return short_size(m.measured_bytes)
    return "~" + short_size(m.predicted_bytes) if m.predicted_bytes else "—"


def _tier_text(m: ModelStatus) -> str:
    """Where it is, or ``→ram`` while it is being loaded or moved there."""
    if m.target_tier and m.target_tier != m.tier and m.state in (ModelState.LOADING, ModelState.MOVING):
        return f"→{m.target_tier}"
    return m.tier


_STATE_ORDER = {ModelState.FAILED: 0, ModelState.LOADING: 1, ModelState.MOVING: 2, ModelState.READY: 3,
                ModelState.UNLOADING: 4, ModelState.UNLOADED: 5}
_TIER_ORDER = {"ram": 0, "swap": 1, "disk": 2}

Column = tuple[str, str, Callable[[_Row], str], Callable[[_Row], Any] | None, bool]
"""(key, header, cell text, sort key (None: not sortable; the key may return None, "unknown",
which always sorts last), descending by default)."""

COLUMNS: tuple[Column, ...] = (
    ("id", "id", lambda r: sanitize(r.model.model_id), lambda r: r.model.model_id, False),
    ("tier", "tier", lambda r: _tier_text(r.model), lambda r: _TIER_ORDER.get(r.model.target_tier or r.model.tier, 3),
     False),
    ("pin", "pin", lambda r: "●" if r.pin else "", None, False),
    ("state", "state", lambda r: _state_text(r.model), lambda r: _STATE_ORDER.get(r.model.state, 9), False),
    ("mem", "mem", lambda r: _mem_text(r.model), lambda r: r.model.measured_bytes or r.model.predicted_bytes, True),
    ("tok_s", "tok/s", lambda r: f"{r.usage.tok_per_s:.0f}" if r.usage and r.usage.tok_per_s else "—",
     lambda r: r.usage.tok_per_s if r.usage else None, True),
    ("uses", "uses", lambda r: str(r.usage.requests) if r.usage else "0",
     lambda r: r.usage.requests if r.usage else 0, True),
    ("size", "size", lambda r: short_size(r.facts.size) if r.facts.size else "—",
     lambda r: r.facts.size, True),
    ("quant", "quant", lambda r: r.facts.quantization or ("invalid" if r.facts.problem else "—"), None, False),
    ("pred", "pred", lambda r: short_size(r.model.predicted_bytes) if r.model.predicted_bytes else "—",
     lambda r: r.model.predicted_bytes, True),
    ("tasks", "tasks", lambda r: r.tasks, None, False),
)
"""The table's columns, most important first (a narrow pane scrolls to the rest)."""

SORTABLE: tuple[str, ...] = tuple(c[0] for c in COLUMNS if c[3] is not None)
"""The columns ``,`` cycles through."""


class CatalogTable(Widget, can_focus=False):
    """Every catalog model in a table; the row under the cursor is the selected model.

    | Key | Description |
    | :- | :- |
    | `,` | Sort by the next column (id, tier, state, mem, tok/s, uses, size, pred). |
    | `.` | Reverse the sort. |
    | `up` / `down` | Move the cursor (the inner DataTable's keys). |
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # not in the footer: first in it (the focused widget's keys come first), a lone "," read
        # as a stray comma at 80 columns; the help screen and the sorted column's arrow show it
        Binding("comma", "cycle_sort", "sort", id="catalog.cycle_sort", show=False,
                tooltip="Sort by the next column"),
        Binding("full_stop", "reverse_sort", "reverse", id="catalog.reverse_sort", show=False,
                tooltip="Reverse the sort order"),
    ]

    DEFAULT_CSS = """
    CatalogTable {
        height: 1fr;
        & > DataTable { height: 1fr; background: $surface; }
    }
    """

    models: reactive[tuple[ModelStatus, ...]] = reactive(())
    """Every model's status, from the manager (the rows)."""
    catalog: reactive[Catalog | None] = reactive(None)
    """The catalog in force: tasks and pins."""
    facts: reactive[Mapping[str, FileFacts]] = reactive(dict)
    """File facts per model id (see :func:`file_facts`)."""
    usage: reactive[Mapping[str, UsageRecord]] = reactive(dict)
    """Usage per model id (``manager.usage.snapshot()``)."""
    sort_key: reactive[str | None] = reactive(None)
    """The column the rows are sorted by (one of :data:`SORTABLE`), or None for the manager's order."""
    sort_reverse: reactive[bool] = reactive(False)
    """Reverse the column's natural order (sizes and speeds are largest first by default)."""

    class Selected(Message):
        """The cursor moved to another model."""

        def __init__(self, table: CatalogTable, model_id: str | None) -> None:
            self.table = table
            self.model_id = model_id
            """The model under the cursor (None: the table is empty)."""
            super().__init__()

        @property
        def control(self) -> CatalogTable:
            return self.table

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._order: list[str] = []
        self._shown: dict[str, tuple[str, ...]] = {}
        self._last_selected: str | None = None

    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(cursor_type="row", zebra_stripes=False, id="catalog-table")
        for key, header, *_ in COLUMNS:
            table.add_column(header, key=key)
        yield table

    @property
    def table(self) -> DataTable[Text]:
        """The inner DataTable."""
        return self.query_one(DataTable)

    @property
    def selected_model_id(self) -> str | None:
        """The model under the cursor, or None when there are no models."""
        if not self._order:
            return None
        row = self.table.cursor_row
        return self._order[row] if 0 <= row < len(self._order) else None

    def focus(self, scroll_visible: bool = True) -> CatalogTable:
        """Focus the inner table (the cursor's keys go to it; this widget's keys bubble up)."""
        if self.is_mounted:
            self.table.focus(scroll_visible)
        return self

    def select(self, model_id: str) -> None:
        """Put the cursor on ``model_id`` (no effect if it is not shown)."""
        if model_id in self._order:
            self.table.move_cursor(row=self._order.index(model_id))

    # -- rows ---------------------------------------------------------------------------------

    def _rows(self) -> list[_Row]:
        entries = {e.id: e for e in self.catalog} if self.catalog is not None else {}
        rows = []
        for m in self.models:
            entry = entries.get(m.model_id)
            rows.append(_Row(m, ", ".join(entry.tasks) if entry else "", entry.pin if entry else m.pin,
                             self.facts.get(m.model_id, FileFacts()), self.usage.get(m.model_id)))
        if self.sort_key is not None:
            column = next(c for c in COLUMNS if c[0] == self.sort_key)
            sort = column[3]
            assert sort is not None
            known = [r for r in rows if sort(r) is not None]
            unknown = [r for r in rows if sort(r) is None]
            known.sort(key=lambda r: (sort(r), r.model.model_id), reverse=column[4] != self.sort_reverse)
            rows = known + sorted(unknown, key=lambda r: r.model.model_id)
        return rows

    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        table = self.table
        keep = self.selected_model_id
        rows = self._rows()
        order = [r.model.model_id for r in rows]
        # every cell sanitised here, whoever built the facts: a file's quantisation name or a
        # problem string is outside text
        cells = {r.model.model_id: tuple(sanitize(c[2](r)) for c in COLUMNS) for r in rows}
        if order == self._order:
            for mid, values in cells.items():  # same rows: update only the cells that changed
                old = self._shown.get(mid, ())
                for (key, *_), value, before in zip(COLUMNS, values, old or (None,) * len(values), strict=True):
                    if value != before:
                        table.update_cell(mid, key, Text(value), update_width=True)  # "—" grows to "201M"
        else:
            table.clear()
            for mid in order:
                table.add_row(*(Text(v) for v in cells[mid]), key=mid)
            self._order = order
            if keep in order:
                table.move_cursor(row=order.index(keep), animate=False)
        self._shown = cells
        self._announce()
        self._update_headers()

    def _update_headers(self) -> None:
        table = self.table
        for key, header, _cell, _sort, descending in COLUMNS:
            label = header
            if key == self.sort_key:
                label += " ▼" if descending != self.sort_reverse else " ▲"
            column = table.columns.get(key)  # type: ignore[call-overload]
            if column is not None and column.label.plain != label:
                column.label = Text(label)
                table.refresh()

    def _announce(self) -> None:
        current = self.selected_model_id
        if current != self._last_selected:
            self._last_selected = current
            self.post_message(self.Selected(self, current))

    def on_mount(self) -> None:
        self._rebuild()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    def watch_models(self) -> None:
        self._rebuild()

    def watch_catalog(self) -> None:
        self._rebuild()

    def watch_facts(self) -> None:
        self._rebuild()

    def watch_usage(self) -> None:
        self._rebuild()

    def watch_sort_key(self) -> None:
        self._rebuild()

    def watch_sort_reverse(self) -> None:
        self._rebuild()

    # -- actions ------------------------------------------------------------------------------

    def action_cycle_sort(self) -> None:
        """Sort by the next sortable column; after the last, back to the manager's order."""
        if self.sort_key is None:
            self.sort_key = SORTABLE[0]
        else:
            index = SORTABLE.index(self.sort_key) + 1
            self.sort_key = SORTABLE[index] if index < len(SORTABLE) else None
        self.sort_reverse = False

    def action_reverse_sort(self) -> None:
        """Reverse the current sort."""
        self.sort_reverse = not self.sort_reverse


class ModelDetails(Widget):
    """One model in full: state, tier, residency, memory predicted and measured, the last
    error and the notes (all outside text sanitised).

    | Key | Description |
    | :- | :- |
    | (none) | It shows the catalog's selection. |
    """

    BINDINGS: ClassVar[list[BindingType]] = []

    COMPONENT_CLASSES: ClassVar[set[str]] = {"model-details--key", "model-details--error", "model-details--note"}
    """
    | Class | Description |
    | :- | :- |
    | `model-details--key` | The field names. |
    | `model-details--error` | The last error. |
    | `model-details--note` | The notes. |
    """

    DEFAULT_CSS = """
    ModelDetails {
        height: auto;
        padding: 0 1;
        & > .model-details--key { color: $foreground-muted; }
        & > .model-details--error { color: $error; }
        & > .model-details--note { color: $warning; }
    }
    """

    model: reactive[ModelStatus | None] = reactive(None, layout=True)
    """The model shown (None: nothing selected)."""

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self._text(width).wrap(self.app.console, max(1, width))))

    def render(self) -> RenderResult:
        return self._text(self.content_region.width or self.size.width)

    def _text(self, width: int) -> Text:
        m = self.model
        key = self.get_component_rich_style("model-details--key", partial=True)
        if m is None:
            return Text("no model selected", style=key)
        out = Text()

        def field(name: str, value: str, style: Any = "") -> None:
            if out:
                out.append("\n")
            out.append(f"{name} ", key)
            out.append(value, style)

        tier = m.tier + (f" → {m.target_tier}" if m.target_tier and m.target_tier != m.tier else "")
        state = m.state.value if m.state is ModelState.UNLOADED else _state_text(m)
        field(sanitize(m.model_id), f"{state} · {tier}" + (" · pinned" if m.pin else ""))
        if m.resident:
            field("resident", m.resident)
        if m.pid is not None:
            field("runner", f"pid {m.pid}")
        if m.predicted_bytes:
            field("predicted", short_size(m.predicted_bytes) + (f" ({sanitize(m.prediction)})" if m.prediction else ""))
        if m.measured_bytes:
            extra = f" ({m.prediction_error:+.0%} predicted)" if m.prediction_error is not None else ""
            field("measured", short_size(m.measured_bytes) + extra)
        if m.load_seconds is not None:
            field("load", f"{m.load_seconds:.2f} s")
        if m.queued:
            field("queued", str(m.queued))
        if m.error:
            field("error", sanitize(m.error), self.get_component_rich_style("model-details--error", partial=True))
        for note in m.notes:
            field("note", sanitize(note), self.get_component_rich_style("model-details--note", partial=True))
        return out
